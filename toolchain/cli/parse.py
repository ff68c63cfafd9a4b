"""`mfc parse FILE`: the Modelfile IR, as text or as JSON for tools and CI."""

from __future__ import annotations

import json

import click

from toolchain.cli.reporting import print_json


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"file", "instructions": [{"kind", "name", "role", "content", '
    '"value", "span", "value_span"}], "commands": [[name, args]]}.',
)
def command(file: str, as_json: bool) -> None:
    """Parse FILE (`-` reads stdin) exactly as `ollama create` does and print the IR.

    Rejects what the reference's parser rejects (exit 1); unknown parameters and bad
    values are left to `mfc check`.
    """
    from toolchain.diagnostics import Diagnostic, render
    from toolchain.errors import MfcError
    from toolchain.frontend.decode import decode_modelfile
    from toolchain.frontend.parse import parse_modelfile, read_modelfile_bytes
    from toolchain.ir import Message, Parameter

    data = read_modelfile_bytes(file)
    try:
        mf = parse_modelfile(data, "<stdin>" if file == "-" else file)
    except MfcError as err:
        diag = Diagnostic.from_error(err)
        if as_json:
            print_json({"file": file, "error": diag.to_json(file), "reference_error": str(err)})
        else:
            click.echo(render(diag, decode_modelfile(data), file), err=True)
        click.get_current_context().exit(1)
    if as_json:
        print_json(mf.to_json())
        return
    for ins in mf.instructions:
        label = (
            ins.name
            if isinstance(ins, Parameter)
            else ins.role
            if isinstance(ins, Message)
            else None
        )
        head = f"{ins.span.line}:{ins.span.col}".ljust(8) + ins.kind.upper().ljust(10)
        shown = json.dumps(ins.value, ensure_ascii=False)
        if len(shown) > 72:
            shown = shown[:69] + '..."'
        click.echo(head + (f"{label} " if label is not None else "") + shown)
