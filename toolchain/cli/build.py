"""`mfc build [MODELFILE] [-t NAME]`: compile a Modelfile into a model in the store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from toolchain.cli.human import human_size
from toolchain.cli.reporting import print_json, reporter
from toolchain.cli.store_options import insecure_option, open_store, quantize_option, store_options
from toolchain.errors import MfcError
from toolchain.progress import ProgressEvent


def run_build(
    *,
    data: bytes,
    path: str,
    relative_dir: Path,
    name: str,
    quantize: str | None,
    models: str | None,
    as_json: bool,
    insecure: bool = False,
    name_note: str | None = None,
    imatrix: Path | None = None,
) -> None:
    """Parse, check and build a Modelfile; shared by `mfc build` and `mfc create`."""
    from toolchain.build import build, request_from_modelfile
    from toolchain.build.request import SourceFile
    from toolchain.diagnostics import render
    from toolchain.frontend.check import check_modelfile
    from toolchain.frontend.parse import parse_modelfile
    from toolchain.store import InvalidNameError, parse_name

    try:
        model = parse_name(name)
    except InvalidNameError:
        if name_note is None:
            raise
        raise MfcError(
            f"the folder name {name!r} is not a valid model name",
            hint="name the model with -t NAME (letters, digits, _, -, .)",
        ) from None
    if name_note and not as_json:
        click.echo(name_note.format(name=model.display()), err=True)
    with reporter(as_json) as progress:
        progress(ProgressEvent("parsing modelfile"))
        mf = parse_modelfile(data, path)
        diagnostics = check_modelfile(mf)
        source = mf.source or data.decode("utf-8", "replace")
        for diag in diagnostics:
            click.echo(render(diag, source), err=True)
        errors = [d for d in diagnostics if d.severity == "error"]
        if errors:
            raise MfcError(
                f"{len(errors)} error(s) in {path}; nothing was built",
                hint="`mfc check` lists the same diagnostics",
            )
        request = request_from_modelfile(mf, relative_dir=relative_dir)
        if quantize:
            request = request.with_quantize(quantize)
        if imatrix is not None:
            request = dataclasses.replace(request, imatrix=SourceFile(imatrix.name, imatrix))
        store = open_store(models)
        # ends with `success` (after a pulled FROM model's own `success`, as the reference)
        result = build(store, model, request, progress=progress, insecure=insecure)
    if as_json:
        print_json(
            {
                "model": result.name.display(),
                "digest": result.digest,
                "size": result.manifest.size,
                "new_blobs": len(result.new_blobs),
                "removed_blobs": len(result.removed_blobs),
            }
        )
        return
    click.echo(
        f"built {result.name.display()} ({result.digest[:12]}, {human_size(result.manifest.size)}; "
        f"{len(result.new_blobs)} new blob(s))"
    )


@click.command()
@click.argument("modelfile", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "-f",
    "--file",
    "file_",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="The Modelfile (same as the argument).",
)
@click.option(
    "-t",
    "--tag",
    "name",
    metavar="NAME",
    help="Model name, [host/][namespace/]model[:tag] (default: the Modelfile's folder).",
)
@quantize_option
@click.option(
    "--imatrix",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Importance matrix for the quantize step (overrides IMATRIX): an imatrix GGUF/.dat "
    "or calibration text.",
)
@insecure_option
@store_options
def command(
    *,
    modelfile: str | None,
    file_: str | None,
    name: str | None,
    quantize: str | None,
    imatrix: Path | None,
    insecure: bool,
    models: str | None,
    as_json: bool,
) -> None:
    """Build MODELFILE (default ./Modelfile) into a model in the store.

    Without -t the model is named after the folder holding the Modelfile, so
    `mfc build models/tiny/Modelfile` builds tiny:latest. A rebuild with unchanged inputs
    gives the same manifest digest and writes nothing. FROM a model with a registry host
    (localhost:5000/team/base:v1) that is not in the store pulls it first.
    """
    from toolchain.errors import UsageError
    from toolchain.frontend.parse import read_modelfile_bytes

    if modelfile and file_ and modelfile != file_:
        raise UsageError(f"two Modelfiles given: {modelfile} and -f {file_}")
    path = modelfile or file_ or "Modelfile"
    stdin = path == "-"
    if not stdin and not Path(path).exists():
        raise MfcError(
            f"{path}: no such Modelfile", hint="mfc build [MODELFILE] (default ./Modelfile)"
        )
    data = read_modelfile_bytes(path)
    folder = Path.cwd() if stdin else Path(path).absolute().parent
    note = None
    if name is None:
        name = folder.name
        note = f"building {{name}} (named after the folder {folder}; -t NAME to choose)"
    run_build(
        data=data,
        path="<stdin>" if stdin else path,
        relative_dir=folder,
        name=name,
        quantize=quantize,
        models=models,
        as_json=as_json,
        insecure=insecure,
        name_note=note,
        imatrix=imatrix,
    )
