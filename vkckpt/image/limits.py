"""Bounds a checkpoint image reader enforces before it allocates anything.

Every length in an image is untrusted: a record frame, a msgpack string/bin/array/map
header, a page chunk's declared size.  The reader checks each one against these limits
(and against the bytes actually left in the file) before reading or allocating.  The
writer enforces the same limits so it never produces an image its own reader refuses.
"""

from __future__ import annotations

from vkckpt.record import Value

MIB = 1 << 20

MAX_RECORD = 64 * MIB        # bytes of one framed msgpack record
MAX_STR = 1 * MIB            # bytes of one msgpack str
MAX_BIN = 2 * MIB            # bytes of one msgpack bin (a page chunk is at most 1 MiB)
MAX_ARRAY = 1_000_000        # elements of one msgpack array
MAX_MAP = 100_000            # entries of one msgpack map
MAX_RECORDS = 10_000_000     # records in one image
MAX_DEPTH = 32               # container nesting, the record's own array being depth 1


class Limits(Value):
    """Upper bounds on what one image may contain."""

    __slots__ = ("max_record", "max_str", "max_bin", "max_array", "max_map", "max_records",
                 "max_depth")

    def __init__(self, max_record: int = MAX_RECORD, max_str: int = MAX_STR,
                 max_bin: int = MAX_BIN, max_array: int = MAX_ARRAY, max_map: int = MAX_MAP,
                 max_records: int = MAX_RECORDS, max_depth: int = MAX_DEPTH) -> None:
        self.max_record = max_record
        self.max_str = max_str
        self.max_bin = max_bin
        self.max_array = max_array
        self.max_map = max_map
        self.max_records = max_records
        self.max_depth = max_depth


DEFAULT_LIMITS = Limits()
