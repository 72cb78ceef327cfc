"""The checkpoint image container: a header, a stream of framed msgpack records, a trailer.

Layout of format 1.0 (all integers little endian)::

    header   100 bytes  magic b"VKCKPT\\x89\\n", u16 major, u16 minor, u32 flags
                        (bit 0 incremental, bits 8-15 codec id), 16-byte vkernel id,
                        16-byte image id, 16-byte parent image id (zero = none),
                        32-byte NUL-padded ASCII producer, u32 CRC32 of the first 96 bytes
    records  repeated   u32 length L (<= limits.MAX_RECORD) + L bytes of msgpack encoding
                        [type: str, version: int, critical: bool, fields: map of str keys]
    trailer  48 bytes   magic b"VKCKEND\\n", u64 record count,
                        SHA-256 of every byte before the trailer

The image id is the first 16 bytes of the SHA-256 of the record stream, so identical
content gives identical ids and byte-identical files.  Maps are written with sorted keys
(use lists for ordered data); map keys must be str (bytes are allowed in nested maps).

Page data travels in "pages" records (critical, version 1) of at most 256 pages each:
{"buf", "first", "count", "codec", "crc" (CRC32 of the uncompressed bytes), "data"}.

An image written with a key ends with a "seal" record (optional, version 1, so older
readers skip it): {"alg": "hmac-sha256", "mac"}, the HMAC-SHA256 under the key of
`seal_input()` -- the header without its image id and CRC, the number of records before the
seal and the SHA-256 of their frames.  The trailer and image id then cover the seal too.

Nothing read from an image is trusted: every length is checked against `Limits` and the
bytes left in the file before anything is read or allocated, and every failure -- bad
magic, truncation, corruption, unsupported versions -- surfaces as an ImageError.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import io
import os
import stat
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType, TracebackType

import msgpack

from vkckpt.abi.mman import PAGE
from vkckpt.errors import ImageError
from vkckpt.fs import hostfs
from vkckpt.image import migrate
from vkckpt.image.limits import DEFAULT_LIMITS, SCAN_ABOVE, SCAN_FREE, Limits
from vkckpt.record import Comparable, Value
from vkckpt.version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORMAT_MAJOR = 1
FORMAT_MINOR = 0
CODECS = {"none": 0, "zstd": 1}
CODEC_NAMES = {v: k for k, v in CODECS.items()}

MAGIC = b"VKCKPT\x89\n"
TRAILER_MAGIC = b"VKCKEND\n"
_HEADER = struct.Struct("<8sHHI16s16s16s32s")
HEADER_SIZE = _HEADER.size + 4  # 100: the fields plus their CRC32
_TRAILER = struct.Struct("<8sQ32s")
TRAILER_SIZE = _TRAILER.size  # 48
_U32 = struct.Struct("<I")

FLAG_INCREMENTAL = 0x1
_CODEC_SHIFT = 8
_CODEC_MASK = 0xFF << _CODEC_SHIFT
_KNOWN_FLAGS = FLAG_INCREMENTAL | _CODEC_MASK

ID_LEN = 16
PRODUCER_LEN = 32
PAGES = "pages"
PAGES_VERSION = 1
MAX_CHUNK_PAGES = 256
ZSTD_LEVEL = 1
_IO_CHUNK = 1 << 20
_REREAD_CHUNK = 4 << 20
_NO_ID = bytes(ID_LEN)
#: add_pages calls with more chunks than this hash them on a helper thread (hashlib, zlib and
#: file writes release the GIL, so hashing overlaps CRCs and writes on another core).
_THREADED_CHUNKS = 2
#: Record bytes above which check_digests(parallel=True) hashes the image id on a second thread.
_PARALLEL_HASH = 4 << 20

# Everything msgpack, struct, codecs and str decoding raise on malformed input.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, TypeError, UnicodeDecodeError, struct.error, OverflowError, KeyError,
    IndexError, msgpack.UnpackException,
)


class Header(Value):
    """The fixed 100-byte header of an image."""

    __slots__ = ("major", "minor", "flags", "vkernel_id", "image_id", "parent_id", "producer")

    def __init__(self, major: int, minor: int, flags: int, vkernel_id: bytes, image_id: bytes,
                 parent_id: bytes | None, producer: str) -> None:
        self.major = major
        self.minor = minor
        self.flags = flags
        self.vkernel_id = vkernel_id
        self.image_id = image_id
        self.parent_id = parent_id
        self.producer = producer

    @property
    def incremental(self) -> bool:
        """True for an image holding only what changed since its parent."""
        return bool(self.flags & FLAG_INCREMENTAL)

    @property
    def codec_id(self) -> int:
        """The numeric codec the writer used by default for page chunks."""
        return (self.flags & _CODEC_MASK) >> _CODEC_SHIFT

    @property
    def codec(self) -> str:
        """The name of the writer's page codec ("none" or "zstd")."""
        return CODEC_NAMES.get(self.codec_id, f"codec-{self.codec_id}")

    def to_bytes(self) -> bytes:
        """Encode as the 100 on-disk bytes, CRC included."""
        fields = _HEADER.pack(
            MAGIC, self.major, self.minor, self.flags, self.vkernel_id, self.image_id,
            self.parent_id or _NO_ID, self.producer.encode("ascii"),
        )
        return fields + _U32.pack(zlib.crc32(fields))


class Record(Comparable):
    """One decoded record: its type, layout version, criticality and fields."""

    __slots__ = ("type", "version", "critical", "fields")

    def __init__(self, type: str, version: int, critical: bool, fields: dict) -> None:
        self.type = type
        self.version = version
        self.critical = critical
        self.fields = fields


def _zstd() -> ModuleType:
    """Import zstandard on first use (only zstd images need it)."""
    try:
        import zstandard
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImageError("zstd-compressed checkpoint images need the 'zstandard' package") from e
    return zstandard


def _default_producer() -> str:
    return f"vkckpt {__version__}"


def _fsync_dir(dir_fd: int) -> None:
    """Make a rename in directory `dir_fd` durable (no-op where directories cannot be synced)."""
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


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


def _depth_exceeds(obj: Any, limit: int) -> bool:
    """True if decoded `obj` nests lists/maps more than `limit` deep (iteratively)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return True
        for x in o.values() if isinstance(o, dict) else o:
            if isinstance(x, (list, dict)):
                stack.append((x, d + 1))
    return False


_ARRAY_HEADS = frozenset(range(0x90, 0xA0)) | {0xDC, 0xDD}
_MAP_HEADS = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}


def _count_objects(data: bytes, max_objects: int, max_depth: int) -> int | str:
    """The number of objects msgpack `data` decodes to, found without building them (arrays
    and maps by their headers, scalars skipped in C); "objects" or "depth" as soon as it
    holds more than max_objects or nests deeper than max_depth."""
    u = msgpack.Unpacker(None, raw=False, max_buffer_size=max(1, len(data)))
    u.feed(data)
    left = [1]  # items still to visit at each open level
    objects = 0
    try:
        while left:
            if not left[-1]:
                left.pop()
                continue
            left[-1] -= 1
            objects += 1
            if objects > max_objects:
                return "objects"
            head = data[u.tell()]
            if head in _ARRAY_HEADS:
                n = u.read_array_header()
            elif head in _MAP_HEADS:
                n = 2 * u.read_map_header()
            else:
                u.skip()
                continue
            if n:
                if len(left) >= max_depth:
                    return "depth"
                left.append(n)
    except (IndexError, *_DECODE_ERRORS):
        return objects  # malformed: the decoder says how
    return objects


def _peek(data: bytes) -> tuple[str, int, bool] | None:
    """(type, version, critical) of a record payload, decoding nothing else; None when the
    payload does not start like [str, int, bool, ...] (then the full decode says why)."""
    u = msgpack.Unpacker(None, raw=False, max_buffer_size=max(1, len(data)), max_str_len=256,
                         max_bin_len=0, max_array_len=0, max_map_len=0, max_ext_len=0)
    u.feed(data)
    try:
        if u.read_array_header() != 4:
            return None
        rtype, version, critical = u.unpack(), u.unpack(), u.unpack()
    except _DECODE_ERRORS:
        return None
    if not isinstance(rtype, str) or not rtype or type(version) is not int or version < 1 \
            or type(critical) is not bool:
        return None
    return rtype, version, critical


SEAL = "seal"
SEAL_ALG = "hmac-sha256"
_SEAL_HEAD = struct.Struct("<14sHHI16s16s32sQ")


def seal_input(header: Header, count: int, digest: bytes) -> bytes:
    """What a seal authenticates: header fields but the image id (which hashes the seal),
    the number of records before the seal and the SHA-256 of their frames."""
    return _SEAL_HEAD.pack(b"vkckpt-seal-1\n", header.major, header.minor, header.flags,
                           header.vkernel_id, header.parent_id or _NO_ID,
                           header.producer.encode("ascii"), count) + digest


def seal_mac(key: bytes, header: Header, count: int, digest: bytes) -> bytes:
    """The seal's MAC of those fields under key."""
    return hmac.new(key, seal_input(header, count, digest), "sha256").digest()


def _bin_header(n: int) -> bytes:
    """msgpack's header for a bin of n bytes (what packb writes with use_bin_type=True)."""
    if n < 0x100:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 0x10000:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


_pk = msgpack.packb
_PAGES_PREFIX = b"\x94" + _pk(PAGES) + _pk(PAGES_VERSION) + _pk(True) + b"\x86"


def page_record_parts(buf: int, codec: int, count: int, crc: int, nbytes: int,
                      first: int) -> tuple[bytes, bytes]:
    """The bytes before and after the page data of a "pages" record payload.

    head + data + tail is exactly msgpack.packb([PAGES, PAGES_VERSION, True, {"buf": buf,
    "codec": codec, "count": count, "crc": crc, "data": data, "first": first}]) (sorted keys),
    built without copying the data."""
    head = b"".join((_PAGES_PREFIX, _pk("buf"), _pk(buf), _pk("codec"), _pk(codec),
                     _pk("count"), _pk(count), _pk("crc"), _pk(crc), _pk("data"),
                     _bin_header(nbytes)))
    return head, _pk("first") + _pk(first)


_PAGE_HEAD_MAX = len(_PAGES_PREFIX) + 4 + 9 + 6 + 9 + 6 + 9 + 4 + 9 + 5 + 5  # 85


def _read_uint(b: bytes, pos: int) -> tuple[int | None, int]:
    """A msgpack unsigned integer at b[pos:] in its shortest encoding: (value, end)."""
    if pos >= len(b):
        return None, pos
    t = b[pos]
    if t < 0x80:
        return t, pos + 1
    width = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}.get(t)
    if width is None or pos + 1 + width > len(b):
        return None, pos
    return int.from_bytes(b[pos + 1:pos + 1 + width], "big"), pos + 1 + width


def _read_bin_len(b: bytes, pos: int) -> tuple[int | None, int]:
    width = {0xC4: 1, 0xC5: 2, 0xC6: 4}.get(b[pos]) if pos < len(b) else None
    if width is None or pos + 1 + width > len(b):
        return None, pos
    return int.from_bytes(b[pos + 1:pos + 1 + width], "big"), pos + 1 + width


class PageChunk(Value):
    """A "pages" record located but not read: where its data lies in the file."""

    __slots__ = ("index", "off", "n", "buf", "first", "count", "codec", "crc", "data_off",
                 "nbytes")

    def __init__(self, index: int, off: int, n: int, buf: int, first: int, count: int,
                 codec: int, crc: int, data_off: int, nbytes: int) -> None:
        self.index = index
        self.off = off
        self.n = n
        self.buf = buf
        self.first = first
        self.count = count
        self.codec = codec
        self.crc = crc
        self.data_off = data_off
        self.nbytes = nbytes


class _Hasher:
    """Feeds a hash on a helper thread, in order; `drain` waits until it has caught up."""

    def __init__(self, h: Any) -> None:
        import queue  # late, like threading: thawing never writes an image
        import threading

        self.h = h
        self.q: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="vkckpt-image-hash", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            parts = self.q.get()
            try:
                if parts is None:
                    return
                if self.error is None:
                    for p in parts:
                        self.h.update(p)
            except BaseException as e:  # surfaced by drain()
                self.error = e
            finally:
                self.q.task_done()

    def put(self, parts: tuple) -> None:
        self.q.put(parts)

    def drain(self) -> None:
        self.q.join()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.q.put(None)


class ImageWriter:
    """Stream records into a temp file beside `path`; `commit` atomically replaces `path`.

    The file is created in the directory `dir_fd` (a directory fd the caller took when it
    trusted the name; default: `path`'s directory as pinned by a hostfs.OutputPath, else
    opened now) under `path`'s final name: unnamed or under a hidden temporary name until
    commit, then renamed onto that name without following a symlink there
    (vkckpt.fs.hostfs.AtomicFile).
    Used as a context manager it aborts (removes the temp file, leaving `path` untouched)
    when the block raises, and commits when it ends normally without an explicit commit.
    Every failure, I/O errors included, is raised as an ImageError.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        vkernel_id: bytes,
        parent_id: bytes | None = None,
        incremental: bool = False,
        codec: str = "none",
        producer: str | None = None,
        fault_hook: Callable[[int], None] | None = None,
        dir_fd: int | None = None,
        key: bytes | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self._key = key  # seals the image (see seal_input) when given
        self.bytes_written = 0
        self._state = "new"
        where = f"checkpoint image {self.path}"
        if not isinstance(vkernel_id, (bytes, bytearray)) or len(vkernel_id) != ID_LEN:
            raise ImageError(f"{where}: the vkernel id must be {ID_LEN} bytes")
        if parent_id is not None and (
            not isinstance(parent_id, (bytes, bytearray)) or len(parent_id) != ID_LEN
            or parent_id == _NO_ID
        ):
            raise ImageError(f"{where}: the parent image id must be {ID_LEN} non-zero bytes")
        if incremental and parent_id is None:
            raise ImageError(f"{where}: an incremental image needs a parent image id")
        if codec not in CODECS:
            raise ImageError(f"{where}: unknown codec {codec!r} (choose from {sorted(CODECS)})")
        producer = _default_producer() if producer is None else producer
        if (not producer.isascii() or "\0" in producer
                or len(producer.encode("ascii")) > PRODUCER_LEN):
            raise ImageError(f"{where}: the producer must be at most 32 ASCII characters")
        self.vkernel_id = bytes(vkernel_id)
        self.parent_id = None if parent_id is None else bytes(parent_id)
        self.codec = codec
        self.producer = producer
        self._flags = (FLAG_INCREMENTAL if incremental else 0) | (CODECS[codec] << _CODEC_SHIFT)
        self._cctx = _zstd().ZstdCompressor(level=ZSTD_LEVEL) if codec == "zstd" else None
        self._lim = DEFAULT_LIMITS
        self._fault_hook = fault_hook
        self._count = 0
        self._body_hash = hashlib.sha256()
        self._dir = -1
        try:
            head, name = hostfs.split_output(self.path)
            if dir_fd is None:
                dir_fd = hostfs.pinned_dir(head)
            self._dir = os.dup(dir_fd) if dir_fd is not None else hostfs.open_dir(head)
            self._out = hostfs.AtomicFile(self._dir, name)
            self._f = os.fdopen(self._out.fd, "r+b", closefd=False)  # closed by commit/abort
        except OSError as e:
            if self._dir >= 0:
                os.close(self._dir)
            raise ImageError(f"cannot create checkpoint image {self.path}: {e.strerror}") from e
        self._state = "open"
        self._io(self._write, bytes(HEADER_SIZE))  # placeholder; commit writes the real one

    # -- context manager ---------------------------------------------------------------

    def __enter__(self) -> ImageWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif self._state == "open":
            self.commit()

    def __del__(self) -> None:
        if getattr(self, "_state", None) == "open":
            try:
                self.abort()
            except Exception:  # never raise from a finalizer
                pass

    # -- writing -----------------------------------------------------------------------

    def _err(self, problem: str) -> ImageError:
        return ImageError(f"cannot write checkpoint image {self.path}: {problem}")

    def _check_open(self) -> None:
        if self._state != "open":
            raise self._err(f"the writer is already {self._state}")

    def _write(self, data: bytes | memoryview) -> None:
        if self._fault_hook is not None:
            self._fault_hook(self.bytes_written)
        self._f.write(data)
        self.bytes_written += len(data)

    def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run an I/O step; on OSError abort and raise an ImageError naming the file."""
        try:
            return fn(*args)
        except OSError as e:
            self.abort()
            raise self._err(e.strerror or str(e)) from e

    def _emit(self, rtype: str, payload: bytes) -> None:
        n = len(payload)
        if n > self._lim.max_record:
            raise self._err(
                f"record {rtype!r} encodes to {n} bytes, over the {self._lim.max_record} "
                "byte limit; split it"
            )
        if self._count >= self._lim.max_records:
            raise self._err(f"more than {self._lim.max_records} records")
        frame = _U32.pack(n)
        self._body_hash.update(frame)
        self._body_hash.update(payload)
        self._count += 1
        self._io(self._write, frame)
        self._io(self._write, payload)

    def _emit_parts(self, parts: tuple, hasher: _Hasher | None) -> None:
        """Append one record whose payload is the concatenation of parts (no copy made)."""
        n = sum(len(p) for p in parts)
        if n > self._lim.max_record:
            raise self._err(f"a pages record encodes to {n} bytes, over the "
                            f"{self._lim.max_record} byte limit")
        if self._count >= self._lim.max_records:
            raise self._err(f"more than {self._lim.max_records} records")
        parts = (_U32.pack(n), *parts)
        if hasher is not None:
            hasher.put(parts)
        else:
            for p in parts:
                self._body_hash.update(p)
        self._count += 1
        for p in parts:
            self._io(self._write, p)

    def add(self, type: str, fields: dict, *, version: int = 1, critical: bool = True) -> None:
        """Append one record.  Fields must be msgpack-able (maps with str keys)."""
        self._check_open()
        if not isinstance(type, str) or not type:
            raise self._err(f"record type {type!r} is not a non-empty string")
        if builtin_type(version) is not int or version < 1:
            raise self._err(f"record {type!r} version {version!r} is not an integer >= 1")
        if builtin_type(critical) is not bool:
            raise self._err(f"record {type!r} critical flag {critical!r} is not a bool")
        if not isinstance(fields, dict) or not all(isinstance(k, str) for k in fields):
            raise self._err(f"record {type!r} fields must be a dict with str keys")
        try:
            body = [type, version, critical, _canon(fields, 2, self._lim)]
            payload = msgpack.packb(body, use_bin_type=True)
        except _EncodeError as e:
            where = "".join(reversed(e.where))
            raise self._err(f"record {type!r} field {where}: {e.problem}") from None
        except (TypeError, ValueError, OverflowError) as e:
            raise self._err(f"record {type!r} cannot be encoded: {e}") from e
        self._emit(type, payload)

    def add_pages(self, buf: int, first_page: int, data: bytes | bytearray | memoryview) -> None:
        """Append page data (length a multiple of PAGE) as "pages" records of <= 256 pages."""
        self._check_open()
        if builtin_type(buf) is not int or buf < 0:
            raise self._err(f"page buffer id {buf!r} is not an integer >= 0")
        if builtin_type(first_page) is not int or first_page < 0:
            raise self._err(f"first page {first_page!r} is not an integer >= 0")
        try:
            mv = memoryview(data).cast("B")
        except TypeError as e:
            raise self._err(f"page data is not a contiguous bytes-like object ({e})") from e
        if mv.nbytes % PAGE:
            raise self._err(f"page data is {mv.nbytes} bytes, not a multiple of {PAGE}")
        npages = mv.nbytes // PAGE
        hasher = None
        if npages > _THREADED_CHUNKS * MAX_CHUNK_PAGES:
            hasher = _Hasher(self._body_hash)
        try:
            for i in range(0, npages, MAX_CHUNK_PAGES):
                count = min(MAX_CHUNK_PAGES, npages - i)
                chunk = mv[i * PAGE:(i + count) * PAGE]
                codec, stored = 0, chunk
                if self._cctx is not None:
                    packed = self._cctx.compress(chunk)
                    if len(packed) < len(chunk):
                        codec, stored = CODECS["zstd"], packed
                # the record is msgpack [PAGES, PAGES_VERSION, True, {sorted fields}], as
                # packb would encode it, but the data is written and hashed where it lies
                head, tail = page_record_parts(buf, codec, count, zlib.crc32(chunk),
                                               len(stored), first_page + i)
                self._emit_parts((head, stored, tail), hasher)
        finally:
            if hasher is not None:
                hasher.close()
                hasher.drain()  # the caller's data must not be read after we return

    def commit(self) -> Header:
        """Write the trailer and header, fsync, rename onto `path`, fsync the directory."""
        header = self._seal()
        self._make_durable(header)
        return header

    def commit_background(self) -> tuple[Header, Callable[[], None]]:
        """commit() with its durable part on a helper thread: re-reading the file for its
        checksum, fsync, rename and directory fsync.  Returns the header at once and a wait
        function that blocks until the image is at `path`, raising the ImageError commit
        would have.  `path` is untouched until then; the caller may change whatever it
        gave the writer (every byte is already in the file)."""
        header = self._seal()
        join = _in_background("vkckpt-image-commit", self._make_durable, header)

        def wait() -> None:
            error = join()
            if error is not None:
                raise error
        return header, wait

    def _seal(self) -> Header:
        self._check_open()
        if self._key is not None:  # the last record: authenticates everything before it
            h = Header(FORMAT_MAJOR, FORMAT_MINOR, self._flags, self.vkernel_id, _NO_ID,
                       self.parent_id, self.producer)
            mac = seal_mac(self._key, h, self._count, self._body_hash.copy().digest())
            self.add(SEAL, {"alg": SEAL_ALG, "mac": mac}, critical=False)
        self._state = "committing"
        return Header(
            FORMAT_MAJOR, FORMAT_MINOR, self._flags, self.vkernel_id,
            self._body_hash.digest()[:ID_LEN], self.parent_id, self.producer,
        )

    def _make_durable(self, header: Header) -> None:
        self._io(self._finish, header.to_bytes())  # on failure _io aborts: no temp file left
        self._io(self._out.publish)
        self._state = "committed"
        try:
            _fsync_dir(self._dir)
        except OSError as e:
            raise self._err(f"renamed into place but could not sync its directory: {e}") from e
        finally:
            self._release()

    def _finish(self, head: bytes) -> None:
        f = self._f
        f.flush()
        fd = f.fileno()
        # The body goes to disk while it is read back and hashed (the first sync is most of
        # the fsync's work; the one at the end then only has the trailer and header to do).
        join_sync = None
        if self.bytes_written > _REREAD_CHUNK:
            join_sync = _in_background("vkckpt-image-sync", os.fdatasync, fd, daemon=True)
        sync_error = None
        try:
            file_hash = hashlib.sha256(head)
            buf = memoryview(bytearray(min(_REREAD_CHUNK, max(1, self.bytes_written))))
            off, remaining = HEADER_SIZE, self.bytes_written - HEADER_SIZE
            while remaining:
                n = os.preadv(fd, [buf[:min(len(buf), remaining)]], off)
                if not n:
                    raise OSError(errno.EIO, "the temp file shrank while being written")
                file_hash.update(buf[:n])
                remaining -= n
                off += n
        finally:
            if join_sync is not None:
                sync_error = join_sync()
        if sync_error is not None:
            raise sync_error
        f.seek(0, os.SEEK_END)
        self._write(_TRAILER.pack(TRAILER_MAGIC, self._count, file_hash.digest()))
        f.seek(0)
        if self._fault_hook is not None:
            self._fault_hook(self.bytes_written)
        f.write(head)
        f.flush()
        os.fsync(f.fileno())
        f.close()

    def abort(self) -> None:
        """Discard the temp file; `path` is untouched.  Idempotent."""
        if self._state not in ("open", "committing"):
            return
        self._state = "aborted"
        try:
            self._f.close()
        except OSError:
            pass
        try:
            self._out.discard()
        except OSError:
            pass
        self._release()

    def _release(self) -> None:
        """Close the file and the directory fd once committed or aborted."""
        self._out.close()
        fd, self._dir = self._dir, -1
        if fd >= 0:
            os.close(fd)


def _in_background(name: str, fn: Callable[..., object], *args: object,
                   daemon: bool = False) -> Callable[[], BaseException | None]:
    """Start fn(*args) on a helper thread; the returned join waits for it and gives back
    what it raised (None when it returned)."""
    import threading  # late: thawing never writes an image

    failed: list[BaseException] = []

    def run() -> None:
        try:
            fn(*args)
        except BaseException as e:  # handed to the joiner
            failed.append(e)

    thread = threading.Thread(target=run, name=name, daemon=daemon)
    thread.start()

    def join() -> BaseException | None:
        thread.join()
        return failed[0] if failed else None
    return join


builtin_type = type  # `type` is shadowed by the record-type parameter of ImageWriter.add


class ImageReader:
    """Validate an image's header and trailer on open; stream and check its records."""

    def __init__(self, path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS) -> None:
        self.path = os.fspath(path)
        self.limits = limits
        self._fd = -1
        self._dctx: Any = None
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
        if head[:len(MAGIC)] != MAGIC:
            if head and len(head) < len(MAGIC) and MAGIC.startswith(head):
                raise self._err(f"is truncated ({len(head)} bytes)")
            raise self._err("is not a vkckpt image (bad magic)")
        if len(head) >= 12:
            major, minor = struct.unpack_from("<HH", head, 8)
            if major > FORMAT_MAJOR:
                raise self._err(
                    f"was written by a newer vkckpt (format {major}.{minor}); "
                    f"this reader supports {FORMAT_MAJOR}.x"
                )
            if major != FORMAT_MAJOR:
                raise self._err(
                    f"has unsupported format {major}.{minor}; this reader supports {FORMAT_MAJOR}.x"
                )
        if len(head) < HEADER_SIZE:
            raise self._err(f"is truncated ({self.size} bytes, shorter than its header)")
        (crc,) = _U32.unpack_from(head, _HEADER.size)
        if zlib.crc32(head[:_HEADER.size]) != crc:
            raise self._err("has a corrupted header (CRC mismatch)")
        _, major, minor, flags, vk, image_id, parent, producer_raw = _HEADER.unpack_from(head)
        codec_id = (flags & _CODEC_MASK) >> _CODEC_SHIFT
        if codec_id not in CODEC_NAMES:
            raise self._err(f"uses page codec {codec_id}, unknown to this vkckpt; upgrade")
        if flags & ~_KNOWN_FLAGS and minor <= FORMAT_MINOR:
            raise self._err(f"has unknown header flags {flags & ~_KNOWN_FLAGS:#x}")
        producer_raw = producer_raw.rstrip(b"\0")
        if b"\0" in producer_raw or not producer_raw.isascii():
            raise self._err("has a malformed producer string in its header")
        parent_id = None if parent == _NO_ID else parent
        if flags & FLAG_INCREMENTAL and parent_id is None:
            raise self._err("is marked incremental but names no parent image")
        header = Header(major, minor, flags, vk, image_id, parent_id, producer_raw.decode("ascii"))
        return head, header

    def _read_trailer(self) -> tuple[int, bytes]:
        if self.size < HEADER_SIZE + TRAILER_SIZE:
            raise self._err(f"is truncated ({self.size} bytes, no room for its trailer)")
        magic, count, digest = _TRAILER.unpack(self._pread(self.size - TRAILER_SIZE, TRAILER_SIZE))
        if magic != TRAILER_MAGIC:
            raise self._err("is truncated or its trailer is damaged (no end marker)")
        body = self.size - HEADER_SIZE - TRAILER_SIZE
        if count > self.limits.max_records or count > body // 5:
            raise self._err(f"has a trailer claiming {count} records, impossible for its size")
        return count, digest

    def check_digests(self, key: bytes | None = None, *, parallel: bool = False) -> None:
        """Check the trailer's SHA-256 and the image id against the bytes, in one pass; with
        key, also that the image ends with a seal made with that key.

        Cheaper than verify() (no decoding): thaw runs it beside loading so a flipped bit
        in a structural record can never be thawed. Releases the GIL while hashing; with
        parallel (a caller that already imported threading), a large image's id digest is
        computed on a second thread, reading the file on its own."""
        whole, body = hashlib.sha256(), hashlib.sha256()
        end = self.size - TRAILER_SIZE
        seal_at, count = (self._last_frame() if key is not None else (end, 0))
        sealed = hashlib.sha256() if key is not None else None  # a third pass only if asked
        helper = self._hash_aside(body, end) if parallel and end > _PARALLEL_HASH else None
        whole.update(self._header_raw)
        for off, chunk in self._record_chunks(end):
            whole.update(chunk)
            if helper is None:
                body.update(chunk)
            if sealed is not None and off < seal_at:
                sealed.update(memoryview(chunk)[:seal_at - off])
        if helper is not None:
            helper()
        if whole.digest() != self._trailer_hash:
            raise self._err("is corrupted (SHA-256 of its contents does not match its trailer)")
        if body.digest()[:16] != self.header.image_id:
            raise self._err("is corrupted (its records do not match its image id)")
        if key is not None:
            self._check_seal(key, seal_at, count, sealed.digest())

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
        mac = rec.fields.get("mac")
        if rec.fields.get("alg") != SEAL_ALG or not isinstance(mac, bytes) or \
                not hmac.compare_digest(mac, seal_mac(key, self.header, count, digest)):
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
        the payload itself is not read."""
        lim = self.limits
        off, end, index = HEADER_SIZE, self.size - TRAILER_SIZE, 0
        while off < end:
            if end - off < _U32.size:
                raise self._err(f"is corrupted: {end - off} stray bytes at offset {off}")
            prefix = self._pread(off, _U32.size)
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
            yield index, off, n
            off += _U32.size + n
            index += 1
        if index != self._trailer_count:
            raise self._err(
                f"holds {index} records but its trailer says {self._trailer_count} "
                "(truncated or corrupted)"
            )

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
        head = _peek(self._pread(off + _U32.size, min(n, 300)))
        if head is None or head[2]:
            return False  # the full decode explains what is wrong
        want = table.get(head[0])
        return want is None or head[1] > want

    def _decode(self, data: bytes, index: int, off: int) -> Record:
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
        return Record(rtype, version, critical, fields)

    # -- public --------------------------------------------------------------------------

    def records(self, known: Mapping[str, int] | None = None, *,
                skip_pages: bool = False) -> Iterator[Record]:
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

    def records_and_pages(self, known: Mapping[str, int]) -> Iterator[Record | PageChunk]:
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

    def _filter(self, rec: Record, table: Mapping[str, int] | None) -> Record | None:
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
            rec = Record(rec.type, want, rec.critical, fields)
        return rec

    def _is_page_frame(self, off: int, n: int) -> bool:
        """True when the payload starts as [PAGES, 1, True, {6 fields}] does."""
        return n > len(_PAGES_PREFIX) and \
            self._pread(off + _U32.size, len(_PAGES_PREFIX)) == _PAGES_PREFIX

    def _page_chunk(self, index: int, off: int, n: int) -> PageChunk | None:
        """Parse a "pages" record's head and tail without its data; None unless the record is
        byte for byte what ImageWriter.add_pages writes (then the generic decoder decides)."""
        head = self._pread(off + _U32.size, min(n, _PAGE_HEAD_MAX))
        pos = len(_PAGES_PREFIX)
        vals = []
        for key in (b"\xa3buf", b"\xa5codec", b"\xa5count", b"\xa3crc"):
            if head[pos:pos + len(key)] != key:
                return None
            pos += len(key)
            v, pos = _read_uint(head, pos)
            if v is None:
                return None
            vals.append(v)
        if head[pos:pos + 5] != b"\xa4data":
            return None
        nbytes, pos = _read_bin_len(head, pos + 5)
        if nbytes is None or nbytes > self.limits.max_bin:
            return None
        tail_len = n - pos - nbytes
        if not 7 <= tail_len <= 15:
            return None
        tail = self._pread(off + _U32.size + pos + nbytes, tail_len)
        first, end = _read_uint(tail, 6) if tail[:6] == b"\xa5first" else (None, 0)
        if first is None or end != tail_len:
            return None
        buf, codec, count, crc = vals
        h2, t2 = page_record_parts(buf, codec, count, crc, nbytes, first)
        if h2 != head[:pos] or t2 != tail:
            return None
        return PageChunk(index, off, n, buf, first, count, codec, crc,
                         off + _U32.size + pos, nbytes)

    def chunk_record(self, chunk: PageChunk) -> Record:
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

    def pages(self, rec: Record) -> bytes:
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

    def verify(self, known: Mapping[str, int] | None = None) -> dict:
        """Check every frame, page CRC, the record count, SHA-256 and image id; return stats.

        With `known` (as for records()) optional records of other types are counted, not
        decoded."""
        body_hash, file_hash = hashlib.sha256(), hashlib.sha256(self._header_raw)
        types: Counter[str] = Counter()
        records = pages = chunks = 0
        table = None if known is None else {PAGES: PAGES_VERSION, **known}
        self._start_pass()
        for index, off, data in self._frames((body_hash, file_hash)):
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
        if file_hash.digest() != self._trailer_hash:
            raise self._err("is corrupted: its SHA-256 does not match its trailer")
        if body_hash.digest()[:ID_LEN] != self.header.image_id:
            raise self._err("is corrupted: its image id does not match its content")
        return {
            "records": records, "pages": pages, "chunks": chunks, "bytes": self.size,
            "types": dict(types),
        }
