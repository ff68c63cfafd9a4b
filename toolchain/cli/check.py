"""`mfc check [FILES...]`: every diagnostic of each Modelfile, for people and for CI."""

from __future__ import annotations

import click

from toolchain.cli.reporting import print_json


def _shown(path: str) -> str:
    return "<stdin>" if path == "-" else path


@click.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the diagnostics as one JSON list "
    "({file, line, col, end_line, end_col, severity, message, hint}).",
)
def command(files: tuple[str, ...], strict: bool, as_json: bool) -> None:
    """Check Modelfiles (default: ./Modelfile; `-` reads stdin).

    Reports syntax errors exactly where `ollama create` would reject the file, and what it
    would reject later: unknown parameters and bad values, REQUIRES versions, QUANTIZE
    types, TEMPLATE errors; warns about deprecated parameters and repeated instructions.
    Exit status: 0 clean, 1 errors (or warnings with --strict), 2 usage error.
    """
    from toolchain.diagnostics import Diagnostic, render
    from toolchain.errors import MfcError
    from toolchain.frontend.check import check_source
    from toolchain.frontend.parse import read_modelfile_bytes

    records: list[dict[str, object]] = []
    errors = warnings = 0
    for path in files or ("Modelfile",):
        source: str | None = None
        try:
            mf, diags = check_source(read_modelfile_bytes(path), _shown(path))
            source = mf.source
        except MfcError as err:
            diags = [Diagnostic("error", err.message, err.span, err.hint)]
        for diag in diags:
            errors += diag.severity == "error"
            warnings += diag.severity == "warning"
            if as_json:
                records.append(diag.to_json(path))
            else:
                click.echo(render(diag, source, path), err=True)
    count = len(files) or 1
    if as_json:
        print_json(records)
    else:
        found = ", ".join(
            f"{n} {word}{'s' * (n != 1)}"
            for n, word in ((errors, "error"), (warnings, "warning"))
            if n
        )
        click.echo(f"checked {count} file{'s' * (count != 1)}: {found or 'no problems'}", err=True)
    failed = errors > 0 or (strict and warnings > 0)
    click.get_current_context().exit(1 if failed else 0)
