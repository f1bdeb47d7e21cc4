"""reseal: give a cloned disk image an identity of its own, offline."""

__version__ = "0.1.0"
