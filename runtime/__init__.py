"""The mfc runtime: Ollama- and OpenAI-compatible HTTP API over llama-cpp-python."""
