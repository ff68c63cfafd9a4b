"""What the distribution commands (push, pull, export, import) share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from toolchain.cli.reporting import print_json
from toolchain.errors import MfcError

F = TypeVar("F", bound=Callable[..., Any])


def insecure_option(f: F) -> F:
    """`--insecure`: plain http and unverified TLS for this registry."""
    return click.option(
        "--insecure", is_flag=True, help="Allow plain http and untrusted TLS certificates."
    )(f)


@contextmanager
def json_errors(as_json: bool) -> Iterator[None]:
    """With --json, a failure also ends stdout with `{"error": ...}` (as the server's stream)."""
    try:
        yield
    except MfcError as exc:
        if as_json:
            print_json({"error": exc.message})
        raise
