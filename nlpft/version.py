"""The version, in a module of its own: modules at any layer read it, and the package's
`__init__` (which reaches the Python API, at the top) re-exports it."""

__version__ = "0.1.0"
