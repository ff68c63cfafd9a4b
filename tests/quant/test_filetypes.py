"""The one file-type table against llama.cpp's `llama_ftype` (gguf-py's `LlamaFileType`)."""

from __future__ import annotations

from gguf.constants import LlamaFileType

from quant.filetypes import FILE_TYPES, ftype_name
from toolchain.convert.outtype import FLOAT_OUTTYPES
from toolchain.store.config import file_type_name


def _llama_name(ft: LlamaFileType) -> str:
    return ft.name.removeprefix("MOSTLY_").removeprefix("ALL_")


def test_every_row_has_llama_cpps_id_and_name() -> None:
    for name, ft in FILE_TYPES.items():
        assert _llama_name(LlamaFileType(ft.id)) == name


def test_ids_mfc_does_not_write_are_named_as_llama_cpp_names_them() -> None:
    for ft in LlamaFileType:
        if int(ft) < 1024:
            assert ftype_name(int(ft)) == _llama_name(ft)
    assert ftype_name(int(LlamaFileType.GUESSED)) is None
    assert ftype_name(4) is None  # Q4_1_SOME_F16, long gone from llama.cpp


def test_store_names_follow_the_reference() -> None:
    assert file_type_name(15) == "Q4_K_M" and file_type_name(38) == "MXFP4_MOE"
    # the reference's FileType.String() has no name for 0, ids it does not know, non-ints
    for value in (0, 4, 1024, 99999, True, "15", None, 1.0):
        assert file_type_name(value) == "unknown"


def test_converter_float_types_use_the_table() -> None:
    assert {k: v.file_type for k, v in FLOAT_OUTTYPES.items()} == {
        "f32": 0,
        "f16": 1,
        "bf16": 32,
        "auto": 1,
        "ollama": 1,  # the reference's converter says F16 whatever it kept BF16
    }
