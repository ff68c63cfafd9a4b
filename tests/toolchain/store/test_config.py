"""The config blob's per-architecture defaults (the reference's create sets a renderer,
parser and stop words for some architectures when the request names none)."""

from __future__ import annotations

from toolchain.store.config import ModelConfig


def test_architecture_defaults_fill_only_what_the_request_left_empty() -> None:
    config, stop = ModelConfig().with_arch_defaults("gemma4")
    assert (config.renderer, config.parser, stop) == ("gemma4", "gemma4", ("<turn|>",))
    config, stop = ModelConfig(renderer="mine").with_arch_defaults("nemotron_h")
    assert (config.renderer, config.parser, stop) == ("mine", "nemotron-3-nano", None)
    both = ModelConfig(renderer="r", parser="p")
    assert both.with_arch_defaults("gemma4") == (both, None)
    assert ModelConfig().with_arch_defaults("llama") == (ModelConfig(), None)
