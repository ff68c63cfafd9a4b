"""`mfc fmt [FILES...]`: print, rewrite or check the canonical layout of Modelfiles."""

from __future__ import annotations

import os
from pathlib import Path

import click

from toolchain.cli.reporting import print_json


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one rename, keeping its permissions."""
    from quant.files import remove_stale_temps, temp_path

    mode = path.stat().st_mode & 0o7777
    remove_stale_temps(path)  # what a killed `fmt -w` left
    tmp = temp_path(path)
    try:
        with tmp.open("r+b") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(mode)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@click.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--check", is_flag=True, help="Change nothing; exit 1 naming the files that are not formatted."
)
@click.option("--write", is_flag=True, help="Rewrite the files in place (only those that change).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"files": [{"file", "changed", "written"}], "diagnostics": [...]}.',
)
def command(files: tuple[str, ...], check: bool, write: bool, as_json: bool) -> None:
    """Format Modelfiles (default: ./Modelfile; `-` reads stdin) in mfc's canonical layout.

    Keywords upper-case, one instruction per line, values quoted only where needed and
    triple-quoted when they span lines, comments and paragraph breaks kept. The IR never
    changes: `mfc parse` of the output equals `mfc parse` of the input. Without --check or
    --write the formatted text goes to stdout. Output is UTF-8 with LF line ends.
    """
    from toolchain.diagnostics import Diagnostic, render
    from toolchain.errors import MfcError
    from toolchain.frontend.format import format_modelfile
    from toolchain.frontend.parse import parse_recovering, read_modelfile_bytes

    if check and write:
        raise click.UsageError("--check and --write exclude each other")
    paths = files or ("Modelfile",)
    if write and "-" in paths:
        raise click.UsageError("--write cannot rewrite stdin")
    results: list[dict[str, object]] = []
    diagnostics: list[dict[str, object]] = []
    failed = False

    def report(errors: list[MfcError], source: str | None, path: str) -> None:
        for err in errors:
            diag = Diagnostic.from_error(err)
            if as_json:
                diagnostics.append(diag.to_json(path))
            else:
                click.echo(render(diag, source, path), err=True)

    for path in paths:
        try:
            data = read_modelfile_bytes(path)
        except MfcError as err:
            failed = True
            report([err], None, path)
            continue
        mf, syntax_errors = parse_recovering(data, "<stdin>" if path == "-" else path)
        if syntax_errors:
            failed = True
            report(list(syntax_errors), mf.source, path)
            continue
        text = format_modelfile(mf)
        formatted = text.encode("utf-8")
        changed = formatted != data
        written = False
        if write and changed:
            write_atomically(Path(path), formatted)
            written = True
            if not as_json:
                click.echo(f"reformatted {path}", err=True)
        elif check and changed:
            failed = True
            if not as_json:
                click.echo(f"would reformat {path}")
        elif not check and not write and not as_json:
            if len(paths) > 1:
                click.echo(f"==> {path} <==")
            click.echo(text, nl=False)
        results.append({"file": path, "changed": changed, "written": written})
    if as_json:
        print_json({"files": results, "diagnostics": diagnostics})
    elif check:
        unformatted = sum(bool(r["changed"]) for r in results)
        total = len(paths)
        click.echo(
            f"{unformatted} of {total} file{'s' * (total != 1)} would be reformatted"
            if unformatted
            else f"{len(results)} file{'s' * (len(results) != 1)} already formatted",
            err=True,
        )
    click.get_current_context().exit(1 if failed else 0)
