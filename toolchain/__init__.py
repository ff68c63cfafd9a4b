"""mfc toolchain: the Modelfile compiler (front end, IR, passes, store, templates, converters)."""

__version__ = "0.1.0"
