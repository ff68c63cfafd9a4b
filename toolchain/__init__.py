"""mfc toolchain: the Modelfile compiler (front end, IR, passes, store, templates, converters)."""

__version__ = "0.1.0"

#: The Ollama release whose HTTP API `mfc serve` implements: `/api/version` reports it, as
#: clients gate features on it; mfc's own version is `__version__` (`mfc --version`, and
#: the `X-Mfc-Version` header of every response).
OLLAMA_API_VERSION = "0.32.15"
