"""`mfc inspect FILE.gguf`: a GGUF's metadata and tensor table (name, type, shape, bytes).

`--no-tensors` leaves the table out (gguf-py's `gguf-dump --no-tensors`): the metadata alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from toolchain.cli.human import human_size
from toolchain.cli.reporting import print_json
from toolchain.cli.store_options import open_store, store_options
from toolchain.errors import MfcError

#: strings longer than this are cut in the table (the JSON has them whole)
MAX_TEXT = 80


def _short(value: Any) -> str:
    from toolchain.store.gguf_reader import GGUFArray

    if isinstance(value, GGUFArray):
        items = ", ".join(_short(v) for v in value.items[:4])
        more = ", ..." if value.length > 4 else ""
        return f"[{items}{more}] ({value.length} x {value.item_type.name.lower()})"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def _json(value: Any) -> Any:
    from toolchain.store.gguf_reader import GGUFArray

    if isinstance(value, GGUFArray):
        return [_json(v) for v in value.items]
    return value


@click.command()
@click.argument("target")
@click.option("--no-tensors", is_flag=True, help="Print the metadata only.")
@store_options
def command(target: str, no_tensors: bool, models: str | None, as_json: bool) -> None:
    """Print the metadata and tensors of TARGET, a GGUF file (or a model name in the store)."""
    from toolchain.store import load_model
    from toolchain.store.gguf_reader import read_gguf

    path = Path(target)
    if not path.exists():
        model = load_model(open_store(models), target)
        if model.model_path is None:
            raise MfcError(f"model '{model.name.display()}' has no model layer")
        path = model.model_path
    info = read_gguf(path, full_arrays=as_json)
    if as_json:
        doc: dict[str, Any] = {
            "path": str(path),
            "version": info.version,
            "metadata": {
                k: {"type": info.types[k].name.lower(), "value": _json(v)}
                for k, v in info.kv.items()
            },
        }
        if not no_tensors:
            doc["tensors"] = [
                {
                    "name": t.name,
                    "type": t.type_name,
                    "shape": list(t.ne),
                    "bytes": t.nbytes,
                    "offset": info.data_offset + t.offset,
                }
                for t in info.tensors
            ]
        print_json(doc)
        return
    click.echo(
        f"{path}: GGUF v{info.version}, {len(info.kv)} keys, {len(info.tensors)} tensors, "
        f"{info.parameter_count:,} parameters, {human_size(info.file_size)}\n"
    )
    kw = max((len(k) for k in info.kv), default=0)
    for key, value in info.kv.items():
        click.echo(f"  {key:<{kw}}  {info.types[key].name.lower():<7}  {_short(value)}")
    if no_tensors:
        return
    click.echo("")
    rows = [("NAME", "TYPE", "SHAPE", "BYTES")] + [
        (t.name, t.type_name, " x ".join(str(d) for d in t.ne), f"{t.nbytes:,}")
        for t in info.tensors
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        click.echo(
            f"  {r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}"
        )
