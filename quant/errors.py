"""The one error family of `quant`: the toolchain turns it into an `MfcError`."""

from __future__ import annotations


class QuantError(Exception):
    """Bad input to a quantizer (unknown type, wrong shape, non-finite weights, bad file).

    `tensor` names the tensor the problem was found in, when there is one; `hint` tells the
    user what to do about it.
    """

    def __init__(self, message: str, *, tensor: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.tensor = tensor
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        # keep `tensor` and `hint` when the error crosses a process boundary
        return (_rebuild, (type(self), self.message, self.tensor, self.hint))


def _rebuild(
    cls: type[QuantError], message: str, tensor: str | None, hint: str | None
) -> QuantError:
    return cls(message, tensor=tensor, hint=hint)
