"""The model layer's error, importable without loading torch or transformers (the CLI
maps it to exit 2 before it knows whether a model will be loaded at all)."""


class ModelLoadError(RuntimeError):
    """The checkpoint, its processor or its tokenizer cannot be loaded or used."""
