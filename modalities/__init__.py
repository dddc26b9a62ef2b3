"""Built-in modalities."""
