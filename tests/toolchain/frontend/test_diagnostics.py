"""Done when: exact text and line:col pinned for missing FROM, unknown instruction, unknown
parameter with suggestion, bad value type, unterminated \"\"\" (pointing at where it opened),
invalid MESSAGE role, repeated FROM (warning), unknown QUANTIZE type. The text is exactly
what `mfc check` prints (render of check_source's diagnostics)."""

from __future__ import annotations

import pytest

from toolchain.diagnostics import render
from toolchain.frontend import ParserError, UnexpectedEOFError, parse_modelfile
from toolchain.frontend.check import check_source


def check_output(source: str) -> str:
    mf, diags = check_source(source.encode(), "Modelfile")
    return "\n".join(render(d, mf.source) for d in diags)


def test_missing_from() -> None:
    assert check_output("# only a comment\nSYSTEM hi\n") == (
        "Modelfile:1:1: error: no FROM line\n"
        "    # only a comment\n"
        "    ^\n"
        "hint: a Modelfile starts from a model: FROM <name>, a GGUF file or a safetensors folder"
    )


def test_unknown_instruction() -> None:
    assert check_output("FROM llama3\n\n  INCLUDE other.modelfile\n") == (
        'Modelfile:3:3: error: command must be one of "from", "license", "template", "system", '
        '"adapter", "draft", "renderer", "parser", "parameter", "message", or "requires"\n'
        "      INCLUDE other.modelfile\n"
        "      ^~~~~~~\n"
        "hint: an instruction is one of FROM, LICENSE, TEMPLATE, SYSTEM, ADAPTER, DRAFT, "
        "RENDERER, PARSER, PARAMETER, MESSAGE, REQUIRES, QUANTIZE, IMATRIX; to continue a value "
        'over several lines, wrap it in """'
    )


def test_misspelled_instruction_gets_a_suggestion() -> None:
    out = check_output("FORM llama3\n")
    assert out.startswith('Modelfile:1:1: error: command must be one of "from"')
    assert out.endswith("hint: did you mean FROM?")


def test_unknown_parameter_with_suggestion() -> None:
    assert check_output("FROM llama3\nPARAMETER temprature 0.7\n") == (
        "Modelfile:2:11: error: unknown parameter 'temprature'\n"
        "    PARAMETER temprature 0.7\n"
        "              ^~~~~~~~~~\n"
        "hint: did you mean temperature?"
    )


@pytest.mark.parametrize(
    "line,message,caret,hint",
    [
        (
            "PARAMETER num_ctx 4k",
            "invalid int value [4k]",
            "^~",
            "num_ctx takes an integer, e.g. 4096",
        ),
        (
            "PARAMETER top_p high",
            "invalid float value [high]",
            "^~~~",
            "top_p takes a number, e.g. 0.7",
        ),
        (
            "PARAMETER use_mmap yes",
            "invalid bool value [yes]",
            "^~~",
            "use_mmap takes true or false",
        ),
    ],
)
def test_bad_value_type(line: str, message: str, caret: str, hint: str) -> None:
    col = line.rindex(" ") + 2
    assert check_output(f"FROM llama3\n{line}\n") == (
        f"Modelfile:2:{col}: error: {message}\n"
        f"    {line}\n"
        f"    {' ' * (col - 1)}{caret}\n"
        f"hint: {hint}"
    )


def test_unterminated_triple_quote_points_at_where_it_opened() -> None:
    source = 'FROM llama3\nTEMPLATE """{{ .System }}\n{{ .Prompt }}\n\nPARAMETER top_k 1\n'
    assert check_output(source) == (
        "Modelfile:2:10: error: unexpected EOF\n"
        '    TEMPLATE """{{ .System }}\n'
        "             ^~~\n"
        'hint: this """ is never closed: end the value with """ at the end of a line'
    )
    with pytest.raises(UnexpectedEOFError) as caught:
        parse_modelfile(source, "Modelfile")
    assert str(caught.value) == "unexpected EOF"


def test_invalid_message_role() -> None:
    assert check_output("FROM llama3\nMESSAGE tool {}\n") == (
        'Modelfile:2:9: error: message role must be one of "system", "user", or "assistant"\n'
        "    MESSAGE tool {}\n"
        "            ^~~~\n"
        "hint: roles are system, user and assistant"
    )
    with pytest.raises(ParserError) as caught:
        parse_modelfile("FROM llama3\nMESSAGE tool {}\n")
    assert str(caught.value) == (
        '(line 2): message role must be one of "system", "user", or "assistant"'
    )


def test_repeated_from_is_a_warning_naming_both_lines() -> None:
    assert check_output("FROM llama3\nSYSTEM hi\nFROM mistral\n") == (
        "Modelfile:3:1: warning: FROM repeated: line 3 replaces line 1\n"
        "    FROM mistral\n"
        "    ^~~~~~~~~~~~\n"
        "hint: the last FROM names the model; FROM files are all added, as `ollama create` "
        "does (e.g. a vision projector); remove the FROM you do not want"
    )


def test_unknown_quantize_type() -> None:
    assert check_output("FROM ./model.gguf\nQUANTIZE q4_km\n") == (
        "Modelfile:2:10: error: unsupported quantization type 'q4_km'\n"
        "    QUANTIZE q4_km\n"
        "             ^~~~~\n"
        "hint: did you mean q4_K_M? known types: q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q2_K_S, "
        "q3_K_S, q3_K_M, q3_K_L, q4_K_S, q4_K_M, q5_K_S, q5_K_M, q6_K, iq4_NL, iq4_XS, "
        "iq3_S, iq3_M, iq3_XS, iq3_XXS, iq2_M, iq2_S, iq2_XS, iq2_XXS, iq1_M, iq1_S, f16, bf16, "
        "f32"
    )


def test_quantize_types_are_case_insensitive() -> None:
    for spelling in ("q4_K_M", "Q4_K_M", "q4_k_m", "BF16", "f32"):
        assert check_output(f"FROM x\nQUANTIZE {spelling}\n") == ""


def test_every_error_found_in_one_run_in_source_order() -> None:
    source = (
        "FROM llama3\n"
        "PARAMETER temprature 0.7\n"
        "BADCOMMAND x\n"
        "PARAMETER num_ctx many\n"
        "MESSAGE bot hi\n"
        "PARAMETER mirostat 1\n"
        "REQUIRES 0.1.x\n"
        "ADAPTER a.gguf\n"
        "ADAPTER b.gguf\n"
    )
    _, diags = check_source(source, "Modelfile")
    assert [(d.span.line if d.span else 0, d.severity, d.message) for d in diags] == [
        (2, "error", "unknown parameter 'temprature'"),
        (
            3,
            "error",
            'command must be one of "from", "license", "template", "system", '
            '"adapter", "draft", "renderer", "parser", "parameter", "message", '
            'or "requires"',
        ),
        (4, "error", "invalid int value [many]"),
        (5, "error", 'message role must be one of "system", "user", or "assistant"'),
        (6, "warning", "parameter mirostat is deprecated"),
        (7, "error", "requires must be a valid semver (e.g. 0.14.0)"),
        (9, "warning", "ADAPTER repeated: line 9 replaces line 8"),
    ]


def test_crlf_file_columns_and_reference_line_numbers() -> None:
    """Spans count CRLF as one line (as editors do); the reference's own text counts two."""
    source = "FROM x\r\nBAD y\r\n"
    with pytest.raises(ParserError) as caught:
        parse_modelfile(source, "Modelfile")
    assert str(caught.value).startswith("(line 3): command must be one of")
    assert caught.value.span is not None
    assert (caught.value.span.line, caught.value.span.col) == (2, 1)


@pytest.mark.parametrize(
    "source,message,line,col,hint",
    [
        (
            "FROM x\nPARAMETER top-k 1\n",
            "unexpected EOF: top",
            2,
            11,
            "PARAMETER top needs a value",
        ),
        ("FROM x\nMESSAGE user\n", "unexpected EOF: user", 2, 9, "MESSAGE user needs a value"),
        ("FROM x\nSYSTEM", "unexpected EOF", 2, 1, "SYSTEM needs a value"),
        ("FROM x\nSYSTEM\n", None, 2, 1, "SYSTEM needs a value after a space, on the same line"),
        ("FROM x\n\u00a0 SYSTEM hi\n", None, 2, 1, "invisible character U+00A0"),
        ('FROM x\nSYSTEM "unclosed\n', "unexpected EOF", 2, 8, 'this " is never closed'),
    ],
)
def test_other_rejections(source: str, message: str | None, line: int, col: int, hint: str) -> None:
    _, diags = check_source(source, "Modelfile")
    assert len(diags) == 1
    (diag,) = diags
    assert diag.span is not None
    if message is not None:
        assert diag.message == message
    assert (diag.span.line, diag.span.col) == (line, col)
    assert diag.hint is not None and hint in diag.hint
