"""Quantize a whole GGUF file the way `llama_model_quantize` does, byte for byte.

The plan (types, order, metadata) is made and checked before anything is written; tensor
data is then streamed into a temporary file next to the destination, chunks of rows being
quantized by a pool of worker processes, and the file is renamed into place at the end.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from quant.errors import QuantError
from quant.files import remove_stale_temps, same_file, temp_path
from quant.filetypes import file_type
from quant.formats import BY_ID, block_format
from quant.gguf_constants import GGUFValueType
from quant.gguf_read import GGUFFile
from quant.gguf_values import GGUFArray
from quant.gguf_write import encode_pair, header_bytes, padded, tensor_table
from quant.imatrix import Imatrix, load_imatrix
from quant.numerics import F32
from quant.pipeline import ProgressFn, QuantizeProgress, TensorCache, write_tensors
from quant.policy import ModelFacts, Plan, plan_tensors, type_name
from quant.source import type_layout

_DROP_KEYS = {
    "general.quantization_version",
    "general.file_type",
    "split.no",
    "split.count",
    "split.tensors.count",
}


@dataclass(frozen=True, slots=True)
class QuantizeResult:
    path: Path
    ftype: str
    tensors: int
    quantized: int
    input_bytes: int
    output_bytes: int
    seconds: float
    types: dict[str, int]  # tensor type -> number of tensors written with it


def _facts(g: GGUFFile) -> ModelFacts:
    arch = g.get("general.architecture")
    if not isinstance(arch, str):
        raise QuantError(f"{g.path} has no general.architecture: not a model file")

    def first(key: str, default: int) -> int:
        v = g.get(f"{arch}.{key}", default)
        if isinstance(v, GGUFArray):  # per-layer values: the first layer's
            return int(v.items[0]) if v.items else default
        return int(v)

    n_layer = first("block_count", -1)
    if n_layer < 0:
        raise QuantError(f"{g.path} has no {arch}.block_count")
    n_head = first("attention.head_count", 0)
    return ModelFacts(
        arch, n_layer, n_head, first("attention.head_count_kv", n_head), first("expert_count", 0)
    )


def _type_arg(name: str | None, what: str) -> str | None:
    if name is None:
        return None
    try:
        return block_format(name).name
    except QuantError as exc:
        raise QuantError(f"unknown {what} {name!r}", hint=exc.hint) from exc


ImatrixArg = str | Path | Imatrix | Mapping[str, npt.ArrayLike] | None


def _imatrix_arg(imatrix: ImatrixArg) -> Imatrix | None:
    if imatrix is None or isinstance(imatrix, Imatrix):
        return imatrix
    if isinstance(imatrix, str | Path):
        return load_imatrix(imatrix)
    entries = {k: np.asarray(v, dtype=F32).reshape(-1) for k, v in imatrix.items()}
    for k, v in entries.items():
        if not np.isfinite(v).all():
            raise QuantError(f"imatrix has non-finite values for {k!r}", tensor=k)
    return Imatrix(entries)


def _weights_for(p: Plan, im: Imatrix | None) -> npt.NDArray[np.float32] | None:
    """The imatrix rows of a tensor, checked as llama.cpp checks them."""
    t = p.tensor
    w = im.get(t.name) if im else None
    experts = t.ne[2] if len(t.ne) > 2 else 1
    if w is not None and w.size != t.ne[0] * experts:
        if t.name in ("token_embd.weight", "per_layer_token_embd.weight"):
            w = None
        else:
            raise QuantError(
                f"imatrix has {w.size} values for tensor {t.name!r}, which needs "
                f"{t.ne[0] * experts}",
                tensor=t.name,
                hint="the imatrix was computed for a different model",
            )
    if w is None and p.requires_imatrix:
        # llama.cpp's two refusals: no imatrix at all, or none for this tensor
        msg = (
            f"missing importance matrix for tensor {t.name!r} in a very low-bit quantization"
            if im
            else "this quantization requires an importance matrix (offending tensor "
            f"{t.name!r}, target type {type_name(p.target)})"
        )
        raise QuantError(
            msg,
            tensor=t.name,
            hint="pass --imatrix FILE (made with `mfc imatrix` or llama-imatrix)",
        )
    return w


def quantize_file(
    src: str | Path,
    dst: str | Path,
    ftype: str,
    *,
    imatrix: ImatrixArg = None,
    pure: bool = False,
    allow_requantize: bool = False,
    output_tensor_type: str | None = None,
    token_embedding_type: str | None = None,
    leave_output_tensor: bool = False,
    threads: int | None = None,
    progress: ProgressFn | None = None,
    cache: TensorCache | None = None,
) -> QuantizeResult:
    """Quantize GGUF `src` to `dst` as `llama_model_quantize` would with the same options.

    Raises `QuantError` for bad input (not a GGUF, truncated, unknown type, non-finite
    weights, missing imatrix, ...); `dst` is only created, atomically, on success.
    """
    started = time.perf_counter()
    ft = file_type(ftype)
    out_type = _type_arg(output_tensor_type, "output tensor type")
    emb_type = _type_arg(token_embedding_type, "token embedding type")
    im = _imatrix_arg(imatrix)
    dst = Path(dst)
    for what, path in (("input file", src), ("imatrix", imatrix)):
        if isinstance(path, str | Path) and same_file(dst, Path(path)):
            raise QuantError(
                f"cannot write {dst}: it is the {what}", hint="give another output file"
            )
    if not dst.parent.is_dir():
        raise QuantError(f"cannot write {dst}: folder {dst.parent} does not exist")
    with GGUFFile(src) as g:
        plans = plan_tensors(
            list(g.tensors),
            _facts(g),
            ft,
            pure=pure,
            has_imatrix=im is not None,
            output_type=out_type,
            token_embedding_type=emb_type,
            quantize_output=not leave_output_tensor,
        )
        sizes = _check(g, plans, allow_requantize)
        weights = {p.tensor.name: _weights_for(p, im) for p in plans if p.quantize}
        kvs = [g.encoded(key) for key in g.header.kv if key not in _DROP_KEYS]
        kvs += [
            encode_pair("general.quantization_version", GGUFValueType.UINT32, 2),
            encode_pair("general.file_type", GGUFValueType.UINT32, ft.id),
        ]
        infos = tensor_table(
            [
                (p.tensor.name, p.tensor.ne[: p.tensor.n_dims], p.target, sizes[p.tensor.name][1])
                for p in plans
            ]
        )
        header = header_bytes(kvs, infos)
        total = len(header) + sum(padded(sizes[p.tensor.name][1]) for p in plans)
        places = {name: len(header) + at for name, _, _, at in infos}
        if dst.is_dir():
            raise QuantError(f"cannot write {dst}: it is a folder")
        remove_stale_temps(dst)
        try:
            tmp = temp_path(dst)
        except OSError as exc:
            raise QuantError(f"cannot write {dst}: {exc.strerror or exc}") from exc
        try:
            with tmp.open("r+b") as fh:
                fh.write(header)
                fh.truncate(total)  # padding stays zero; tensors are written in place
            write_tensors(
                tmp,
                g,
                plans,
                places=places,
                sizes=sizes,
                weights=weights,
                threads=threads,
                cache=cache,
                progress=progress,
                total=total,
            )
            tmp.replace(dst)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise QuantError(f"cannot write {dst}: {exc.strerror or exc}") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    counts: dict[str, int] = {}
    for p in plans:
        name = type_layout(p.target)[0]
        counts[name] = counts.get(name, 0) + 1
    return QuantizeResult(
        dst,
        ft.name,
        len(plans),
        sum(p.quantize for p in plans),
        Path(src).stat().st_size,
        total,
        time.perf_counter() - started,
        counts,
    )


def _check(g: GGUFFile, plans: list[Plan], allow_requantize: bool) -> dict[str, tuple[int, int]]:
    """Input and output byte sizes per tensor, after the checks llama.cpp would fail on."""
    sizes = {}
    for p in plans:
        t = p.tensor
        src_name, block, size = type_layout(t.type_id)
        if t.ne[0] % block:
            raise QuantError(
                f"tensor {t.name!r}: {t.ne[0]} values per row is not a whole "
                f"number of {src_name} blocks",
                tensor=t.name,
            )
        nbytes = t.nrows * (t.ne[0] // block) * size
        g.header.check_range(t, nbytes)
        out = nbytes
        if p.quantize:
            target = BY_ID.get(p.target)
            if target is None:
                raise QuantError(
                    f"tensor {t.name!r} would be {type_name(p.target)}, which mfc cannot write yet",
                    tensor=t.name,
                    hint="choose another quantization type",
                )
            if t.ne[0] % target.block:
                raise QuantError(
                    f"tensor {t.name!r}: rows of {t.ne[0]} values cannot be split "
                    f"into {target.name} blocks of {target.block}",
                    tensor=t.name,
                )
            if block > 1 and not allow_requantize:
                raise QuantError(
                    f"tensor {t.name!r} is already quantized ({src_name})",
                    tensor=t.name,
                    hint="requantizing loses quality; pass --allow-requantize to do it anyway",
                )
            out = t.nrows * target.row_bytes(t.ne[0])
        sizes[t.name] = (nbytes, out)
    return sizes


__all__ = ["ProgressFn", "QuantizeProgress", "QuantizeResult", "TensorCache", "quantize_file"]
