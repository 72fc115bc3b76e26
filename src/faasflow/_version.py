"""The package's version, where every part can read it without importing the façade."""

__version__ = "0.1.0"
