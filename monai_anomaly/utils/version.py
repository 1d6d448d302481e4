"""The package version, in a leaf module that every layer can import."""

__all__ = ["__version__"]

__version__ = "0.1.0"
