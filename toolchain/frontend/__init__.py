"""The Modelfile front end: bytes -> IR (`parse_modelfile`), semantic checks, formatting."""
