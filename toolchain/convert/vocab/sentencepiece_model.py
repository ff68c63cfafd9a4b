"""Just enough of sentencepiece's ModelProto (tokenizer.model) to convert a vocabulary.

The file is a protobuf message; we decode the wire format directly instead of
depending on the sentencepiece or protobuf packages. Fields used (sentencepiece_model.proto):
  ModelProto      1 pieces (repeated), 2 trainer_spec, 3 normalizer_spec
  SentencePiece   1 piece (string), 2 score (float), 3 type (enum, default NORMAL=1)
  TrainerSpec     3 model_type (1 unigram, 2 bpe), 35 byte_fallback
  NormalizerSpec  3 add_dummy_prefix (default true), 4 remove_extra_whitespaces (default true)
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from toolchain.convert.errors import ConvertError


@dataclass
class SentencePieceModel:
    pieces: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    types: list[int] = field(default_factory=list)
    model_type: int = 1
    byte_fallback: bool = False
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True


class _TruncatedError(Exception):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _TruncatedError
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field of one message."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise _TruncatedError
        if pos > end:
            raise _TruncatedError
        yield number, wire, value


def read_sentencepiece_model(path: Path) -> SentencePieceModel:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConvertError(path, f"cannot read: {exc.strerror or exc}") from exc
    model = SentencePieceModel()
    try:
        for number, wire, value in _fields(data):
            if wire != 2 or not isinstance(value, bytes):
                continue
            if number == 1:
                _piece(model, value)
            elif number == 2:
                for n, _w, v in _fields(value):
                    if n == 3 and isinstance(v, int):
                        model.model_type = v
                    elif n == 35 and isinstance(v, int):
                        model.byte_fallback = bool(v)
            elif number == 3:
                for n, _w, v in _fields(value):
                    if n == 3 and isinstance(v, int):
                        model.add_dummy_prefix = bool(v)
                    elif n == 4 and isinstance(v, int):
                        model.remove_extra_whitespaces = bool(v)
    except (_TruncatedError, UnicodeDecodeError) as exc:
        raise ConvertError(path, "not a sentencepiece model (corrupt or truncated)") from exc
    if not model.pieces:
        raise ConvertError(path, "not a sentencepiece model (no pieces)")
    return model


def _piece(model: SentencePieceModel, buf: bytes) -> None:
    text, score, kind = "", 0.0, 1
    for n, _w, v in _fields(buf):
        if n == 1 and isinstance(v, bytes):
            text = v.decode("utf-8")
        elif n == 2 and isinstance(v, int):
            score = struct.unpack("<f", v.to_bytes(4, "little"))[0]
        elif n == 3 and isinstance(v, int):
            kind = v
    model.pieces.append(text)
    model.scores.append(score)
    model.types.append(kind)
