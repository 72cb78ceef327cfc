"""Start writing a file's dirty page cache to disk early (Linux sync_file_range(2)).

A writer that asks for the pages it has finished with to go to disk while it produces the
rest overlaps the disk's work with its own, so the fsync at the end has only the tail left.
This is a hint for speed only: it makes nothing durable (fsync still does), and where the
call is missing or fails, writing and fsync behave exactly as without it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_SYNC_FILE_RANGE_WRITE = 2  # start writeback of dirty pages; do not wait for it
_call: Callable[[int, int, int, int], int] | None = None
_tried = False


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    global _call, _tried
    if not _tried:
        _tried = True
        try:
            import ctypes  # late: thawing never writes an image

            fn = ctypes.CDLL(None, use_errno=True).sync_file_range
            fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _call = fn
        except (OSError, AttributeError):
            _call = None
    return _call


def start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Ask the host to start writing [offset, offset+nbytes) of fd to disk, without waiting
    (a no-op where the host cannot)."""
    fn = _sync_file_range()
    if fn is not None and nbytes > 0:
        fn(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)  # a failure only loses the overlap
