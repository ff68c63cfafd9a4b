"""The one GGUF reader and writer against gguf-py's GGUFWriter (the reference's own Python
writer): same bytes for the same typed pairs and tensors, and everything read back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFEndian, GGUFValueType, GGUFWriter

from quant.gguf_read import ARRAY_HEAD, GGUFFile, read_header
from quant.gguf_values import GGUFArray, GGUFFormatError
from quant.gguf_write import encode_pair, header_bytes, padded, tensor_table

V = GGUFValueType
#: (key, type, value, item type): one of every scalar type and the array kinds mfc writes
PAIRS = [
    ("general.architecture", V.STRING, "llama", None),
    ("t.u8", V.UINT8, 200, None),
    ("t.i8", V.INT8, -100, None),
    ("t.u16", V.UINT16, 60000, None),
    ("t.i16", V.INT16, -30000, None),
    ("t.u32", V.UINT32, 4_000_000_000, None),
    ("t.i32", V.INT32, -2_000_000_000, None),
    ("t.f32", V.FLOAT32, 0.1, None),
    ("t.bool", V.BOOL, True, None),
    ("t.u64", V.UINT64, 2**63 + 5, None),
    ("t.i64", V.INT64, -(2**62), None),
    ("t.f64", V.FLOAT64, 1e300, None),
    ("t.str", V.STRING, "ünï <|im_end|>", None),
    ("t.tokens", V.ARRAY, [f"tok{i}" for i in range(100)] + ["ü", ""], V.STRING),
    ("t.scores", V.ARRAY, [float(i) / 3 for i in range(50)], V.FLOAT32),
    ("t.types", V.ARRAY, list(range(-5, 40)), V.INT32),
    ("t.bytes", V.ARRAY, [0, 1, 255], V.UINT8),
    ("t.flags", V.ARRAY, [True, False, True], V.BOOL),
]
TENSORS = {
    "a.weight": np.arange(96, dtype=np.float32).reshape(3, 32),
    "b.weight": np.linspace(-1, 1, 40, dtype=np.float16).reshape(40),
    "c.weight": np.ones((2, 3, 8), dtype=np.float32),
}


def write_with_gguf_py(path: Path, endianess: GGUFEndian = GGUFEndian.LITTLE) -> Path:
    w = GGUFWriter(path, "llama", endianess=endianess)
    for key, vtype, value, item_type in PAIRS[1:]:
        w.add_key_value(key, value, vtype, item_type)
    for name, data in TENSORS.items():
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_with_ours(path: Path) -> Path:
    pairs = [encode_pair(k, t, v, it) for k, t, v, it in PAIRS]
    type_ids = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}
    table = tensor_table(
        [
            (name, tuple(reversed(data.shape)), type_ids[data.dtype], data.nbytes)
            for name, data in TENSORS.items()
        ]
    )
    data = b"".join(a.tobytes() + bytes(padded(a.nbytes) - a.nbytes) for a in TENSORS.values())
    path.write_bytes(header_bytes(pairs, table) + data)
    return path


def test_writer_writes_what_gguf_py_writes(tmp_path: Path) -> None:
    theirs = write_with_gguf_py(tmp_path / "theirs.gguf").read_bytes()
    assert write_with_ours(tmp_path / "ours.gguf").read_bytes() == theirs


def test_reader_reads_back_every_type(tmp_path: Path) -> None:
    path = write_with_gguf_py(tmp_path / "m.gguf")
    header = read_header(path, full_arrays=True)
    assert list(header.kv) == [k for k, *_ in PAIRS]
    for key, vtype, value, _ in PAIRS:
        assert header.types[key] == vtype
        got = header.kv[key]
        if vtype == V.ARRAY:
            assert isinstance(got, GGUFArray) and got.length == len(value)
            assert np.allclose(got.items, value) if key == "t.scores" else list(got.items) == value
        elif vtype == V.FLOAT32:
            assert got == pytest.approx(value)
        else:
            assert got == value, key
    assert [(t.name, t.ne, t.type_id, t.nbytes) for t in header.tensors] == [
        (n, tuple(reversed(a.shape)), 0 if a.dtype == np.float32 else 1, a.nbytes)
        for n, a in TENSORS.items()
    ]
    header.check_tensors()
    with GGUFFile(path) as g:
        for key, vtype, value, item_type in PAIRS:
            assert g.encoded(key) == encode_pair(key, vtype, value, item_type)
        t = g.tensors[0]
        assert g.read(t, 0, t.nbytes).view(np.float32).tolist() == list(range(96))
        assert g.full("t.tokens").items == tuple(PAIRS[13][2])


def test_header_only_keeps_the_head_of_long_arrays(tmp_path: Path) -> None:
    header = read_header(write_with_gguf_py(tmp_path / "m.gguf"))
    tokens = header.kv["t.tokens"]
    assert tokens.length == 102 and tokens.items == tuple(f"tok{i}" for i in range(ARRAY_HEAD))
    assert header.kv["t.flags"].items == (True, False, True)  # short arrays stay whole


def test_big_endian_files_read_but_tensor_bytes_refused(tmp_path: Path) -> None:
    path = write_with_gguf_py(tmp_path / "be.gguf", GGUFEndian.BIG)
    header = read_header(path, full_arrays=True)
    little = read_header(write_with_gguf_py(tmp_path / "le.gguf"), full_arrays=True)
    assert header.byte_order == ">" and header.kv == little.kv
    assert header.tensors == little.tensors
    with pytest.raises(GGUFFormatError, match="big-endian"):
        GGUFFile(path)


@pytest.mark.parametrize("keep", [40, 200, 700])
def test_cut_inside_the_header_is_a_truncated_gguf(tmp_path: Path, keep: int) -> None:
    whole = write_with_gguf_py(tmp_path / "m.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[:keep])
    with pytest.raises(GGUFFormatError, match="truncated GGUF: the file ends inside its header"):
        read_header(cut)
    with pytest.raises(GGUFFormatError, match="truncated GGUF"):
        GGUFFile(cut)


def test_quantize_imports_gguf_tables_without_the_package() -> None:
    """Quantizing imports neither gguf-py's package (sentencepiece, yaml...) nor its
    constants module (hundreds of enums); the value types mfc defines are gguf-py's, and
    the tables loaded on demand are gguf-py's own classes, which a later `import gguf`
    shares (its `constants` attribute bound)."""
    code = (
        "import sys\n"
        "import quant.pipeline, quant.quantize_file\n"
        "heavy = sorted(m for m in ('gguf', 'gguf.constants', 'gguf.vocab', 'yaml',"
        " 'sentencepiece') if m in sys.modules)\n"
        "from quant import gguf_constants\n"
        "sizes = gguf_constants.GGML_QUANT_SIZES\n"
        "import gguf\n"
        "same = gguf.constants.GGML_QUANT_SIZES is sizes and gguf.GGMLQuantizationType is"
        " gguf_constants.GGMLQuantizationType\n"
        "ours = [(t.name, int(t)) for t in gguf_constants.GGUFValueType]\n"
        "print(heavy, same, ours == [(t.name, int(t)) for t in gguf.GGUFValueType])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["[]", "True", "True"]
