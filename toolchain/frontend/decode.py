"""Modelfile bytes -> text, exactly as the reference reads them (spec §1.2, §1.3).

The reference wraps the file in `unicode.BOMOverride(unicode.UTF8.NewDecoder())` and then
reads runes: a UTF-16 BOM switches to UTF-16, a UTF-8 BOM is dropped and the rest is read
rune by rune (each invalid byte becomes one U+FFFD), anything else is decoded as UTF-8
with maximal-subpart replacement (what Python's "replace" handler does).
"""

from __future__ import annotations

import codecs

#: characters the grammar sees in place of every non-printable one (see modelfile.lark)
DROPPED = "\x00"

_KEEP = frozenset("\t\r\n")
_NO_KEEP = dict.fromkeys(map(ord, _KEEP))


def _one_byte_replace(exc: UnicodeError) -> tuple[str, int]:
    # bufio.ReadRune: an invalid byte is one U+FFFD and decoding resumes at the next byte
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return "\ufffd", exc.start + 1


codecs.register_error("mfc-rune-replace", _one_byte_replace)


def decode_modelfile(data: bytes) -> str:
    """Decode Modelfile bytes the way the reference does."""
    if data.startswith(b"\xff\xfe"):
        return data[2:].decode("utf-16-le", "replace")
    if data.startswith(b"\xfe\xff"):
        return data[2:].decode("utf-16-be", "replace")
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", "mfc-rune-replace")
    return data.decode("utf-8", "replace")


def mark_dropped(text: str) -> str:
    """`text` with every character the reference drops (non-printable, except TAB, CR, LF)
    replaced by NUL, position for position, so the grammar needs one class for them."""
    if text.translate(_NO_KEEP).isprintable():
        return text
    return "".join(ch if ch in _KEEP or ch.isprintable() else DROPPED for ch in text)
