"""Memory: mmap, munmap, mprotect, brk, madvise, mincore, mremap."""

from __future__ import annotations

from vkckpt.abi import errno as E
from vkckpt.abi.mman import TASK_SIZE
from vkckpt.errors import GuestError
from vkckpt.syscalls.args import s32, s64
from vkckpt.vmspace.vma import MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PAGE, page_up

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel
    from vkckpt.threads.thread import Thread

MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2
_MAX_FILE_MAP = 1 << 30


def sys_mmap(k: VKernel, t: Thread, addr: int, length: int, prot: int, flags: int, fd: int,
             off: int) -> int:
    """Implement mmap(2): anonymous memory and MAP_PRIVATE copies of guest-root files."""
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
    if flags & MAP_SHARED and prot & 2:
        raise GuestError(E.ENOTSUP, "writable MAP_SHARED file mappings are not supported")
    if length > _MAX_FILE_MAP:
        raise GuestError(E.ENOMEM)
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
    if not flags & MREMAP_MAYMOVE or flags & MREMAP_FIXED:
        raise GuestError(E.ENOMEM)
    data = vm.read(old, old_len) if v.prot & 1 else bytes(old_len)
    dest = vm.mmap(0, new_len, v.prot, (v.flags & ~MAP_SHARED) | MAP_PRIVATE | MAP_ANONYMOUS,
                   name=v.name)
    vm.poke(dest, data)
    vm.munmap(old, old_len)
    return dest


