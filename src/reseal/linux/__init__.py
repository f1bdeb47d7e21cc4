"""Plain-file editing helpers for Linux configuration formats (no I/O: text in, text out)."""
