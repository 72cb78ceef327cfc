"""The release version (the image header's producer names it)."""

__version__ = "0.1.0"
