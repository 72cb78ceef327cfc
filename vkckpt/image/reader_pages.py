"""ImageReader's page loading: "pages" records found from their first bytes, their data read
(and decompressed) straight into guest memory, or decoded and verified in full."""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Iterator, Mapping

from vkckpt.abi.mman import PAGE
from vkckpt.image.codecs import CODECS, _zstd
from vkckpt.image.frames import (
    _PAGE_HEAD_MAX,
    _PAGES_PREFIX,
    MAX_CHUNK_PAGES,
    PAGES,
    PAGES_VERSION,
    ImageRecord,
    PageChunk,
    _read_bin_len,
    _read_uint,
)
from vkckpt.image.header import _U32

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from vkckpt.errors import ImageError
    from vkckpt.image.limits import Limits


def _uint_size(v: int) -> int:
    """Bytes of msgpack's shortest encoding of the unsigned integer v."""
    return 1 if v < 0x80 else 2 if v < 0x100 else 3 if v < 0x10000 else 5 if v < 1 << 32 else 9


class _PageReading:
    """The page-loading half of ImageReader (mixed into it): uses the reader's file, limits,
    decompressor and record stream."""

    if TYPE_CHECKING:
        _fd: int
        _dctx: Any
        _chunks: dict[int, PageChunk | None] | None
        limits: Limits

        def _err(self, problem: str) -> ImageError: ...
        def _pread(self, off: int, n: int) -> bytes: ...
        def _bytes_at(self, frame: int, pos: int, n: int) -> bytes: ...
        def _start_pass(self) -> None: ...
        def _frame_heads(self) -> Iterator[tuple[int, int, int]]: ...
        def _skippable(self, off: int, n: int, index: int, table: Mapping[str, int]) -> bool: ...
        def _decode(self, data: bytes, index: int, off: int) -> ImageRecord: ...
        def _filter(self, rec: ImageRecord, table: Mapping[str, int] | None
                    ) -> ImageRecord | None: ...

    def records_and_pages(self, known: Mapping[str, int]) -> Iterator[ImageRecord | PageChunk]:
        """records(known), except that "pages" records written the way ImageWriter writes
        them come as PageChunks, whose data `load_pages` reads straight into place."""
        table = {PAGES: PAGES_VERSION, **known}
        self._start_pass()
        for index, off, n in self._frame_heads():
            if self._is_page_frame(off, n):
                chunk = self._page_chunk(index, off, n)
                if chunk is not None:
                    yield chunk
                    continue
            if self._skippable(off, n, index, table):
                continue
            rec = self._filter(self._decode(self._pread(off + _U32.size, n), index, off), table)
            if rec is not None:
                yield rec

    def _is_page_frame(self, off: int, n: int) -> bool:
        """True when the payload starts as [PAGES, 1, True, {6 fields}] does."""
        if self._chunks is not None:
            return off in self._chunks
        return n > len(_PAGES_PREFIX) and \
            self._bytes_at(off, off + _U32.size, len(_PAGES_PREFIX)) == _PAGES_PREFIX

    def _page_chunk(self, index: int, off: int, n: int) -> PageChunk | None:
        """Parse a "pages" record's head and tail without its data; None unless the record is
        byte for byte what ImageWriter.add_pages writes (then the generic decoder decides)."""
        if self._chunks is not None:
            return self._chunks.get(off)
        head = self._bytes_at(off, off + _U32.size, min(n, _PAGE_HEAD_MAX))
        pos = len(_PAGES_PREFIX)
        vals = []
        for key in (b"\xa3buf", b"\xa5codec", b"\xa5count", b"\xa3crc"):
            if head[pos:pos + len(key)] != key:
                return None
            pos += len(key)
            v, end = _read_uint(head, pos)
            if v is None or end - pos != _uint_size(v):  # packb writes the shortest form
                return None
            pos = end
            vals.append(v)
        if head[pos:pos + 5] != b"\xa4data":
            return None
        nbytes, end = _read_bin_len(head, pos + 5)
        if nbytes is None or nbytes > self.limits.max_bin or \
                end - pos - 5 != (2 if nbytes < 0x100 else 3 if nbytes < 0x10000 else 5):
            return None
        pos = end
        tail_len = n - pos - nbytes
        if not 7 <= tail_len <= 15:
            return None
        tail = self._bytes_at(off + _U32.size + n, off + _U32.size + pos + nbytes, tail_len)
        first, end = _read_uint(tail, 6) if tail[:6] == b"\xa5first" else (None, 0)
        if first is None or end != tail_len or end - 6 != _uint_size(first):
            return None
        buf, codec, count, crc = vals
        return PageChunk(index, off, n, buf, first, count, codec, crc,
                         off + _U32.size + pos, nbytes)

    def chunk_record(self, chunk: PageChunk) -> ImageRecord:
        """The PageChunk's record, read and decoded in full (as records() yields it)."""
        return self._decode(self._pread(chunk.off + _U32.size, chunk.n), chunk.index, chunk.off)

    def load_pages(self, chunk: PageChunk, dest: memoryview) -> None:
        """Read, decompress and verify a PageChunk's pages into dest (count * PAGE bytes).

        Checks and errors are those of pages(); dest may hold garbage when it raises."""
        size = chunk.count * PAGE
        ok = 1 <= chunk.count <= MAX_CHUNK_PAGES and len(dest) == size
        if ok and chunk.codec == CODECS["none"] and chunk.nbytes == size:
            try:
                got = os.preadv(self._fd, [dest], chunk.data_off)
            except OSError as e:
                raise self._err(f"could not be read at offset {chunk.data_off}: "
                                f"{e.strerror}") from e
            ok = got == size
        elif ok and chunk.codec == CODECS["zstd"]:
            ok = self._unzstd_into(self._pread(chunk.data_off, chunk.nbytes), dest)
        else:
            ok = False
        if ok and zlib.crc32(dest) == chunk.crc:
            return
        # something is wrong: let the generic path find it and say what
        data = self.pages(self.chunk_record(chunk))
        if len(data) != len(dest):
            raise self._err(f"is corrupted: a pages record holds {len(data)} bytes, "
                            f"not {len(dest)}")
        dest[:] = data

    def _unzstd_into(self, data: bytes, dest: memoryview) -> bool:
        """Decompress exactly len(dest) bytes into dest; False on any mismatch or error."""
        zstd = _zstd()
        if self._dctx is None:
            self._dctx = zstd.ZstdDecompressor()
        try:
            reader = self._dctx.stream_reader(io.BytesIO(data), read_across_frames=False)
            got = 0
            while got < len(dest):
                n = reader.readinto(dest[got:])
                if not n:
                    return False
                got += n
            return not reader.read(1)
        except (zstd.ZstdError, ValueError, OSError, MemoryError):
            return False

    def pages(self, rec: ImageRecord) -> bytes:
        """Return the verified, decompressed bytes of a "pages" record."""
        if rec.type != PAGES or rec.version != PAGES_VERSION:
            raise self._err(f"has no page data in a {rec.type!r} v{rec.version} record")
        f = rec.fields
        ints = {k: f.get(k) for k in ("buf", "first", "count", "codec", "crc")}
        bad = [k for k, v in ints.items() if type(v) is not int or v < 0]
        data = f.get("data")
        if bad or not isinstance(data, bytes):
            raise self._err(f"is corrupted: a pages record has invalid fields {bad or ['data']}")
        buf, first, count, codec, crc = ints.values()
        what = f"pages {first}..{first + count - 1} of buffer {buf}"
        if not 1 <= count <= MAX_CHUNK_PAGES:
            raise self._err(f"is corrupted: a pages record claims {count} pages")
        size = count * PAGE
        if codec == CODECS["none"]:
            out = data
        elif codec == CODECS["zstd"]:
            out = self._unzstd(data, size, what)
        else:
            raise self._err(f"uses page codec {codec} for {what}, unknown to this vkckpt")
        if len(out) != size:
            raise self._err(f"is corrupted: {what} hold {len(out)} bytes instead of {size}")
        if zlib.crc32(out) != crc:
            raise self._err(f"is corrupted: {what} fail their CRC check")
        return out

    def _unzstd(self, data: bytes, size: int, what: str) -> bytes:
        """Decompress at most size + 1 bytes, whatever the frame claims."""
        zstd = _zstd()
        if self._dctx is None:
            self._dctx = zstd.ZstdDecompressor()
        parts, total = [], 0
        try:
            reader = self._dctx.stream_reader(io.BytesIO(data), read_across_frames=False)
            while total <= size:
                part = reader.read(size + 1 - total)
                if not part:
                    break
                parts.append(part)
                total += len(part)
        except (zstd.ZstdError, ValueError, OSError, MemoryError) as e:
            raise self._err(f"is corrupted: {what} do not decompress ({e})") from None
        return b"".join(parts)
