"""`mfc convert HF_DIR OUT.gguf [--outtype f16]`: a Hugging Face model directory to GGUF.

With `--lora-base`, HF_DIR is a PEFT LoRA adapter and OUT.gguf a GGUF LoRA for that base.
`mfc convert --list-architectures` prints the architectures it converts.
"""

from __future__ import annotations

from pathlib import Path

import click

from toolchain.cli.reporting import print_json, reporter
from toolchain.errors import UsageError
from toolchain.progress import ProgressEvent


@click.command()
@click.argument("src", metavar="HF_DIR", type=click.Path(path_type=Path), required=False)
@click.argument(
    "out", metavar="OUT.gguf", type=click.Path(dir_okay=False, path_type=Path), required=False
)
@click.option(
    "--outtype",
    default="f16",
    show_default=True,
    metavar="TYPE",
    help="f32, f16, bf16, auto (bf16 weights stay bf16), ollama (f16 but each bf16 matrix "
    "stays bf16, as Ollama's create converts), or a quantization type such as q8_0 or q4_K_M.",
)
@click.option(
    "--lora-base",
    type=click.Path(path_type=Path),
    metavar="BASE",
    help="Convert a PEFT LoRA adapter for BASE (its GGUF file or HF directory).",
)
@click.option(
    "--mmproj",
    "mmproj_out",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    help="Where a vision checkpoint's projector GGUF goes "
    "(default: mmproj-OUT.gguf beside OUT.gguf).",
)
@click.option(
    "--list-architectures",
    "list_archs",
    is_flag=True,
    help="Print the Hugging Face architectures that convert, and exit.",
)
@click.option("--json", "as_json", is_flag=True, help="Progress and result as JSON lines.")
def command(
    src: Path | None,
    out: Path | None,
    *,
    outtype: str,
    lora_base: Path | None,
    mmproj_out: Path | None,
    list_archs: bool,
    as_json: bool,
) -> None:
    """Convert a Hugging Face model directory (safetensors + tokenizer) to OUT.gguf.

    A vision checkpoint (Gemma 3, Idefics3 / SmolVLM) also gives its projector GGUF."""
    from toolchain.convert import ConvertError, convert_hf_dir, convert_lora
    from toolchain.convert.mmproj import convert_projector, has_projector, projector_path
    from toolchain.convert.outtype import resolve_outtype

    if list_archs:
        _list_architectures(as_json)
        return
    if src is None or out is None:
        raise UsageError("expected HF_DIR and OUT.gguf", hint="mfc convert HF_DIR OUT.gguf")

    try:
        resolve_outtype(outtype, None)
    except ConvertError as exc:
        raise UsageError(exc.message, hint=exc.hint) from None
    with reporter(as_json) as report:

        def progress(event: ProgressEvent) -> None:
            if as_json or not event.status.startswith("wrote "):  # said below, with details
                report(event)

        projector = None
        if lora_base is not None:
            result = convert_lora(src, out, lora_base, outtype, progress=progress)
        else:
            result = convert_hf_dir(src, out, outtype, progress=progress)
            if has_projector(src):
                projector = convert_projector(
                    src, mmproj_out or projector_path(out), outtype, progress=progress
                )
    if as_json:
        extra = {"projector": projector.to_json()} if projector is not None else {}
        print_json({"status": "success", **result.to_json(), **extra})
        return
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    for done in (result, projector):
        if done is not None:
            click.echo(
                f"wrote {done.path} ({done.architecture}, {done.outtype}, "
                f"{done.tensor_count} tensors, {done.size / 2**20:.1f} MiB)"
            )


def _selected_family(family: str, key: str | None, when: tuple[str, object] | None) -> str:
    """The family, with what in config.json selects it when it shares its HF name."""
    if key and when:
        return f"{family} (when config.json's {key} {when[0]})"
    return f"{family} (when config.json sets {key})" if key else family


def _list_architectures(as_json: bool) -> None:
    from toolchain.convert.arch import ARCHITECTURES

    rows = [
        (name, arch.gguf_arch, arch.family, arch.selected_by, arch.selected_when)
        for arch in ARCHITECTURES
        for name in arch.hf_names
    ]
    if as_json:
        print_json(
            {
                "architectures": [
                    {
                        "hf": hf,
                        "gguf": gguf,
                        "family": family,
                        "selected_by": key,
                        "selected_when": when[0] if when else None,
                    }
                    for hf, gguf, family, key, when in rows
                ]
            }
        )
        return
    listed = [
        (hf, gguf, _selected_family(family, key, when)) for hf, gguf, family, key, when in rows
    ]
    width = max(len(hf) for hf, _g, _f in listed)
    gwidth = max(len(g) for _h, g, _f in listed)
    click.echo(f"{'HF ARCHITECTURE':<{width}}  {'GGUF':<{gwidth}}  FAMILY")
    for hf, gguf, family in listed:
        click.echo(f"{hf:<{width}}  {gguf:<{gwidth}}  {family}")
