"""Reading an image: ImageReader checks the header and trailer on open, then streams the
records, checking framing and bounds as it goes (page loading: reader_pages.py).

Nothing read from an image is trusted: every length is checked against `Limits` and the
bytes left in the file before anything is read or allocated, each record's objects and
nesting are counted before it is decoded, and every failure -- bad magic, truncation,
corruption, unsupported versions -- surfaces as an ImageError.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterator, Mapping

import msgpack

from vkckpt.abi.mman import PAGE
from vkckpt.errors import ImageError
from vkckpt.host.lazypages import scan_frames
from vkckpt.image import migrate
from vkckpt.image.codecs import _DECODE_ERRORS
from vkckpt.image.frames import (
    _PAGES_PREFIX,
    PAGES,
    PAGES_VERSION,
    ImageRecord,
    PageChunk,
    _count_objects,
    _depth_exceeds,
    _peek,
)
from vkckpt.image.header import (
    _U32,
    HEADER_SIZE,
    ID_LEN,
    TRAILER_SIZE,
    Header,
    image_digest,
    one_pass,
    parse_header,
    parse_trailer,
)
from vkckpt.image.limits import DEFAULT_LIMITS, SCAN_ABOVE, SCAN_FREE, Limits
from vkckpt.image.reader_pages import _PageReading
from vkckpt.image.seal import SEAL, seal_matches

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Record bytes above which check_digests(parallel=True) hashes the image id on a second thread.
_PARALLEL_HASH = 4 << 20
#: Frames whose heads (and first bytes) a reader keeps after its first walk (see _frame_heads).
_CACHE_FRAMES = 1 << 16
#: Bytes read at each frame: the previous payload's last 16 (a page record's tail), the
#: length prefix, and the first 300 bytes of the payload (enough to classify it).
_BEFORE, _AFTER = 16, 300


class ImageReader(_PageReading):
    """Validate an image's header and trailer on open; stream and check its records."""

    def __init__(self, path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS) -> None:
        self.path = os.fspath(path)
        self.limits = limits
        self._fd = -1
        self._dctx: Any = None
        self._heads: list[tuple[int, int, int]] | None = None  # every frame, once walked
        self._windows: dict[int, tuple[int, bytes]] = {}  # frame offset -> (start, bytes)
        self._chunks: dict[int, PageChunk | None] | None = None  # "pages" frames, by offset
        self._start_pass()
        try:
            # O_NONBLOCK: opening a FIFO must not hang; it is refused just below.
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise ImageError(f"cannot open checkpoint image {self.path}: {e.strerror}") from e
        self._fd = fd
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise self._err("is not a regular file")
            self.size = st.st_size
            self._header_raw, self.header = self._read_header()
            self._trailer_count, self._trailer_hash = self._read_trailer()
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        """The open image's descriptor (lazy thaw reads page chunks through a duplicate)."""
        if self._fd < 0:
            raise self._err("has been closed")
        return self._fd

    def close(self) -> None:
        """Close the file.  Idempotent."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ImageReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # never raise from a finalizer
            pass

    # -- low level ---------------------------------------------------------------------

    def _err(self, problem: str) -> ImageError:
        return ImageError(f"checkpoint image {self.path} {problem}")

    def _pread(self, off: int, n: int) -> bytes:
        if self._fd < 0:
            raise self._err("has been closed")
        try:
            data = os.pread(self._fd, n, off)
        except OSError as e:
            raise self._err(f"could not be read at offset {off}: {e.strerror}") from e
        if len(data) != n:
            raise self._err(f"is truncated at offset {off + len(data)} (was it being modified?)")
        return data

    def _read_header(self) -> tuple[bytes, Header]:
        head = self._pread(0, min(self.size, HEADER_SIZE))
        return head, parse_header(head, self.size, self._err)

    def _read_trailer(self) -> tuple[int, bytes]:
        if self.size < HEADER_SIZE + TRAILER_SIZE:
            raise self._err(f"is truncated ({self.size} bytes, no room for its trailer)")
        raw = self._pread(self.size - TRAILER_SIZE, TRAILER_SIZE)
        return parse_trailer(raw, self.size, self.limits, self._err)

    def check_digests(self, key: bytes | None = None, *, parallel: bool = False) -> None:
        """Check the trailer's image digest and the image id against the bytes, in one pass;
        with key, also that the image ends with a seal made with that key.

        Cheaper than verify() (no decoding): thaw runs it beside loading so a flipped bit
        in a structural record can never be thawed. Releases the GIL while hashing.  A
        format 1.0 image needs a second SHA-256 over the same bytes (header included); with
        parallel (a caller that already imported threading), a large one's id digest is
        computed on a second thread, reading the file on its own."""
        body = hashlib.sha256()
        whole = None if one_pass(self.header) else hashlib.sha256(self._header_raw)
        end = self.size - TRAILER_SIZE
        seal_at, count = (self._last_frame() if key is not None else (end, 0))
        sealed = hashlib.sha256() if key is not None else None  # a third pass only if asked
        helper = self._hash_aside(body, end) if (
            whole is not None and parallel and end > _PARALLEL_HASH) else None
        for off, chunk in self._record_chunks(end):
            if whole is not None:
                whole.update(chunk)
            if helper is None:
                body.update(chunk)
            if sealed is not None and off < seal_at:
                sealed.update(memoryview(chunk)[:seal_at - off])
        if helper is not None:
            helper()
        if self._digest(whole, body) != self._trailer_hash:
            raise self._err("is corrupted (SHA-256 of its contents does not match its trailer)")
        if body.digest()[:16] != self.header.image_id:
            raise self._err("is corrupted (its records do not match its image id)")
        if key is not None:
            self._check_seal(key, seal_at, count, sealed.digest())

    def _digest(self, whole: Any, body: Any) -> bytes:
        """The image digest the trailer must hold: `whole` (the 1.0 hash of every byte
        before the trailer) or, from format 1.1, image_digest of the header and `body`."""
        return whole.digest() if whole is not None else image_digest(self._header_raw,
                                                                     body.digest())

    def _record_chunks(self, end: int) -> Iterator[tuple[int, bytes]]:
        """(offset, bytes) of the records (HEADER_SIZE..end), read in 8 MiB chunks."""
        off = HEADER_SIZE
        while off < end:
            chunk = self._pread(off, min(8 << 20, end - off))
            yield off, chunk
            off += len(chunk)

    def _hash_aside(self, h: Any, end: int) -> Callable[[], None]:
        """Hash the records (HEADER_SIZE..end) into h on a helper thread; the returned
        function joins it and raises its ImageError."""
        import threading

        failed: list[ImageError] = []

        def run() -> None:
            try:
                for _, chunk in self._record_chunks(end):
                    h.update(chunk)
            except ImageError as exc:
                failed.append(exc)

        t = threading.Thread(target=run, name="vkckpt-image-id", daemon=True)
        t.start()

        def join() -> None:
            t.join()
            if failed:
                raise failed[0]
        return join

    def _last_frame(self) -> tuple[int, int]:
        """(offset, index) of the last record frame."""
        last = (self.size - TRAILER_SIZE, 0)
        for index, off, _ in self._frame_heads():
            last = (off, index)
        return last

    def _check_seal(self, key: bytes, off: int, count: int, digest: bytes) -> None:
        """The record at off must be a seal of the records before it under key."""
        end = self.size - TRAILER_SIZE
        rec = None
        if off < end:
            head = _peek(self._pread(off + _U32.size, min(end - off - _U32.size, 300)))
            if head is not None and head[0] == SEAL:
                rec = self._decode(self._pread(off + _U32.size, end - off - _U32.size),
                                   count, off)
        if rec is None:
            raise self._err("is not sealed (it was written without --key, or forged); "
                            "thaw it without --key only if you trust who wrote it")
        if not seal_matches(rec.fields, key, self.header, count, digest):
            raise self._err("has a seal that does not match the key (forged, or sealed with "
                            "another key)")

    def _frames(self, hashers: tuple[Any, ...] = ()) -> Iterator[tuple[int, int, bytes]]:
        """Yield (index, offset, payload) of every record frame, checking every length."""
        for index, off, n in self._frame_heads():
            payload = self._pread(off + _U32.size, n)
            for h in hashers:
                h.update(_U32.pack(n))
                h.update(payload)
            yield index, off, payload

    def _frame_heads(self) -> Iterator[tuple[int, int, int]]:
        """Yield (index, offset, payload length) of every record frame, checking every length;
        the payload itself is not read.

        One read per frame, whose bytes `_bytes_at` serves again; after a complete walk the
        frames are remembered, so later passes see the same framing and read nothing."""
        if self._heads is None:
            self._scan_fast()
        if self._heads is not None:
            yield from self._heads
            return
        lim = self.limits
        off, end, index = HEADER_SIZE, self.size - TRAILER_SIZE, 0
        heads: list[tuple[int, int, int]] = []
        while off < end:
            if end - off < _U32.size:
                raise self._err(f"is corrupted: {end - off} stray bytes at offset {off}")
            prefix = self._frame_window(off)
            (n,) = _U32.unpack(prefix)
            if n == 0 or n > lim.max_record:
                raise self._err(
                    f"is corrupted: record {index} at offset {off} claims {n} bytes "
                    f"(the limit is {lim.max_record})"
                )
            if n > end - off - _U32.size:
                raise self._err(
                    f"is truncated or corrupted: record {index} at offset {off} claims {n} "
                    f"bytes but only {end - off - _U32.size} remain"
                )
            if index >= lim.max_records:
                raise self._err(f"holds more than {lim.max_records} records")
            if index < _CACHE_FRAMES:
                heads.append((index, off, n))
            yield index, off, n
            off += _U32.size + n
            index += 1
        if index != self._trailer_count:
            raise self._err(
                f"holds {index} records but its trailer says {self._trailer_count} "
                "(truncated or corrupted)"
            )
        if index <= _CACHE_FRAMES:
            self._heads = heads

    def _scan_fast(self) -> None:
        """Walk the frames in C (host/lazypages) where it can: sets _heads and _chunks."""
        lim = self.limits
        got = scan_frames(self._fd, HEADER_SIZE, self.size - TRAILER_SIZE, lim.max_record,
                          min(lim.max_records, _CACHE_FRAMES), lim.max_bin, _PAGES_PREFIX)
        if got is None or len(got) != self._trailer_count:
            return  # the Python walk says what is wrong
        self._chunks = {
            f[0]: None if f[2] == 2 else PageChunk(i, f[0], f[1], *f[3:]) for i, f in
            enumerate(got) if f[2]}
        self._heads = [(i, f[0], f[1]) for i, f in enumerate(got)]

    def _frame_window(self, off: int) -> bytes:
        """Read around the frame at off (kept for _bytes_at); returns its length prefix."""
        start = max(HEADER_SIZE, off - _BEFORE)
        want = min(off + _U32.size + _AFTER, self.size) - start
        if len(self._windows) >= _CACHE_FRAMES and off not in self._windows:
            return self._pread(off, _U32.size)
        got = self._windows.get(off)
        if got is None or got[0] != start or len(got[1]) != want:
            got = self._windows[off] = (start, self._pread(start, want))
        return got[1][off - start: off - start + _U32.size]

    def _bytes_at(self, frame: int, pos: int, n: int) -> bytes:
        """n bytes at pos, from what was read around the frame at offset `frame` if they lie
        there, else read now."""
        got = self._windows.get(frame)
        if got is not None and got[0] <= pos and pos + n <= got[0] + len(got[1]):
            return got[1][pos - got[0]: pos - got[0] + n]
        return self._pread(pos, n)

    def _start_pass(self) -> None:
        """Reset the objects counted by _decode (at the start of each pass over the records)."""
        self._pass_objects = 0
        self._unscanned = 0

    def _count(self, data: bytes, what: str) -> None:
        """Refuse a payload that would decode to too many objects or nest too deep, before
        decoding it.  Small records are not counted (each object takes at least a byte)
        until SCAN_FREE bytes of them were decoded in this pass; the others are."""
        lim, n = self.limits, len(data)
        if n <= SCAN_ABOVE and self._unscanned + n <= SCAN_FREE:
            self._unscanned += n
            return
        count = _count_objects(data, lim.max_objects, lim.max_depth)
        if count == "depth":
            raise self._err(f"is corrupted: {what} nests deeper than {lim.max_depth} levels")
        if count == "objects":
            raise self._err(f"is corrupted: {what} holds more than {lim.max_objects} objects")
        self._pass_objects += int(count)
        if self._pass_objects > lim.max_pass_objects:
            raise self._err(f"is too large to read: its records hold more than "
                            f"{lim.max_pass_objects} objects")

    def _skippable(self, off: int, n: int, index: int, table: Mapping[str, int]) -> bool:
        """Whether the record at off is optional and unknown (or too new) to table, found from
        its first bytes without reading or decoding the rest (critical ones are decoded, so
        a corrupted one is reported as such, then refused)."""
        head = _peek(self._bytes_at(off, off + _U32.size, min(n, 300)))
        if head is None or head[2]:
            return False  # the full decode explains what is wrong
        want = table.get(head[0])
        return want is None or head[1] > want

    def _decode(self, data: bytes, index: int, off: int) -> ImageRecord:
        """Unpack one record payload under the limits and check its shape."""
        lim, n = self.limits, len(data)
        what = f"record {index} at offset {off}"
        self._count(data, what)
        try:
            obj = msgpack.unpackb(
                data, raw=False, strict_map_key=True, use_list=True, max_ext_len=0,
                max_str_len=min(lim.max_str, n), max_bin_len=min(lim.max_bin, n),
                max_array_len=min(lim.max_array, n), max_map_len=min(lim.max_map, n // 2),
            )
        except _DECODE_ERRORS as e:
            problem = str(e) or type(e).__name__
            raise self._err(f"is corrupted: {what} is not valid msgpack ({problem})") from None
        if isinstance(obj, (list, dict)) and _depth_exceeds(obj, lim.max_depth):
            raise self._err(f"is corrupted: {what} nests deeper than {lim.max_depth} levels")
        if not isinstance(obj, list) or len(obj) != 4:
            raise self._err(f"is corrupted: {what} is not a [type, version, critical, fields] list")
        rtype, version, critical, fields = obj
        if not isinstance(rtype, str) or not rtype:
            raise self._err(f"is corrupted: {what} has no valid type")
        if type(version) is not int or version < 1:
            raise self._err(f"is corrupted: {what} ({rtype!r}) has an invalid version")
        if type(critical) is not bool:
            raise self._err(f"is corrupted: {what} ({rtype!r}) has an invalid critical flag")
        if not isinstance(fields, dict) or not all(isinstance(k, str) for k in fields):
            raise self._err(f"is corrupted: {what} ({rtype!r}) has invalid fields")
        return ImageRecord(rtype, version, critical, fields)

    # -- public --------------------------------------------------------------------------

    def records(self, known: Mapping[str, int] | None = None, *,
                skip_pages: bool = False) -> Iterator[ImageRecord]:
        """Yield records, checking framing and bounds as it streams.

        With `known` (record type -> newest version this caller understands; "pages" is
        implied) unknown or too-new records are skipped when optional (without being read
        or decoded) and refused when critical, and older versions are upgraded through
        `migrate.MIGRATIONS`.  Without it every record is yielded as stored.
        skip_pages=True passes over "pages" records written the way ImageWriter writes them
        without reading their data.
        """
        table = None if known is None else {PAGES: PAGES_VERSION, **known}
        self._start_pass()
        for index, off, n in self._frame_heads():
            if skip_pages and self._is_page_frame(off, n):
                continue
            if table is not None and self._skippable(off, n, index, table):
                continue
            rec = self._filter(self._decode(self._pread(off + _U32.size, n), index, off), table)
            if rec is not None:
                yield rec

    def _filter(self, rec: ImageRecord, table: Mapping[str, int] | None) -> ImageRecord | None:
        """Apply the known-types table to rec (see records()): None means skip it."""
        if table is None:
            return rec
        want = table.get(rec.type)
        if want is None:
            if rec.critical:
                raise self._err(
                    f"cannot be read: record type {rec.type!r} is critical and unknown "
                    "to this vkckpt; upgrade"
                )
            return None
        if rec.version > want:
            if rec.critical:
                raise self._err(
                    f"cannot be read: record type {rec.type!r} is at version "
                    f"{rec.version}, newer than the {want} this vkckpt supports; upgrade"
                )
            return None
        if rec.version < want:
            try:
                fields = migrate.upgrade(rec.type, rec.version, rec.fields, want)
            except migrate.MigrationError as e:
                if not rec.critical:
                    return None
                raise self._err(f"cannot be read: {e}") from e
            rec = ImageRecord(rec.type, want, rec.critical, fields)
        return rec

    def verify(self, known: Mapping[str, int] | None = None) -> dict:
        """Check every frame, page CRC, the record count, SHA-256 and image id; return stats.

        With `known` (as for records()) optional records of other types are counted, not
        decoded."""
        body_hash = hashlib.sha256()
        file_hash = None if one_pass(self.header) else hashlib.sha256(self._header_raw)
        types: Counter[str] = Counter()
        records = pages = chunks = 0
        table = None if known is None else {PAGES: PAGES_VERSION, **known}
        self._start_pass()
        hashers = (body_hash,) if file_hash is None else (body_hash, file_hash)
        for index, off, data in self._frames(hashers):
            head = _peek(data[:300]) if table is not None else None
            if head is not None and self._skippable(off, len(data), index, table):
                records += 1
                types[head[0]] += 1
                continue
            rec = self._decode(data, index, off)
            records += 1
            types[rec.type] += 1
            if rec.type == PAGES:
                pages += len(self.pages(rec)) // PAGE
                chunks += 1
        if self._digest(file_hash, body_hash) != self._trailer_hash:
            raise self._err("is corrupted: its SHA-256 does not match its trailer")
        if body_hash.digest()[:ID_LEN] != self.header.image_id:
            raise self._err("is corrupted: its image id does not match its content")
        return {
            "records": records, "pages": pages, "chunks": chunks, "bytes": self.size,
            "types": dict(types),
        }
