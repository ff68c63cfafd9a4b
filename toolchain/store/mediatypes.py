"""Layer media types of the reference store (store_api.md §1.5)."""

from __future__ import annotations

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"

MODEL = "application/vnd.ollama.image.model"
ADAPTER = "application/vnd.ollama.image.adapter"
PROJECTOR = "application/vnd.ollama.image.projector"
DRAFT = "application/vnd.ollama.image.draft"
TEMPLATE = "application/vnd.ollama.image.template"
PROMPT = "application/vnd.ollama.image.prompt"  # legacy alias of TEMPLATE, read only
SYSTEM = "application/vnd.ollama.image.system"
PARAMS = "application/vnd.ollama.image.params"
MESSAGES = "application/vnd.ollama.image.messages"
LICENSE = "application/vnd.ollama.image.license"
EMBED = "application/vnd.ollama.image.embed"  # deprecated, ignored
TENSOR = "application/vnd.ollama.image.tensor"  # MLX models: carried, not read
JSON = "application/vnd.ollama.image.json"

#: layers whose blob is a GGUF file
GGUF_LAYERS = frozenset({MODEL, ADAPTER, PROJECTOR, DRAFT})

#: the short name `mfc show`/`mfc inspect` print for a media type
SHORT_NAMES = {
    MODEL: "model",
    ADAPTER: "adapter",
    PROJECTOR: "projector",
    DRAFT: "draft",
    TEMPLATE: "template",
    PROMPT: "prompt",
    SYSTEM: "system",
    PARAMS: "params",
    MESSAGES: "messages",
    LICENSE: "license",
    EMBED: "embed",
    TENSOR: "tensor",
    JSON: "json",
    CONFIG: "config",
}
