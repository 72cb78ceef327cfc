"""Writing an image: ImageWriter streams records into a temporary file and commits it
atomically, hashing page data where it lies (on a helper thread for large runs) and, if
asked, finishing the durable part of the commit in the background.

Every byte is hashed once, as it is written: the trailer's image digest (header.py) is
computed from the header and the record stream's SHA-256, so nothing is read back.  The
disk works while the records are produced: each finished stretch of the file is handed to
the host's writeback (host/writeback.py), so the fsync at the end has only the tail left."""

from __future__ import annotations

import errno
import hashlib
import os
import zlib
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType

import msgpack

from vkckpt.abi.mman import PAGE
from vkckpt.errors import ImageError
from vkckpt.host import fs as hostfs
from vkckpt.host.writeback import start_writeback
from vkckpt.image.background import _Hasher, _in_background
from vkckpt.image.codecs import CODECS, ZSTD_LEVEL, _canon, _EncodeError, _zstd
from vkckpt.image.frames import MAX_CHUNK_PAGES, page_record_parts
from vkckpt.image.header import (
    _CODEC_SHIFT,
    _NO_ID,
    _U32,
    FLAG_INCREMENTAL,
    FORMAT_MAJOR,
    FORMAT_MINOR,
    HEADER_SIZE,
    ID_LEN,
    PRODUCER_LEN,
    Header,
    _default_producer,
    image_digest,
    trailer_bytes,
)
from vkckpt.image.limits import DEFAULT_LIMITS
from vkckpt.image.seal import SEAL, seal_fields

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Bytes written between two requests to start their writeback (see host/writeback.py).
_WRITEBACK = 8 << 20
#: Page chunks up to this size are framed into one bytes object: one write and one hash
#: update per record (an incremental image holds many one-page records).
_JOIN_BELOW = 64 << 10
#: Bytes of small records framed before they are hashed and written as one piece.
_BATCH = 1 << 20
#: add_pages calls with more chunks than this hash them on a helper thread (hashlib, zlib and
#: file writes release the GIL, so hashing overlaps CRCs and writes on another core).
_THREADED_CHUNKS = 2


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


class ImageWriter:
    """Stream records into a temp file beside `path`; `commit` atomically replaces `path`.

    The file is created in the directory `dir_fd` (a directory fd the caller took when it
    trusted the name; default: `path`'s directory as pinned by a hostfs.OutputPath, else
    opened now) under `path`'s final name: unnamed or under a hidden temporary name until
    commit, then renamed onto that name without following a symlink there
    (vkckpt.host.fs.AtomicFile).
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
        versions: Mapping[str, int] | None = None,
        durable: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        self._versions = {} if versions is None else dict(versions)  # type -> version add writes
        self._key = key  # seals the image (see seal_input) when given
        # False: committed (complete, renamed into place) without syncing to disk: an image
        # that is useless after a crash anyway (a migration's, sent and then removed)
        self._durable = durable
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
        self._records_digest = b""  # the record stream's SHA-256, once sealed
        self._written_back = 0      # the file's bytes before this were handed to writeback
        self._batch: list[bytes] = []  # small records framed, not yet hashed or written
        self._batched = 0
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
        self._flush_batch()
        frame = _U32.pack(n)
        self._body_hash.update(frame)
        self._body_hash.update(payload)
        self._count += 1
        self._io(self._write, frame)
        self._io(self._write, payload)

    def _emit_parts(self, parts: tuple, hasher: _Hasher | None) -> None:
        """Append one record whose payload is the concatenation of parts: small ones framed
        into the batch (see _flush_batch), others written and hashed where they lie."""
        n = sum(len(p) for p in parts)
        if n > self._lim.max_record:
            raise self._err(f"a pages record encodes to {n} bytes, over the "
                            f"{self._lim.max_record} byte limit")
        if self._count >= self._lim.max_records:
            raise self._err(f"more than {self._lim.max_records} records")
        self._count += 1
        if n < _JOIN_BELOW and hasher is None:
            self._batch.append(b"".join((_U32.pack(n), *parts)))
            self._batched += n
            if self._batched >= _BATCH:
                self._flush_batch()
            return
        self._flush_batch()
        parts = (_U32.pack(n), *parts)
        if hasher is not None:
            hasher.put(parts)
        else:
            for p in parts:
                self._body_hash.update(p)
        for p in parts:
            self._io(self._write, p)

    def _flush_batch(self) -> None:
        """Hash and write the small records framed since the last call, as one piece."""
        if self._batch:
            data = b"".join(self._batch) if len(self._batch) > 1 else self._batch[0]
            self._batch.clear()
            self._batched = 0
            self._body_hash.update(data)
            self._io(self._write, data)
            if self._durable and self.bytes_written - self._written_back >= _WRITEBACK:
                self._io(self._write_back)

    def _write_back(self) -> None:
        """Hand what was written since the last call to the host's writeback (the buffered
        writer is flushed first)."""
        self._f.flush()
        start_writeback(self._f.fileno(), self._written_back,
                        self.bytes_written - self._written_back)
        self._written_back = self.bytes_written

    def add(self, type: str, fields: dict, *, version: int | None = None,
            critical: bool = True) -> None:
        """Append one record.  Fields must be msgpack-able (maps with str keys); version
        defaults to the writer's `versions` entry for the type, else 1."""
        self._check_open()
        version = self._versions.get(type, 1) if version is None else version
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
        self._check_buf(buf)
        if builtin_type(first_page) is not int or first_page < 0:
            raise self._err(f"first page {first_page!r} is not an integer >= 0")
        mv = self._page_view(data)
        self._add_run(buf, first_page, mv)

    def add_page_runs(self, buf: int, data: bytes | bytearray | memoryview,
                      runs: Iterable[tuple[int, int]]) -> None:
        """add_pages(buf, a, data[a*PAGE:b*PAGE]) for each run [a, b) of pages of data, in
        order, writing the same bytes; cheaper for many small runs (an incremental image's
        scattered pages), which are framed together into few writes and hash updates."""
        self._check_open()
        self._check_buf(buf)
        mv = self._page_view(data)
        npages = mv.nbytes // PAGE
        small = _JOIN_BELOW // PAGE - 1 if self._cctx is None else 0  # pages: one record
        for a, b in runs:
            if builtin_type(a) is not int or builtin_type(b) is not int or \
                    not 0 <= a < b <= npages:
                raise self._err(f"page run {a!r}-{b!r} is not within the {npages} pages given")
            if b - a > small:
                self._add_run(buf, a, mv[a * PAGE:b * PAGE])
                continue
            # _add_run's one record, framed into the batch directly (no compression)
            if self._count >= self._lim.max_records:
                raise self._err(f"more than {self._lim.max_records} records")
            chunk = mv[a * PAGE:b * PAGE]
            head, tail = page_record_parts(buf, 0, b - a, zlib.crc32(chunk), len(chunk), a)
            self._count += 1
            self._batch.append(b"".join((_U32.pack(len(head) + len(chunk) + len(tail)), head,
                                         chunk, tail)))
            self._batched += len(chunk)
            if self._batched >= _BATCH:
                self._flush_batch()

    def _check_buf(self, buf: object) -> None:
        if builtin_type(buf) is not int or buf < 0:
            raise self._err(f"page buffer id {buf!r} is not an integer >= 0")

    def _page_view(self, data: bytes | bytearray | memoryview) -> memoryview:
        try:
            mv = memoryview(data).cast("B")
        except TypeError as e:
            raise self._err(f"page data is not a contiguous bytes-like object ({e})") from e
        if mv.nbytes % PAGE:
            raise self._err(f"page data is {mv.nbytes} bytes, not a multiple of {PAGE}")
        return mv

    def _add_run(self, buf: int, first_page: int, mv: memoryview) -> None:
        """The records of pages first_page... (mv, whole pages), 256 pages at most each."""
        npages = mv.nbytes // PAGE
        hasher = None
        if npages > _THREADED_CHUNKS * MAX_CHUNK_PAGES:
            self._flush_batch()  # the helper thread hashes after what is batched
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
                if self.bytes_written - self._written_back >= _WRITEBACK:
                    self._io(self._write_back)
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
        """commit() with its durable part on a helper thread: trailer and header, fsync,
        rename and directory fsync.  Returns the header at once and a wait
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
        self._flush_batch()
        if self._key is not None:  # the last record: authenticates everything before it
            h = Header(FORMAT_MAJOR, FORMAT_MINOR, self._flags, self.vkernel_id, _NO_ID,
                       self.parent_id, self.producer)
            self.add(SEAL, seal_fields(self._key, h, self._count,
                                       self._body_hash.copy().digest()), critical=False)
        self._state = "committing"
        self._records_digest = self._body_hash.digest()
        return Header(
            FORMAT_MAJOR, FORMAT_MINOR, self._flags, self.vkernel_id,
            self._records_digest[:ID_LEN], self.parent_id, self.producer,
        )

    def _make_durable(self, header: Header) -> None:
        self._io(self._finish, header.to_bytes())  # on failure _io aborts: no temp file left
        self._io(self._out.publish)
        self._state = "committed"
        try:
            if self._durable:
                _fsync_dir(self._dir)
        except OSError as e:
            raise self._err(f"renamed into place but could not sync its directory: {e}") from e
        finally:
            self._release()

    def _finish(self, head: bytes) -> None:
        """Append the trailer, write the header over its placeholder and fsync (the body
        was hashed as it was written and is mostly on its way to disk already)."""
        f = self._f
        self._write(trailer_bytes(self._count, image_digest(head, self._records_digest)))
        f.seek(0)
        if self._fault_hook is not None:
            self._fault_hook(self.bytes_written)
        f.write(head)
        f.flush()
        if self._durable:
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


builtin_type = type  # `type` is shadowed by the record-type parameter of ImageWriter.add
