"""Memory: mmap, munmap, mprotect, brk, madvise, mincore, mremap, msync."""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi import fcntl as F
from vkckpt.abi.mman import MS_ASYNC, MS_INVALIDATE, MS_SYNC, TASK_SIZE
from vkckpt.errors import GuestError
from vkckpt.syscalls.args import s32, s64
from vkckpt.vmspace import filemap
from vkckpt.vmspace.filemap import FileBuffer
from vkckpt.vmspace.vma import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, PAGE, page_up

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread
    from vkckpt.vmspace.vma import Vma
    from vkckpt.vmspace.vmspace import VmSpace

MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2
_MAX_FILE_MAP = 1 << 30


def sys_mmap(k: VKernel, t: Thread, addr: int, length: int, prot: int, flags: int, fd: int,
             off: int) -> int:
    """Implement mmap(2): anonymous memory, MAP_PRIVATE copies of guest-root files and
    MAP_SHARED mappings of their pages (vmspace/filemap.py)."""
    vm = t.process.vm
    if prot & ~7:
        raise GuestError(E.EINVAL)
    if flags & MAP_ANONYMOUS:
        return vm.mmap(addr, length, prot, flags)
    off = s64(off)
    if off < 0 or off % PAGE:
        raise GuestError(E.EINVAL)
    f = t.process.fds.get(s32(fd)).map_source()
    if not f.readable():
        raise GuestError(E.EACCES)
    if length > _MAX_FILE_MAP:
        raise GuestError(E.ENOMEM)
    if flags & MAP_SHARED:  # MAP_SHARED or MAP_SHARED_VALIDATE
        if prot & 2 and (not f.writable() or f.flags & F.O_APPEND):
            raise GuestError(E.EACCES)
        return vm.mmap(addr, length, prot, (flags & ~MAP_PRIVATE) | MAP_SHARED,
                       name=f.guest_path, path=f.guest_path, file_off=off,
                       backing=_file_pages(k, f.fd, off, f.guest_path, f.writable()))
    vm.check_room(page_up(length), 1)  # before reading: the copy is what the limit bounds
    data = f.pread(page_up(length), off)
    flags = (flags & ~MAP_SHARED) | MAP_PRIVATE
    return vm.mmap(addr, length, prot, flags, name=f.guest_path, data=data,
                   path=f.guest_path, file_off=off)


def sys_munmap(k: VKernel, t: Thread, addr: int, length: int) -> int:
    t.process.vm.munmap(addr, length)
    return 0


def sys_mprotect(k: VKernel, t: Thread, addr: int, length: int, prot: int) -> int:
    if prot & ~7:
        raise GuestError(E.EINVAL)
    t.process.vm.mprotect(addr, length, prot)
    return 0


def sys_brk(k: VKernel, t: Thread, addr: int) -> int:
    return t.process.vm.sys_brk(addr)


def sys_madvise(k: VKernel, t: Thread, addr: int, length: int, advice: int) -> int:
    t.process.vm.madvise(addr, length, advice)
    return 0


def sys_mincore(k: VKernel, t: Thread, addr: int, length: int, vec: int) -> int:
    """Implement mincore(2): every page of a mapping is reported resident (whether the host
    holds it is a host fact, and changes with lazy thaws), so the answer is deterministic."""
    vm = t.process.vm
    if addr % PAGE:
        raise GuestError(E.EINVAL)
    end = addr + page_up(length)
    if end > TASK_SIZE or not vm.vmas.covered(addr, end):
        raise GuestError(E.ENOMEM)
    vm.write(vec, b"\x01" * ((end - addr) // PAGE))
    return 0


def sys_mremap(k: VKernel, t: Thread, old: int, old_len: int, new_len: int, flags: int,
               new_addr: int) -> int:
    """Implement mremap(2) by copying: shrink in place, or move when MREMAP_MAYMOVE."""
    vm = t.process.vm
    if old % PAGE or new_len == 0 or flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED):
        raise GuestError(E.EINVAL)
    old_len, new_len = page_up(old_len), page_up(new_len)
    v = vm.vmas.find(old)
    if v is None or old + old_len > v.end:
        raise GuestError(E.EFAULT)
    if new_len <= old_len:
        if new_len < old_len:
            vm.munmap(old + new_len, old_len - new_len)
        return old
    if v.shared and v.buf.file_key is not None:
        return _mremap_file(k, vm, v, old, old_len, new_len, flags)
    if not flags & MREMAP_MAYMOVE or flags & MREMAP_FIXED:
        raise GuestError(E.ENOMEM)
    data = vm.read(old, old_len) if v.prot & 1 else bytes(old_len)
    dest = vm.mmap(0, new_len, v.prot, (v.flags & ~MAP_SHARED) | MAP_PRIVATE | MAP_ANONYMOUS,
                   name=v.name)
    vm.poke(dest, data)
    vm.munmap(old, old_len)
    return dest




def _file_pages(k: VKernel, fd: int, off: int, path: str, writable: bool,
                private: bool = False) -> Callable[[int, int], FileBuffer]:
    """The backing of a shared file mapping: the file's pages from offset off."""
    def make(size: int, bid: int) -> FileBuffer:
        try:
            return FileBuffer(fd, size, off, path, writable, bid, k.host_fds, private)
        except OSError as exc:
            raise GuestError(exc.errno or E.ENOMEM, str(exc)) from None
    return make


def _mremap_file(k: VKernel, vm: VmSpace, v: Vma, old: int, old_len: int, new_len: int,
                 flags: int) -> int:
    """mremap(2) growing a shared file mapping: the file's pages mapped again over the longer
    range, in place when the pages above are free, else moved (MREMAP_MAYMOVE)."""
    buf = v.buf
    assert isinstance(buf, FileBuffer)
    file_off = v.file_off + old - v.start
    pages = _file_pages(k, buf.fd, file_off, buf.path, buf.writable, buf.private)
    buf.incref()  # its descriptor serves the new mapping after the old one is gone
    try:
        if old + old_len == v.end and not vm.vmas.overlapping(v.end, old + new_len):
            return vm.mmap(old, new_len, v.prot, v.flags | MAP_FIXED, name=v.name,
                           path=v.path, file_off=file_off, backing=pages)
        if not flags & MREMAP_MAYMOVE or flags & MREMAP_FIXED:
            raise GuestError(E.ENOMEM)
        dest = vm.mmap(0, new_len, v.prot, v.flags, name=v.name, path=v.path,
                       file_off=file_off, backing=pages)
        vm.munmap(old, old_len)
        return dest
    finally:
        buf.decref()


def sys_msync(k: VKernel, t: Thread, addr: int, length: int, flags: int) -> int:
    """Implement msync(2): MS_SYNC writes the file pages back on the host at once, MS_ASYNC
    starts it; MS_INVALIDATE has nothing to drop (one page cache: mappings are coherent)."""
    if flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC) or flags & MS_ASYNC and flags & MS_SYNC:
        raise GuestError(E.EINVAL)
    filemap.msync(t.process.vm, addr, length, flags)
    return 0


def files_resized(k: VKernel) -> None:
    """After a truncate: every address space unmaps the pages now past the end of a file it
    maps shared (the host would raise SIGBUS in the vkernel for them)."""
    for p in k.procs.values():
        if p.vm is not None and p.vm.file_mapped:
            filemap.sync_files(p.vm)
