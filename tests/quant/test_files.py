"""Whole files, byte for byte against `llama_cpp.llama_model_quantize` with the same options:
every file type, without and with an importance matrix, on SmolLM2-135M in F32 (as is, and
re-shaped to rows of 2304), on synthetic edge-case models, and on a tiny MoE model (stacked
experts)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from quant_reference import (
    FTYPES,
    IQ_CASES,
    IQ_FTYPES,
    OPTION_CASES,
    Reference,
    reference,
    sha256_file,
)

import quant
from quant.gguf_read import GGUFFile
from quant.imatrix import write_imatrix_gguf

from .conftest import DiskTensorCache
from .data import synthetic_model


def _describe_difference(ours: Path, theirs: Path) -> str:
    with GGUFFile(ours) as a, GGUFFile(theirs) as b:
        if [a.encoded(k) for k in a.header.kv] != [b.encoded(k) for k in b.header.kv]:
            return "metadata differs"
        for ta, tb in zip(a.tensors, b.tensors, strict=False):
            if (ta.name, ta.ne, ta.type_id) != (tb.name, tb.ne, tb.type_id):
                return f"tensor info differs: {ta} vs {tb}"
        names = [t.name for t in a.tensors]
        for ta, tb in zip(a.tensors, b.tensors, strict=False):
            nxt = a.tensors[ta.index + 1].offset if ta.index + 1 < len(names) else None
            size = (nxt - ta.offset) if nxt is not None else 0
            if size and not np.array_equal(a.read(ta, 0, size), b.read(tb, 0, size)):
                return f"data of {ta.name} (type {ta.type_id}) differs"
    return "files differ"


def check_same_as_llama(
    src: Path,
    ftype: str,
    out: Path,
    cache: DiskTensorCache | None,
    *,
    imatrix: Path | None = None,
    **options: object,
) -> quant.QuantizeResult | None:
    """Quantize with mfc and with llama.cpp; both must fail, or write identical bytes."""
    ref: Reference = reference(src, ftype, imatrix=imatrix, **options)  # type: ignore[arg-type]
    if not ref.ok:
        with pytest.raises(quant.QuantError):
            quant.quantize_file(src, out, ftype, imatrix=imatrix, threads=2, cache=cache, **options)  # type: ignore[arg-type]
        assert not out.exists()
        assert not list(out.parent.glob(f".{out.name}*")), "a temporary file was left behind"
        return None
    result = quant.quantize_file(
        src, out, ftype, imatrix=imatrix, threads=2, cache=cache, **options
    )  # type: ignore[arg-type]
    digest = sha256_file(out)
    if digest != ref.sha256:
        theirs = out.with_name("llama.gguf")
        reference(src, ftype, imatrix=imatrix, keep=theirs, **options)  # type: ignore[arg-type]
        pytest.fail(
            f"{src.name} {ftype}: output differs from llama.cpp's: "
            f"{_describe_difference(out, theirs)}"
        )
    assert out.stat().st_size == ref.size
    out.unlink()
    return result


@pytest.mark.slow
@pytest.mark.oracle
@pytest.mark.parametrize("with_imatrix", [False, True], ids=["plain", "imatrix"])
@pytest.mark.parametrize("ftype", FTYPES)
@pytest.mark.parametrize("shape", ["as-is", "rows-2304"])
def test_smollm2_matches_llama_cpp(
    shape: str,
    ftype: str,
    with_imatrix: bool,
    smollm2_f32: Path,
    smollm2_f32_2304: Path,
    imatrix_dir: Path,
    tensor_cache: DiskTensorCache,
    tmp_path: Path,
) -> None:
    src = smollm2_f32 if shape == "as-is" else smollm2_f32_2304
    tag = "smollm2" if shape == "as-is" else "smollm2-2304"
    im = imatrix_dir / f"{tag}.imatrix.gguf" if with_imatrix else None
    result = check_same_as_llama(src, ftype, tmp_path / "out.gguf", tensor_cache, imatrix=im)
    if ftype == "Q2_K_S" and not with_imatrix:
        assert result is None  # llama.cpp refuses Q2_K_S without an imatrix, and so do we


@pytest.mark.slow
@pytest.mark.oracle
@pytest.mark.timeout(3600)  # the lattice searches take minutes of CPU, more on a busy machine
@pytest.mark.parametrize(("model", "ftype", "tag"), IQ_CASES, ids=[c[1] for c in IQ_CASES])
def test_smollm2_iquants_match_llama_cpp(
    model: str,
    ftype: str,
    tag: str | None,
    imatrix_dir: Path,
    tensor_cache: DiskTensorCache,
    tmp_path: Path,
) -> None:
    """IQ4_XS, IQ3_XS, IQ2_M, IQ2_XS and IQ2_XXS with an imatrix on rows of 2304, IQ3_XXS on
    rows of 576 (IQ4_NL, IQ3_S, IQ3_M and IQ2_S are compared on the synthetic models only:
    on SmolLM2 each costs minutes)."""
    im = imatrix_dir / f"{tag}.imatrix.gguf" if tag else None
    check_same_as_llama(imatrix_dir / model, ftype, tmp_path / "out.gguf", tensor_cache, imatrix=im)


@pytest.mark.slow
@pytest.mark.oracle
@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_options_match_llama_cpp(
    case: str, smollm2_f32_2304: Path, tensor_cache: DiskTensorCache, tmp_path: Path
) -> None:
    ftype, options = OPTION_CASES[case]
    check_same_as_llama(smollm2_f32_2304, ftype, tmp_path / "out.gguf", tensor_cache, **options)


@pytest.mark.slow
@pytest.mark.oracle
def test_legacy_dat_imatrix_matches_llama_cpp(
    smollm2_f32_2304: Path, imatrix_dir: Path, tensor_cache: DiskTensorCache, tmp_path: Path
) -> None:
    im = imatrix_dir / "smollm2-2304.imatrix.dat"
    check_same_as_llama(smollm2_f32_2304, "Q4_K_M", tmp_path / "out.gguf", tensor_cache, imatrix=im)


@pytest.mark.oracle
def test_requantize_matches_llama_cpp(smollm2_gguf: Path, tmp_path: Path) -> None:
    """A Q4_1 input is refused unless allowed; allowed, it is dequantized like ggml does."""
    check_same_as_llama(smollm2_gguf, "Q4_K_M", tmp_path / "out.gguf", None)
    check_same_as_llama(smollm2_gguf, "Q4_K_M", tmp_path / "out.gguf", None, allow_requantize=True)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Two small edge-case models (untied and tied embeddings), each with an imatrix."""
    root = tmp_path_factory.mktemp("synthetic")
    out = {}
    for tag, tied in (("untied", False), ("tied", True)):
        model = root / f"{tag}.gguf"
        weights = synthetic_model(model, tied=tied)
        im = root / f"{tag}.imatrix.gguf"
        write_imatrix_gguf(
            im,
            {k: v * 7 for k, v in weights.items()},
            {k: np.array([7.0], np.float32) for k in weights},
            datasets=["synthetic"],
            chunk_count=1,
            chunk_size=7,
        )
        out[tag] = (model, im)
    return out


@pytest.mark.oracle
@pytest.mark.parametrize("with_imatrix", [False, True], ids=["plain", "imatrix"])
@pytest.mark.parametrize("ftype", FTYPES + IQ_FTYPES)
@pytest.mark.parametrize("tag", ["untied", "tied"])
def test_synthetic_edge_cases_match_llama_cpp(
    tag: str,
    ftype: str,
    with_imatrix: bool,
    synthetic: dict[str, tuple[Path, Path]],
    tmp_path: Path,
) -> None:
    model, im = synthetic[tag]
    check_same_as_llama(
        model, ftype, tmp_path / "out.gguf", None, imatrix=im if with_imatrix else None
    )


def _llama_refusal(tools: Path, src: Path, ftype: str, imatrix: Path | None) -> str:
    cmd = [str(tools / "llama-quantize")]
    if imatrix:
        cmd += ["--imatrix", str(imatrix)]
    run = subprocess.run(
        [*cmd, str(src), str(src.with_suffix(".out.gguf")), ftype],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode != 0
    return run.stdout + run.stderr


@pytest.mark.oracle
@pytest.mark.parametrize("ftype", ["IQ2_XXS", "IQ2_XS", "IQ3_XS"])
def test_imatrix_refusals_match_llama_quantize(
    ftype: str, synthetic: dict[str, tuple[Path, Path]], llama_tools: Path, tmp_path: Path
) -> None:
    """No imatrix, or one without an entry for a tensor that needs it: llama-quantize's
    refusal, naming the same tensor (and target type)."""
    model, im = synthetic["untied"]
    theirs = _llama_refusal(llama_tools, model, ftype, None)
    m = re.search(r"offending tensor: (\S+)\s+- target type: (\S+)", theirs)
    assert m, theirs[-2000:]
    with pytest.raises(quant.QuantError) as info:
        quant.quantize_file(model, tmp_path / "out.gguf", ftype)
    assert (
        f"this quantization requires an importance matrix (offending tensor "
        f"'{m.group(1)}', target type {m.group(2).upper()})"
    ) == info.value.message
    entries = quant.load_imatrix(im).entries
    partial = tmp_path / "partial.imatrix.gguf"
    dropped = "blk.0.ffn_up.weight"  # IQ2_XXS, IQ2_XS or IQ3_XXS in these file types
    write_imatrix_gguf(
        partial,
        {k: v for k, v in entries.items() if k != dropped},
        {k: np.array([1.0], np.float32) for k in entries if k != dropped},
        datasets=["synthetic"],
        chunk_count=1,
        chunk_size=1,
    )
    theirs = _llama_refusal(llama_tools, model, ftype, partial)
    m = re.search(r"Missing importance matrix for tensor (\S+) in a very low-bit", theirs)
    assert m and m.group(1) == dropped, theirs[-2000:]
    with pytest.raises(
        quant.QuantError,
        match=f"missing importance matrix for tensor "
        f"'{re.escape(dropped)}' in a very low-bit quantization",
    ):
        quant.quantize_file(model, tmp_path / "out.gguf", ftype, imatrix=partial)
    assert not (tmp_path / "out.gguf").exists()


@pytest.fixture(scope="module")
def moe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """tiny-qwen3moe converted to F16 (stacked experts: 3-D tensors of 4 experts whose rows
    are fewer than a chunk), and an imatrix with one row of sums per expert."""
    from fixtures.generate_tiny_models import build_in_place, build_tiny
    from fixtures.tiny_breadth import BY_NAME
    from tests.conftest import MODELS
    from toolchain.convert import convert_hf_dir

    src = build_in_place(MODELS / "tiny-qwen3moe", lambda d: build_tiny(BY_NAME[d.name], d))
    root = tmp_path_factory.mktemp("moe")
    model = root / "moe.f16.gguf"
    convert_hf_dir(src, model, "f16")
    rng = np.random.default_rng(3)
    sums, counts = {}, {}
    with GGUFFile(model) as g:
        for t in g.tensors:
            if len(t.ne) > 1:
                nmat = t.ne[2] if len(t.ne) > 2 else 1
                sums[t.name] = rng.uniform(0.1, 9.0, (nmat, t.ne[0])).astype(np.float32)
                counts[t.name] = np.full(nmat, 5.0, np.float32)
    assert any(s.shape[0] > 1 for s in sums.values()), "no stacked experts in the fixture"
    im = root / "moe.imatrix.gguf"
    write_imatrix_gguf(im, sums, counts, datasets=["moe"], chunk_count=1, chunk_size=5)
    return model, im


@pytest.mark.oracle
@pytest.mark.parametrize("with_imatrix", [False, True], ids=["plain", "imatrix"])
@pytest.mark.parametrize("ftype", ["Q8_0", "Q4_K_M", "Q2_K", "IQ4_XS"])
def test_stacked_experts_match_llama_cpp(
    ftype: str, with_imatrix: bool, moe: tuple[Path, Path], tmp_path: Path
) -> None:
    """Every expert of a 3-D expert tensor, not only the first: chunks stop at an expert's
    last row and the next chunk starts at the following row."""
    model, im = moe
    check_same_as_llama(
        model, ftype, tmp_path / "out.gguf", None, imatrix=im if with_imatrix else None
    )
