"""Where FROM/ADAPTER/DRAFT values point (spec §1.11): the reference's `expandPath` and Go's
lexical path rules. What a folder they name holds is `toolchain.build.sources`.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from pathlib import Path

from toolchain.errors import MfcError


class PathError(MfcError):
    """A FROM/ADAPTER/DRAFT path that cannot be resolved (unknown user, unreadable folder)."""


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
