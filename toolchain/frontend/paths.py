"""Where FROM/ADAPTER/DRAFT values point (spec §1.11): the reference's `expandPath`, Go's
lexical path rules, and `filesForModel`, the files of a model folder the reference uploads.
"""

from __future__ import annotations

import fnmatch
import os
import pwd
from collections.abc import Callable
from pathlib import Path

from toolchain.errors import MfcError

ERR_MODEL_NOT_FOUND = "no Modelfile or safetensors files found"


class PathError(MfcError):
    """A FROM/ADAPTER/DRAFT path that cannot be resolved (unknown user, unreadable folder)."""


class ModelNotFoundError(PathError):
    """The reference's `ErrModelNotFound`: a folder with no model files in it."""


def go_clean(path: str) -> str:
    """Go's `filepath.Clean` (Unix): collapse `//`, drop `.`, resolve `..` lexically."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    joined = "/".join(parts)
    return "/" + joined if rooted else joined or "."


def go_join(*elems: str) -> str:
    """Go's `filepath.Join`: empty elements dropped, the result cleaned ("" if all empty)."""
    kept = [e for e in elems if e]
    return go_clean("/".join(kept)) if kept else ""


def go_getwd() -> str:
    """Go's `os.Getwd`: `$PWD` when it names the current directory, else the real path."""
    pwd_env = os.environ.get("PWD", "")
    if pwd_env.startswith("/"):
        try:
            if Path(pwd_env).samefile("."):
                return pwd_env
        except OSError:
            pass
    return str(Path.cwd())


def go_abs(path: str) -> str:
    """Go's `filepath.Abs`."""
    return go_clean(path) if path.startswith("/") else go_join(go_getwd(), path)


def current_user_home() -> str:
    """The current user's home folder as Go's `user.Current()` sees it (passwd, else $HOME)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        home = os.environ.get("HOME")
        if home:
            return home
        raise PathError(f"failed to get current user: user: unknown userid {os.getuid()}") from None


def user_home(name: str) -> str | None:
    """The home folder of user `name`, or None if there is no such user."""
    try:
        return pwd.getpwnam(name).pw_dir
    except KeyError:
        return None


def expand_path(
    value: str,
    relative_dir: str,
    *,
    home: Callable[[], str] = current_user_home,
    lookup_home: Callable[[str], str | None] = user_home,
) -> str:
    """The reference's `expandPath`: absolute paths cleaned, `~` and `~user` expanded,
    anything else joined to `relative_dir` (the Modelfile's folder) and made absolute.

    A model name like `llama3:latest` also comes back as a path; the caller falls back to
    the name when nothing exists there, as the reference does.
    """
    path = value
    if path.startswith(("/", "\\")):
        return go_abs(path)
    if path.startswith("~"):
        if path == "~" or path.startswith("~/"):
            base = home()
            path = path[1:]
        else:
            name, sep, rest = path[1:].partition("/")
            found = lookup_home(name)
            if found is None:
                raise PathError(f"failed to find user '{name}': user: unknown user {name}")
            base = found
            path = "/" + rest if sep else ""
        path = go_join(base, path)
    else:
        path = go_join(relative_dir, path)
    return go_abs(path)


def _sniff(data: bytes) -> str:
    """Go's `http.DetectContentType` without parameters, for the types model folders hold:
    markup and document signatures, BOMs, zip/gzip, then text vs binary."""
    stripped = data.lstrip(b"\t\n\x0c\r ")
    upper = stripped[:16].upper()
    for tag in (b"<!DOCTYPE HTML", b"<HTML", b"<HEAD", b"<SCRIPT", b"<IFRAME", b"<H1", b"<DIV",
                b"<FONT", b"<TABLE", b"<A", b"<STYLE", b"<TITLE", b"<B", b"<BODY", b"<BR", b"<P",
                b"<!--"):
        if upper.startswith(tag) and stripped[len(tag):len(tag) + 1] in (b" ", b">"):
            return "text/html"
    if stripped.startswith(b"<?xml"):
        return "text/xml"
    for magic, kind in ((b"%PDF-", "application/pdf"), (b"%!PS-Adobe-", "application/postscript"),
                        (b"\xfe\xff", "text/plain"), (b"\xff\xfe", "text/plain"),
                        (b"\xef\xbb\xbf", "text/plain"), (b"\x1f\x8b\x08", "application/x-gzip"),
                        (b"PK\x03\x04", "application/zip")):
        if data.startswith(magic):
            return kind
    binary = set(range(0x00, 0x09)) | {0x0B} | set(range(0x0E, 0x1B)) | set(range(0x1C, 0x20))
    if any(b in binary for b in data):
        return "application/octet-stream"
    return "text/plain"


def detect_content_type(path: str) -> str:
    """The sniffed type of the first 512 bytes of the file at `path`."""
    try:
        with Path(path).open("rb") as f:
            return _sniff(f.read(512))
    except OSError as exc:
        raise PathError(f"cannot read {path}: {exc.strerror or exc}") from None


def _glob(folder: str, pattern: str) -> list[str]:
    """Go's `filepath.Glob(Join(folder, pattern))`, one `*/` level at most, sorted per folder."""
    head, _, name = pattern.rpartition("/")
    folders = [folder]
    if head:
        folders = [go_join(folder, d) for d in _listdir(folder) if fnmatch.fnmatchcase(d, head)]
    return [go_join(f, entry) for f in folders for entry in _listdir(f)
            if fnmatch.fnmatchcase(entry, name)]


def _listdir(folder: str) -> list[str]:
    try:
        return sorted(entry.name for entry in Path(folder).iterdir())
    except OSError:
        return []


def _typed(folder: str, pattern: str, kind: str | None) -> list[str]:
    """Matches of `pattern`; PathError if one of them is not of type `kind`."""
    matches = _glob(folder, pattern)
    for match in matches:
        found = detect_content_type(match)
        if kind is not None and found != kind:
            raise PathError(f"invalid content type: expected {found} for {match}")
    return matches


def _typed_or_none(folder: str, pattern: str, kind: str | None) -> list[str]:
    try:
        return _typed(folder, pattern, kind)
    except PathError:
        return []


#: weight file groups, first non-empty wins: (patterns, sniffed type or None for any)
_WEIGHT_GROUPS: tuple[tuple[tuple[str, ...], str | None], ...] = (
    (("model*.safetensors", "*/model*.safetensors"), None),
    (("consolidated*.safetensors",), None),
    (("pytorch_model*.bin",), "application/zip"),
    (("consolidated*.pth",), "application/zip"),
    (("*.gguf",), "application/octet-stream"),
    (("*.bin",), "application/octet-stream"),
)


def files_for_model(folder: str) -> list[str]:
    """The reference's `filesForModel`: the weights of the first matching group, then the
    JSON configs, chat_template.jinja and tokenizer.model. Raises `ModelNotFoundError`."""
    files: list[str] = []
    for patterns, kind in _WEIGHT_GROUPS:
        files = [f for pattern in patterns for f in _typed_or_none(folder, pattern, kind)]
        if files:
            break
    else:
        raise ModelNotFoundError(ERR_MODEL_NOT_FOUND)
    files += _typed(folder, "*.json", "text/plain")
    files += _typed(folder, "*/*.json", "text/plain")
    files += _typed_or_none(folder, "chat_template.jinja", "text/plain")
    tokenizer = _typed_or_none(folder, "tokenizer.model", "application/octet-stream")
    files += tokenizer or _typed_or_none(folder, "*/tokenizer.model", "text/plain")
    return files
