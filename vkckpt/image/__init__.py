"""Checkpoint image container: header, framed msgpack records, trailer (see format.py)."""

from vkckpt.image.format import (
    CODECS,
    FORMAT_MAJOR,
    FORMAT_MINOR,
    PAGE,
    Header,
    ImageReader,
    ImageWriter,
    Record,
)
from vkckpt.image.limits import DEFAULT_LIMITS, Limits
from vkckpt.image.migrate import MIGRATIONS, migration

__all__ = [
    "CODECS", "DEFAULT_LIMITS", "FORMAT_MAJOR", "FORMAT_MINOR", "MIGRATIONS", "PAGE", "Header",
    "ImageReader", "ImageWriter", "Limits", "Record", "migration",
]
