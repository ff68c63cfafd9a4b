"""The convert pass: a Hugging Face folder (FROM ./dir, ADAPTER ./lora-dir) becomes a GGUF.

Cached by the folder's content digest (every file's path and sha256) and the output type,
so a rebuild of an unchanged folder does no tensor work. The converter is
`toolchain.convert`; the output is an F16 GGUF model layer (or a LoRA adapter layer), on
which template detection then runs as for a GGUF given directly.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from toolchain.build.cache import cache_key
from toolchain.build.errors import BuildError
from toolchain.build.passes import BuildContext, Pass
from toolchain.build.plan import BuildPlan, PlannedLayer
from toolchain.build.request import SourceDir
from toolchain.store import mediatypes
from toolchain.store.blobs import digest_of_file
from toolchain.store.gguf_reader import read_gguf

VERSION = 1
OUTTYPE = "f16"


def folder_digest(folder: Path) -> str:
    """sha256 over the sorted (relative path, file sha256) of every file in the folder."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith("."):
            continue
        h.update(f"{rel}\0{digest_of_file(path)}\n".encode())
    return "sha256:" + h.hexdigest()


def _converter(adapter: bool) -> Any:
    try:
        module = importlib.import_module("toolchain.convert")
        return module.convert_adapter if adapter else module.convert_model
    except (ImportError, AttributeError):
        raise BuildError(
            "converting Hugging Face folders is not available (toolchain.convert is missing)"
        ) from None


def convert_folder(
    ctx: BuildContext, source: SourceDir, *, adapter: bool, base: PlannedLayer | None
) -> PlannedLayer:
    ctx.report("converting adapter" if adapter else "converting model")
    key = cache_key(
        folder_digest(source.path), "convert", VERSION, {"outtype": OUTTYPE, "adapter": adapter}
    )
    store = ctx.writable()
    hit = ctx.cache.get(key)
    if hit is None:
        fd, tmp = store.blobs.temp_file(suffix=".gguf")
        os.close(fd)
        try:
            convert = _converter(adapter)
            if adapter:
                base_path = (
                    base.source
                    if base is not None and isinstance(base.source, Path)
                    else store.blobs.path(base.digest)
                    if base is not None
                    else None
                )
                convert(source.path, tmp, base=base_path)
            else:
                convert(source.path, tmp, outtype=OUTTYPE)
            written = store.blobs.adopt(tmp)
        except BuildError:
            raise
        except Exception as exc:
            message = getattr(exc, "message", None) or str(exc)
            raise BuildError(f"{source.path}: {message}", source.span) from None
        finally:
            tmp.unlink(missing_ok=True)
        if written.created:
            ctx.new_blobs.append(written.digest)
        ctx.cache.put(key, written.digest, written.size, {"folder": str(source.path)})
        digest, size = written.digest, written.size
    else:
        digest, size = hit.digest, hit.size
    return PlannedLayer(
        media_type=mediatypes.ADAPTER if adapter else mediatypes.MODEL,
        digest=digest,
        size=size,
        gguf=read_gguf(store.blobs.path(digest)),
        span=source.span,
    )


def run(plan: BuildPlan, ctx: BuildContext) -> BuildPlan:
    if not plan.pending and not plan.pending_adapters:
        return plan
    base = list(plan.base)
    for source in plan.pending:
        base.append(convert_folder(ctx, source, adapter=False, base=None))
    model = next((b for b in base if b.media_type == mediatypes.MODEL), None)
    adapters = list(plan.adapters)
    for source in plan.pending_adapters:
        adapters.append(convert_folder(ctx, source, adapter=True, base=model))
    return replace(
        plan, base=tuple(base), adapters=tuple(adapters), pending=(), pending_adapters=()
    )


PASS = Pass("convert", 1, run)
