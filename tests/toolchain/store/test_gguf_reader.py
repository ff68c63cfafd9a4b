"""Our GGUF header reader against the gguf package's GGUFReader on the real demo model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader, GGUFValueType

from fixtures.tiny_gguf import write_tiny_model
from toolchain.store.gguf_reader import GGUFArray, GGUFError, read_gguf


def test_matches_gguf_package(smollm2_gguf: Path) -> None:
    ours = read_gguf(smollm2_gguf, full_arrays=True)
    ref = GGUFReader(smollm2_gguf)
    keys = [k for k in ref.fields if not k.startswith("GGUF.")]
    assert list(ours.kv) == keys
    for key in keys:
        field = ref.fields[key]
        value = ours.kv[key]
        assert ours.types[key] == field.types[0]
        if field.types[0] == GGUFValueType.ARRAY:
            assert isinstance(value, GGUFArray) and len(value.items) == value.length
            if field.types[-1] == GGUFValueType.STRING:
                expected = [bytes(field.parts[i]).decode() for i in field.data]
            else:
                expected = [field.parts[i].tolist()[0] for i in field.data]
            assert list(value.items) == expected, key
        elif field.types[0] == GGUFValueType.STRING:
            assert value == bytes(field.parts[field.data[0]]).decode()
        else:
            assert value == field.parts[field.data[0]].tolist()[0]
    assert [(t.name, list(t.ne), t.type_id, t.nbytes) for t in ours.tensors] == [
        (t.name, [int(d) for d in t.shape], int(t.tensor_type), int(t.n_bytes)) for t in ref.tensors
    ]
    assert ours.data_offset == ref.data_offset
    assert ours.parameter_count == sum(int(np.prod(t.shape)) for t in ref.tensors)
    short = read_gguf(smollm2_gguf)
    tokens = short.kv["tokenizer.ggml.tokens"]
    assert tokens.length == 49152 and len(tokens.items) == 8


@pytest.mark.parametrize("cut", [0, 3, 10, 24, 200, -1])
def test_truncated_or_foreign_files(tmp_path: Path, cut: int) -> None:
    whole = write_tiny_model(tmp_path / "whole.gguf").read_bytes()
    part = tmp_path / "part.gguf"
    part.write_bytes(whole[:cut] if cut >= 0 else whole[:-1])
    with pytest.raises(GGUFError, match=r"not a GGUF file|truncated GGUF"):
        read_gguf(part)


def test_not_gguf(tmp_path: Path) -> None:
    p = tmp_path / "x.bin"
    p.write_bytes(b"PK\x03\x04 a zip archive")
    with pytest.raises(GGUFError, match=r"not a GGUF file \(it starts with b'PK\\x03\\x04'"):
        read_gguf(p)
