"""The file types of `llama-quantize` (`llama_ftype`): names, ids, and how a name is parsed.

The one table of file types: QUANTIZE, `mfc quantize`, `mfc convert --outtype` and the
store's `file_type` name all read it. Pure data and no kernels, so that `mfc check` can
list the QUANTIZE types without importing numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

from quant.errors import QuantError


@dataclass(frozen=True, slots=True)
class FileType:
    name: str  # canonical spelling, as llama-quantize prints it
    id: int  # llama_ftype, written to general.file_type
    default: str  # the tensor type most tensors get


#: listed as people choose among them: the legacy types, the K-quant mixtures, the
#: i-quants from 4 bits down, the floats
_FILE_TYPES = (
    FileType("Q4_0", 2, "Q4_0"),
    FileType("Q4_1", 3, "Q4_1"),
    FileType("Q5_0", 8, "Q5_0"),
    FileType("Q5_1", 9, "Q5_1"),
    FileType("Q8_0", 7, "Q8_0"),
    FileType("Q2_K", 10, "Q2_K"),
    FileType("Q2_K_S", 21, "Q2_K"),
    FileType("Q3_K_S", 11, "Q3_K"),
    FileType("Q3_K_M", 12, "Q3_K"),
    FileType("Q3_K_L", 13, "Q3_K"),
    FileType("Q4_K_S", 14, "Q4_K"),
    FileType("Q4_K_M", 15, "Q4_K"),
    FileType("Q5_K_S", 16, "Q5_K"),
    FileType("Q5_K_M", 17, "Q5_K"),
    FileType("Q6_K", 18, "Q6_K"),
    FileType("IQ4_NL", 25, "IQ4_NL"),
    FileType("IQ4_XS", 30, "IQ4_XS"),
    FileType("IQ3_S", 26, "IQ3_S"),
    FileType("IQ3_M", 27, "IQ3_S"),
    FileType("IQ3_XS", 22, "IQ3_S"),
    FileType("IQ3_XXS", 23, "IQ3_XXS"),
    FileType("IQ2_M", 29, "IQ2_S"),
    FileType("IQ2_S", 28, "IQ2_XS"),
    FileType("IQ2_XS", 20, "IQ2_XS"),
    FileType("IQ2_XXS", 19, "IQ2_XXS"),
    FileType("IQ1_M", 31, "IQ1_M"),
    FileType("IQ1_S", 24, "IQ1_S"),
    FileType("F16", 1, "F16"),
    FileType("BF16", 32, "BF16"),
    FileType("F32", 0, "F32"),
)
FILE_TYPES: dict[str, FileType] = {f.name: f for f in _FILE_TYPES}
#: the spellings llama-quantize also accepts for a file type
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}
FTYPE_NAMES: tuple[str, ...] = tuple(f.name for f in _FILE_TYPES)
#: file types llama-quantize refuses to make without an importance matrix (its "Please do
#: not use ... without an importance matrix"; IQ2_M's IQ2_S tensors need one as well)
IMATRIX_REQUIRED = frozenset(("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "Q2_K_S"))
_BY_ID: dict[int, FileType] = {f.id: f for f in _FILE_TYPES}
#: llama_ftype's flag bit for a file type that was guessed, not read (no file type of its own)
_GUESSED = 1024


def ftype_name(ftype_id: int) -> str | None:
    """llama.cpp's name for a `general.file_type` id: this table's, else gguf-py's
    `LlamaFileType` for the ids mfc does not write (None for ids neither knows)."""
    if ftype_id in _BY_ID:
        return _BY_ID[ftype_id].name
    from quant.gguf_constants import LlamaFileType

    try:
        known = LlamaFileType(ftype_id)
    except ValueError:
        return None
    return None if ftype_id >= _GUESSED else known.name.removeprefix("MOSTLY_").removeprefix("ALL_")


def file_type(name: str) -> FileType:
    """Parse a file type the way llama-quantize does: case-insensitive name, alias or id."""
    key = name.strip().upper()
    key = ALIASES.get(key, key)
    if key in FILE_TYPES:
        return FILE_TYPES[key]
    if key.isdigit() and int(key) in _BY_ID:
        return _BY_ID[int(key)]
    raise QuantError(
        f"unknown quantization type {name!r}",
        hint="choose one of: " + ", ".join(FTYPE_NAMES),
    )
