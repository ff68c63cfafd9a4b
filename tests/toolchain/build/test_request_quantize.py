"""QUANTIZE is checked and normalised by the request, whoever builds it."""

from __future__ import annotations

import pytest

from toolchain.build.errors import BuildError
from toolchain.build.request import CreateRequest
from toolchain.errors import Span


def test_any_spelling_becomes_the_file_types_name() -> None:
    assert CreateRequest(from_model="m", quantize="q4_k_m").quantize == "Q4_K_M"
    assert CreateRequest(from_model="m", quantize="IQ3_m").quantize == "IQ3_M"
    assert CreateRequest(from_model="m").quantize == ""


def test_an_unknown_type_fails_at_its_span_with_a_suggestion() -> None:
    span = Span("Modelfile", 2, 10, 2, 15)
    with pytest.raises(BuildError, match="unsupported quantization type 'q4_km'") as info:
        CreateRequest(from_model="m", quantize="q4_km", spans={"quantize": span})
    assert info.value.span == span
    assert info.value.hint is not None and info.value.hint.startswith("did you mean q4_K_M?")


def test_the_flag_replaces_the_modelfiles_type_and_its_span() -> None:
    span = Span("Modelfile", 2, 10, 2, 16)
    req = CreateRequest(from_model="m", quantize="q8_0", spans={"quantize": span})
    assert req.with_quantize("q4_0").quantize == "Q4_0"
    with pytest.raises(BuildError) as info:
        req.with_quantize("q9")
    assert info.value.span is None  # the flag is not at the Modelfile's QUANTIZE line
