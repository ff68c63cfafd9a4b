"""FROM/ADAPTER path resolution (spec §1.11): TestExpandPath. TestFilesForModel is in
tests/toolchain/build/test_sources.py, with the classification it shares."""

from __future__ import annotations

import pytest

from toolchain.frontend.paths import PathError, expand_path, go_clean, go_getwd

USERS = {"testuser": "/home/testuser", "anotheruser": "/home/anotheruser"}


def expand(path: str, relative_dir: str) -> str:
    return expand_path(path, relative_dir, home=lambda: "/home/testuser", lookup_home=USERS.get)


@pytest.mark.parametrize(
    "path,relative_dir,expected",
    [
        ("~", "", "/home/testuser"),
        ("~/myfolder/myfile.txt", "", "/home/testuser/myfolder/myfile.txt"),
        ("~anotheruser/docs/file.txt", "", "/home/anotheruser/docs/file.txt"),
        ("relative/path/to/file", "", "{pwd}/relative/path/to/file"),
        ("/absolute/path/to/file", "", "/absolute/path/to/file"),
        ("/absolute/path/to/file", "someotherdir/", "/absolute/path/to/file"),
        (".", "{pwd}", "{pwd}"),
        (".", "", "{pwd}"),
        ("somefile", "somedir", "{pwd}/somedir/somefile"),
        ("llama3:latest", ".", "{pwd}/llama3:latest"),
        ("//a/./b/../c/", "", "/a/c"),
    ],
)
def test_expand_path(path: str, relative_dir: str, expected: str) -> None:
    pwd = go_getwd()
    assert expand(path, relative_dir.format(pwd=pwd)) == expected.format(pwd=pwd)


def test_unknown_user() -> None:
    with pytest.raises(PathError) as caught:
        expand("~nonexistentuser/file.txt", "")
    assert str(caught.value).startswith("failed to find user 'nonexistentuser': ")


@pytest.mark.parametrize(
    "path,clean",
    [
        ("", "."),
        ("a//b", "a/b"),
        ("/../x", "/x"),
        ("../../x", "../../x"),
        ("a/..", "."),
        ("/", "/"),
        ("a/b/../../..", ".."),
    ],
)
def test_go_clean(path: str, clean: str) -> None:
    assert go_clean(path) == clean
