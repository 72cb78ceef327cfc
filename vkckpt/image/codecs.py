"""The encodings inside records: page codecs (zstd, loaded on first use) and the canonical
msgpack form of record fields (maps key-sorted, tuples as lists, the reader's limits enforced
on the way in), plus what the msgpack decoder raises on malformed input."""

from __future__ import annotations

import struct
from types import ModuleType

import msgpack

from vkckpt.errors import ImageError
from vkckpt.image.limits import Limits

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Page codecs by name, as stored in the header's flags and in each "pages" record.
CODECS = {"none": 0, "zstd": 1}
CODEC_NAMES = {v: k for k, v in CODECS.items()}
ZSTD_LEVEL = 1

# Everything msgpack, struct, codecs and str decoding raise on malformed input.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, TypeError, UnicodeDecodeError, struct.error, OverflowError, KeyError,
    IndexError, msgpack.UnpackException,
)


def _zstd() -> ModuleType:
    """Import zstandard on first use (only zstd images need it)."""
    try:
        import zstandard
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImageError("zstd-compressed checkpoint images need the 'zstandard' package") from e
    return zstandard


class _EncodeError(Exception):
    """A value a record cannot hold; `where` collects the path to it on the way out."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.where: list[str] = []


def _canon(obj: Any, depth: int, lim: Limits) -> Any:
    """Return `obj` with maps key-sorted and tuples as lists, enforcing the reader's limits."""
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    if isinstance(obj, str):
        if len(obj) > lim.max_str or (
            4 * len(obj) > lim.max_str and len(obj.encode("utf-8", "surrogatepass")) > lim.max_str
        ):
            raise _EncodeError(f"a string is longer than the {lim.max_str} byte limit")
        return obj
    if isinstance(obj, (bytes, bytearray, memoryview)):
        if memoryview(obj).nbytes > lim.max_bin:
            raise _EncodeError(f"a bytes value is longer than the {lim.max_bin} byte limit")
        return obj
    if depth > lim.max_depth:
        raise _EncodeError(f"containers are nested deeper than {lim.max_depth} levels")
    if isinstance(obj, dict):
        if len(obj) > lim.max_map:
            raise _EncodeError(f"a map has more than {lim.max_map} entries")
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, bytes)):
                raise _EncodeError(f"map key {k!r} is a {type(k).__name__}, not a str")
            try:
                items.append((k, _canon(v, depth + 1, lim)))
            except _EncodeError as e:
                e.where.append(repr(k))
                raise
        items.sort(key=lambda kv: (isinstance(kv[0], bytes), kv[0]))
        return dict(items)
    if isinstance(obj, (list, tuple)):
        if len(obj) > lim.max_array:
            raise _EncodeError(f"an array has more than {lim.max_array} elements")
        out = []
        for i, v in enumerate(obj):
            try:
                out.append(_canon(v, depth + 1, lim))
            except _EncodeError as e:
                e.where.append(f"[{i}]")
                raise
        return out
    raise _EncodeError(f"a {type(obj).__name__} value cannot be stored in an image")
