"""The type policy of the lattice i-quant file types (IQ2_M and IQ1_* have no kernels in mfc
yet), against `llama-quantize --dry-run` (built from the vendored llama.cpp): the same type for
every tensor, and an imatrix required exactly when llama.cpp says so."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from quant.filetypes import FileType
from quant.formats import BY_ID
from quant.gguf_read import GGUFFile
from quant.policy import LATTICE_IDS, ModelFacts, plan_tensors

from .data import synthetic_model

#: llama_ftype ids and default tensor types (llama_ftype_get_default_type)
LATTICE_FILE_TYPES = {
    "IQ2_XXS": FileType("IQ2_XXS", 19, "IQ2_XXS"),
    "IQ2_XS": FileType("IQ2_XS", 20, "IQ2_XS"),
    "IQ3_XS": FileType("IQ3_XS", 22, "IQ3_S"),
    "IQ3_XXS": FileType("IQ3_XXS", 23, "IQ3_XXS"),
    "IQ1_S": FileType("IQ1_S", 24, "IQ1_S"),
    "IQ2_S": FileType("IQ2_S", 28, "IQ2_XS"),
    "IQ2_M": FileType("IQ2_M", 29, "IQ2_S"),
    "IQ1_M": FileType("IQ1_M", 31, "IQ1_M"),
}
_NAMES = {v: k for k, v in LATTICE_IDS.items()} | {t: f.name for t, f in BY_ID.items()}
_LINE = re.compile(r"\]\s+(\S+)\s+- \[.*?\], type =\s*(\w+), .*?size =.*?(?:\((\w+)\))?\s*$")


def _dry_run(tools: Path, src: Path, ftype: str, imatrix: Path | None) -> tuple[dict, bool]:
    cmd = [str(tools / "llama-quantize"), "--dry-run"]
    if imatrix:
        cmd += ["--imatrix", str(imatrix)]
    run = subprocess.run(
        [*cmd, str(src), ftype], capture_output=True, text=True, timeout=300, check=False
    )
    out = run.stdout + run.stderr
    types = {}
    for line in out.splitlines():
        m = _LINE.search(line)
        if m:
            types[m.group(1)] = (m.group(3) or m.group(2)).upper()
    assert types, out[-3000:]
    return types, "will require an imatrix" in out


def _facts(g: GGUFFile) -> ModelFacts:
    # not quant.quantize_file's helper: importing that module would shadow the package's
    # lazy `quant.quantize_file` function for every later test
    arch = str(g.get("general.architecture"))
    n_head = int(g.get(f"{arch}.attention.head_count", 0))
    return ModelFacts(
        arch,
        int(g.get(f"{arch}.block_count", 0)),
        n_head,
        int(g.get(f"{arch}.attention.head_count_kv", n_head)),
    )


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lattice") / "untied.gguf"
    synthetic_model(path, tied=False)
    return path


@pytest.mark.oracle
@pytest.mark.parametrize("ftype", list(LATTICE_FILE_TYPES))
@pytest.mark.parametrize("model", ["synthetic", "smollm2", "smollm2-imatrix"])
def test_lattice_policy_matches_llama_quantize(
    model: str,
    ftype: str,
    llama_tools: Path,
    synthetic: Path,
    smollm2_f32: Path,
    imatrix_dir: Path,
) -> None:
    src = synthetic if model == "synthetic" else smollm2_f32
    im = imatrix_dir / "smollm2.imatrix.gguf" if model == "smollm2-imatrix" else None
    theirs, needs = _dry_run(llama_tools, src, ftype, im)
    with GGUFFile(src) as g:
        plans = plan_tensors(
            list(g.tensors), _facts(g), LATTICE_FILE_TYPES[ftype], has_imatrix=im is not None
        )
    ours = {p.tensor.name: _NAMES[p.target] for p in plans}
    assert ours == theirs
    if im is None:
        assert any(p.requires_imatrix for p in plans) == needs
