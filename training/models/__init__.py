"""One module per model kind."""
