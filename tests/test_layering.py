"""Dependencies point one way (DESIGN: `runtime -> toolchain -> quant`, `toolchain -> grammar`):
every import statement of every module, read from its syntax tree, checked against the
layer it may reach. An import inside a function or under `if TYPE_CHECKING:` counts too,
except where a rule below says a lazy import is the point (the CLI starting the server)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("toolchain", "runtime", "quant", "grammar", "fixtures", "tests", "bench")

# What the store may import of ours: its own modules and the leaves below it. Describing a
# model (templates, Modelfile text) is `toolchain.describe`, above the store.
STORE_MAY_IMPORT = (
    "toolchain.store",
    "toolchain.errors",
    "toolchain.gojson",
    "toolchain.progress",
    "quant",
)
# Lazy imports of the runtime from the CLI: `mfc serve`, `mfc run`, `mfc ps`, `mfc stop`.
CLI_STARTS_THE_SERVER = ("serve.py", "run.py", "ps.py", "stop.py")


def imports(path: Path) -> Iterator[tuple[str, int, bool]]:
    """(imported module, line, at module level) for each import in the file; relative
    imports resolved against the file's package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, id(node) in top_level
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join((*base, module)) if module else ".".join(base)
            yield module, node.lineno, id(node) in top_level


def ours(module: str) -> bool:
    return module.split(".", maxsplit=1)[0] in OURS


def under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def modules(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def violations(paths: list[Path], allowed: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in paths
        for module, line, _ in imports(path)
        if ours(module) and not under(module, allowed)
    ]


def test_the_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checker itself: module-level, nested, `from . import` and `TYPE_CHECKING`
    imports are all found (a checker that saw none would pass anything)."""
    found = {(m, top) for m, _, top in imports(ROOT / "toolchain" / "cli" / "serve.py")}
    assert ("runtime.config", False) in found  # under `if TYPE_CHECKING:`
    assert ("runtime.server", False) in found  # inside the command
    assert ("toolchain.cli.store_options", True) in found
    assert violations([ROOT / "toolchain" / "cli" / "serve.py"], ("toolchain",))


def test_quant_imports_nothing_of_ours_above_it() -> None:
    assert violations(modules("quant"), ("quant",)) == []


def test_grammar_imports_nothing_of_ours_above_it() -> None:
    assert violations(modules("grammar"), ("grammar",)) == []


def test_the_store_imports_only_what_is_below_it() -> None:
    assert violations(modules("toolchain/store"), STORE_MAY_IMPORT) == []


@pytest.mark.parametrize("folder", ["toolchain", "runtime"])
def test_nothing_ships_imports_tests_fixtures_or_bench(folder: str) -> None:
    assert violations(modules(folder), ("toolchain", "runtime", "quant", "grammar")) == []


def test_the_toolchain_reaches_the_runtime_only_to_start_or_call_a_server() -> None:
    wrong = []
    for path in modules("toolchain"):
        for module, line, top in imports(path):
            if not under(module, ("runtime",)):
                continue
            lazy_cli = path.parent.name == "cli" and path.name in CLI_STARTS_THE_SERVER
            if not lazy_cli or top:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    assert wrong == []
