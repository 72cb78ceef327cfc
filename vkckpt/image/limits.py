"""Bounds a checkpoint image reader enforces before it allocates anything.

Every length in an image is untrusted: a record frame, a msgpack string/bin/array/map
header, a page chunk's declared size.  The reader checks each one against these limits
(and against the bytes actually left in the file) before reading or allocating, and counts
the objects a record would decode to before decoding it (one byte of msgpack can become a
64-byte Python list), so memory stays bounded whatever the bytes say.  The
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
MAX_OBJECTS = 1_000_000      # decoded objects (scalars and containers) in one record
MAX_PASS_OBJECTS = 3_000_000  # decoded objects of counted records in one pass over an image
#: Records up to SCAN_ABOVE bytes are decoded without counting their objects (their length
#: bounds how many they hold: at most a byte each) until SCAN_FREE bytes of such records
#: were decoded in one pass; every other record is counted first.
SCAN_ABOVE = 64 << 10
SCAN_FREE = 1 * MIB
#: The largest memory limit per process an image may record (and so the most a thawed
#: process may map): more than any real run uses, far below what page tables could pay for.
MAX_GUEST_MEMORY = 256 << 30
#: The most bytes the open unlinked (ghost) files of one image may hold in all.
MAX_GHOST_BYTES = 1 << 30


class Limits(Value):
    """Upper bounds on what one image may contain."""

    __slots__ = ("max_record", "max_str", "max_bin", "max_array", "max_map", "max_records",
                 "max_depth", "max_objects", "max_pass_objects")

    def __init__(self, max_record: int = MAX_RECORD, max_str: int = MAX_STR,
                 max_bin: int = MAX_BIN, max_array: int = MAX_ARRAY, max_map: int = MAX_MAP,
                 max_records: int = MAX_RECORDS, max_depth: int = MAX_DEPTH,
                 max_objects: int = MAX_OBJECTS,
                 max_pass_objects: int = MAX_PASS_OBJECTS) -> None:
        self.max_record = max_record
        self.max_str = max_str
        self.max_bin = max_bin
        self.max_array = max_array
        self.max_map = max_map
        self.max_records = max_records
        self.max_depth = max_depth
        self.max_objects = max_objects
        self.max_pass_objects = max_pass_objects


DEFAULT_LIMITS = Limits()
