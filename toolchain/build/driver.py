"""`build`: run the passes over a create request and commit the result to the store.

    resolve -> convert -> quantize -> template -> emit

The store is touched only once a pass has something to write (bad inputs are rejected
before that, so they leave it byte-for-byte as it was). Writers hold the store's shared
lock until the manifest is written; then the blobs only the replaced manifest used are
removed under the exclusive lock, as the reference does after a create, and the build
cache is bounded to its size cap.
"""

from __future__ import annotations

from pathlib import Path

from toolchain import ir
from toolchain.build import convert, emit, quantize, resolve, template
from toolchain.build.passes import BuildContext, Pass, run_passes
from toolchain.build.plan import BuildPlan, BuildResult
from toolchain.build.quantize import check_imatrix
from toolchain.build.request import CreateRequest, request_from_modelfile
from toolchain.progress import ProgressCallback, ProgressEvent, no_progress
from toolchain.store.cache import max_size_from_env
from toolchain.store.errors import StoreBusyError
from toolchain.store.names import ModelName
from toolchain.store.store import Store

PIPELINE: tuple[Pass, ...] = (resolve.PASS, convert.PASS, quantize.PASS, template.PASS, emit.PASS)


def build(
    store: Store,
    name: ModelName,
    request: CreateRequest,
    *,
    progress: ProgressCallback = no_progress,
    passes: tuple[Pass, ...] = PIPELINE,
    insecure: bool = False,
) -> BuildResult:
    """Build `name` from a create request; emits the reference's progress statuses.

    A FROM model that is not in the store but names a registry host is pulled first (its
    progress, `success` included, comes before the build's); `insecure` allows that
    registry to be plain http or to have an untrusted certificate.
    """
    if request.quantize:  # a missing imatrix fails before any hashing or copying
        check_imatrix(request)
    ctx = BuildContext(store, progress, insecure=insecure)
    try:
        ctx.lock_if_exists()
        name = store.resolve(name)
        old = store.current_manifest(name)  # a corrupt manifest is simply replaced
        plan = run_passes(BuildPlan(name=name, request=request, old_manifest=old), ctx, passes)
    finally:
        ctx.release()
    assert plan.manifest is not None
    stale = store.replaced_blobs(old, plan.manifest)
    removed = store.remove_unreferenced(stale) if stale else []
    removed += bound_cache(store)
    progress(ProgressEvent("success"))
    return BuildResult(name, plan.manifest, tuple(ctx.new_blobs), tuple(removed))


def bound_cache(store: Store) -> list[str]:
    """Evict least-recently-used cache entries beyond `MFC_BUILD_CACHE_MAX_SIZE`; skipped
    (the next build does it) while another process uses the store, so builds never queue
    behind each other for it. Returns the blobs removed."""
    try:
        done = store.evict_cache(max_size=max_size_from_env(), wait=False)
    except StoreBusyError:
        return []
    return done.swept + [e.digest for e in done.evicted if not store.blobs.exists(e.digest)]


def build_modelfile(
    store: Store,
    name: ModelName,
    modelfile: ir.Modelfile,
    *,
    progress: ProgressCallback = no_progress,
    relative_dir: str | Path | None = None,
    insecure: bool = False,
) -> BuildResult:
    """Build a parsed Modelfile (paths relative to its folder, or `relative_dir`)."""
    request = request_from_modelfile(modelfile, relative_dir=relative_dir)
    return build(store, name, request, progress=progress, insecure=insecure)
