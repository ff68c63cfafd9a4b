"""The Jinja fallback is bounded in time, loop steps and value sizes (issue 13, defect 3).

Each template here made the old renderer allocate hundreds of MB in one operation or loop
for hours (jinja2's sandbox stops attribute escapes, not work); now each is a
JinjaChatError, which the server answers with a 400 and `mfc` prints as a diagnostic.
"""

from __future__ import annotations

import pytest

from toolchain.prompt import JinjaChatError, jinja_bounds, render_jinja_chat

MSGS = [{"role": "user", "content": "hi"}]
DOUBLE = "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s OP ns.s %}"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ 'a' * 10**8 }}", "value exceeds"),
        ("{{ [1, 2] * 10**8 }}", "value exceeds"),
        ("{{ 10 ** (10 ** 10) }}", "number exceeds"),
        ("{{ 'a' ~ 'b' * 10**8 }}", "value exceeds"),
        (DOUBLE.replace("OP", "~") + "{% endfor %}", "string exceeds"),
        (DOUBLE.replace("OP", "+") + "{% endfor %}", "value exceeds"),
        ("{{ 'x'.ljust(10**9) }}", "argument exceeds"),
        ("{{ 'x' | center(10**9) }}", "argument exceeds"),
        ("{{ '%*d' % (10**9, 1) }}", "format width exceeds"),
        ("{{ '%999999999d' % 1 }}", "format width exceeds"),
        ("{{ '%999999999d' | format(1) }}", "format width exceeds"),
        ("{% set s = 'x' * 10**7 %}{{ [s, s, s] | join(',') }}", "string exceeds"),
        ("{% set s = 'x' * 10**7 %}{{ s | replace('x', 'yy') }}", "string exceeds"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "loops exceed 1000000 iterations",
        ),
    ],
)
def test_expensive_templates_fail_fast(template: str, message: str) -> None:
    with pytest.raises(JinjaChatError, match=message):
        render_jinja_chat(template, MSGS)


def test_a_render_has_a_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    from toolchain.prompt import jinja

    monkeypatch.setattr(jinja, "MAX_SECONDS", 0)
    with pytest.raises(JinjaChatError, match="execution exceeds 0 seconds"):
        render_jinja_chat("{% for i in range(1000) %}{% endfor %}", MSGS)


def test_ordinary_templates_render_as_before() -> None:
    template = (
        "{% for m in messages %}{{ m.role ~ ': ' ~ m.content }}\n{% endfor %}"
        "{{ messages | join(',', attribute='role') }}|{{ 'a b' | replace('a', 'c') }}|"
        "{{ '%s-%d' | format('x', 3) }}|{{ 'hi' | center(6) }}|{{ 2 ** 10 }}|{{ 'ab' * 3 }}|"
        "{{ '%05d' % 42 }}|"
        "{% for x in [1, 2, 3] if x > 1 %}{{ loop.index }}/{{ loop.length }}{% endfor %}"
    )
    assert render_jinja_chat(template, MSGS) == (
        "user: hi\nuser|c b|x-3|  hi  |1024|ababab|00042|1/22/2"
    )
    assert jinja_bounds.MAX_VALUE == 16 << 20
