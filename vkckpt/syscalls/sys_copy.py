"""In-kernel copies between descriptors: sendfile(2) and copy_file_range(2).

Both move data through the files' own pread/write/pwrite in chunks of at most CHUNK bytes,
so a huge count never allocates a huge buffer; errors come in Linux's order (do_sendfile,
generic_copy_file_checks).  Every file of the guest root is on one virtual device, so
copy_file_range never answers EXDEV.
"""

from __future__ import annotations

import struct

from vkckpt import task_signals
from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi import signals as S
from vkckpt.errors import GuestError
from vkckpt.sigsend import kernel_info
from vkckpt.syscalls.args import MAX_IO, s32, s64
from vkckpt.threads.wait import Block

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.fs.ops import OpenFile
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread

CHUNK = 1 << 16  # bytes held at once while copying
_U64 = (1 << 64) - 1


def _mode_size(f: OpenFile) -> tuple[int, int]:
    """(S_IFMT bits, size) from the stat the guest sees."""
    st = f.stat()
    return struct.unpack_from("<I", st, 24)[0] & F.S_IFMT, struct.unpack_from("<q", st, 48)[0]


def _offset_arg(t: Thread, addr: int) -> int | None:
    return None if addr == 0 else s64(t.process.vm.read_u64(addr))


def _file_offset(f: OpenFile) -> int:
    """The file offset (f_pos): 0 for files that have none."""
    try:
        return f.seek(0, F.SEEK_CUR) if f.seekable else 0
    except GuestError:
        return 0


def _copy(k: VKernel, t: Thread, fin: OpenFile, pos: int, fout: OpenFile,
          out_pos: int | None, count: int) -> int:
    """Copy up to count bytes of fin from pos to fout (at out_pos, or at its offset when
    None); a short count when the output takes less or must wait after some bytes moved.
    EPIPE also sends the caller SIGPIPE."""
    done = 0
    while done < count:
        data = fin.pread(min(CHUNK, count - done), pos + done)
        if not data:
            break
        try:
            n = fout.write(data) if out_pos is None else fout.pwrite(data, out_pos + done)
        except (GuestError, Block) as exc:
            if done:
                return done
            if isinstance(exc, GuestError) and exc.errno == E.EPIPE:
                task_signals.send_to_thread(k, t, kernel_info(S.SIGPIPE))
            raise
        done += n
        if n < len(data):
            break
    return done


def sys_sendfile(k: VKernel, t: Thread, out_fd: int, in_fd: int, offset: int,
                 count: int) -> int:
    """Implement sendfile(2): from a regular file to any writable file (pipes and the
    console included); with an offset pointer the input's offset stays, the pointer moves."""
    ppos = _offset_arg(t, offset)
    fds = t.process.fds
    fin = fds.get(s32(in_fd))
    if not fin.readable():
        raise GuestError(E.EBADF)
    if ppos is not None and not fin.seekable:
        raise GuestError(E.ESPIPE)
    pos = _file_offset(fin) if ppos is None else ppos
    if pos < 0 or s64(count) < 0:
        raise GuestError(E.EINVAL)
    count = min(count, MAX_IO)
    fout = fds.get(s32(out_fd))
    if not fout.writable():
        raise GuestError(E.EBADF)
    out_mode = _mode_size(fout)[0]
    if _mode_size(fin)[0] != F.S_IFREG or \
            out_mode != F.S_IFIFO and fout.flags & F.O_APPEND:
        raise GuestError(E.EINVAL)
    n = _copy(k, t, fin, pos, fout, None, count)
    if ppos is None:
        fin.seek(pos + n, F.SEEK_SET)
    else:
        t.process.vm.write(offset, struct.pack("<q", pos + n))
    return n


def sys_copy_file_range(k: VKernel, t: Thread, fd_in: int, off_in: int, fd_out: int,
                        off_out: int, length: int, flags: int) -> int:
    """Implement copy_file_range(2) between regular files, clipped at the source's end;
    offset pointers move instead of the files' offsets."""
    fds = t.process.fds
    fin, fout = fds.get(s32(fd_in)), fds.get(s32(fd_out))
    pin, pout = _offset_arg(t, off_in), _offset_arg(t, off_out)
    if flags & 0xFFFF_FFFF:
        raise GuestError(E.EINVAL)
    (in_mode, size), out_mode = _mode_size(fin), _mode_size(fout)[0]
    if F.S_IFDIR in (in_mode, out_mode):
        raise GuestError(E.EISDIR)
    if in_mode != F.S_IFREG or out_mode != F.S_IFREG:
        raise GuestError(E.EINVAL)
    if not fin.readable() or not fout.writable() or fout.flags & F.O_APPEND:
        raise GuestError(E.EBADF)
    pos_in = _file_offset(fin) if pin is None else pin
    pos_out = _file_offset(fout) if pout is None else pout
    if max(pos_in & _U64, pos_out & _U64) + length > _U64:  # loff_t + size_t wraps
        raise GuestError(E.EOVERFLOW)
    if pos_in < 0 or pos_out < 0:
        raise GuestError(E.EINVAL)
    count = 0 if pos_in >= size else min(length, size - pos_in, MAX_IO)
    same = fin.stat()[:16] == fout.stat()[:16]
    if same and pos_out + count > pos_in and pos_out < pos_in + count:
        raise GuestError(E.EINVAL)
    if count == 0:
        return 0
    n = _copy(k, t, fin, pos_in, fout, pos_out, count)
    for f, ptr, pos in ((fin, off_in, pos_in), (fout, off_out, pos_out)):
        if ptr:
            t.process.vm.write(ptr, struct.pack("<q", pos + n))
        else:
            f.seek(pos + n, F.SEEK_SET)
    return n
