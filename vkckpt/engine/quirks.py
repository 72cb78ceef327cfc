"""Two pieces of x86 CPU state Unicorn gives no register for, set by patching its context blob,
and one engine field it gives no getter for.

* **CPL.** Unicorn starts the CPU at privilege level 0, so a guest's privileged instructions
  (cli, hlt, in/out, mov to or from a control register) execute instead of raising #GP,
  which Linux turns into SIGSEGV. `enter_user_mode` sets the CPL bits of ``hflags`` to 3.
* **old_exception.** Unicorn never resets it after a hooked exception, so a second #DE would
  be escalated to a double fault. `forget_exception` resets it, as a real iret does.

* **no_exit_request.** Unicorn compiles a helper call after every guest load and store that
  leaves the block if a stop was requested (for memory hooks that stop the engine).  vkckpt
  installs no memory hook and stops only where a block starts (the block counter) or ends
  (syscall), so the check never fires; the flag Unicorn keeps for ARM IT blocks turns it
  off (~18% of a busybox sort).  Found beside the engine's page-size fields and checked by
  behaviour: with it set, a store whose hook stops the engine no longer ends the block.
* **invalid_addr.** The address of the access that stopped the engine with a memory error
  (engine/tlb.py), read from the engine's own struct: the only 8-byte field of its first
  page that holds the address of a store to unmapped memory, for two different addresses.

Each field's offset is found once per host process by behaviour, not hard-coded,
on a scratch engine: for hflags, the 32-bit field that has the 64-bit-mode bits set and,
with its CPL bits set to 3, makes ``cli`` raise #GP; for old_exception, the only field a
hooked #DE turns from -1 to 0. When a layout is not recognised the quirk stays unfixed and
everything else works as before.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct

from vkckpt.engine import libuc
from vkckpt.engine import ucconst as C

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

_HF_LMA_CS64 = (1 << 14) | (1 << 15)  # hflags: long mode active, 64-bit code segment
_HF_CPL = 3
_GP = 13
_CLI = bytes.fromhex("fa")
_DIVIDE_BY_ZERO = bytes.fromhex("31c9b801000000489948f7f9")  # xor ecx,ecx; mov eax,1; cqo; idiv
_CODE = 0x1000
_INTR = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)

_offsets: dict[str, int | None] = {}


class _Scratch:
    """A throwaway engine running `code` at 0x1000, recording the last CPU exception."""

    def __init__(self, code: bytes) -> None:
        self.page = mmap.mmap(-1, 0x1000)
        self.page.write(code)
        self.end = _CODE + len(code)
        self.intno: int | None = None
        self.uch = libuc.open_x86_64()
        libuc.set_tcg_buffer_size(self.uch, 1 << 20)
        libuc.check(libuc.lib.uc_mem_map_ptr(self.uch, _CODE, 0x1000, 7, ctypes.addressof(
            ctypes.c_char.from_buffer(self.page))))
        self._cb = _INTR(self._on_intr)
        libuc.hook_add(self.uch, C.HOOK_INTR, ctypes.cast(self._cb, ctypes.c_void_p).value or 0)

    def _on_intr(self, uch: int, intno: int, _ud: int) -> None:
        self.intno = intno
        libuc.lib.uc_emu_stop(uch)

    def blob(self) -> tuple[libuc.Context, bytes]:
        ctx = libuc.Context.saved(self.uch)
        return ctx, ctypes.string_at(ctx.ptr, ctx.size)

    def run(self) -> int:
        """Run the code once from the start; returns RIP where it stopped."""
        self.intno = None
        libuc.lib.uc_emu_start(self.uch, _CODE, self.end, 0, 0)
        rip = ctypes.c_uint64()
        libuc.lib.uc_reg_read(self.uch, C.X86_REG["rip"], ctypes.byref(rip))
        return rip.value

    def close(self) -> None:
        libuc.lib.uc_close(self.uch)


def _u32(raw: bytes, off: int) -> int:
    return struct.unpack_from("<I", raw, off)[0]


def _patch(ctx: libuc.Context, off: int, value: int) -> None:
    ctypes.memmove(ctx.ptr + off, struct.pack("<I", value & 0xFFFF_FFFF), 4)


def _probe_hflags() -> int | None:
    s = _Scratch(_CLI)
    try:
        ctx, raw = s.blob()
        for off in range(0, len(raw) - 3, 4):
            v = _u32(raw, off)
            if v & _HF_LMA_CS64 != _HF_LMA_CS64 or v & _HF_CPL:
                continue
            _patch(ctx, off, v | _HF_CPL)
            ctx.restore(s.uch)
            hit = s.run() == _CODE and s.intno == _GP
            _patch(ctx, off, v)  # back to the original state before the next candidate
            ctx.restore(s.uch)
            if hit:
                return off
        return None
    finally:
        s.close()


def _probe_old_exception() -> int | None:
    s = _Scratch(_DIVIDE_BY_ZERO)
    try:
        _, raw0 = s.blob()
        s.run()
        _, raw1 = s.blob()
    finally:
        s.close()
    hits = [i for i in range(0, min(len(raw0), len(raw1)) - 3, 4)
            if raw0[i:i + 4] == b"\xff" * 4 and raw1[i:i + 4] == bytes(4)]
    return hits[0] if len(hits) == 1 else None


def _store_to(addr: int) -> bytes:
    """mov rbx, addr; mov [rbx], rcx"""
    return b"\x48\xbb" + struct.pack("<Q", addr) + b"\x48\x89\x0b"


_PROBE_ADDRS = (0x5A5A_0000_1238, 0x3C3C_0000_0AB8)  # unmapped in a scratch engine
_ENGINE_SCAN = 4096  # bytes of the engine struct searched


def _engine_bytes(uch: int) -> bytes:
    """The first bytes of the engine struct (through /proc/self/mem: never a host fault)."""
    fd = os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.pread(fd, _ENGINE_SCAN, uch)
    finally:
        os.close(fd)


def _probe_invalid_addr() -> int | None:
    found: set[int] | None = None
    for addr in _PROBE_ADDRS:
        s = _Scratch(_store_to(addr))
        try:
            s.run()
            raw = _engine_bytes(s.uch)
        finally:
            s.close()
        hits = {i for i in range(0, len(raw) - 7, 8) if struct.unpack_from("<Q", raw, i)[0] == addr}
        found = hits if found is None else found & hits
    return found.pop() if found is not None and len(found) == 1 else None


#: u32 target_page_size, u32 target_page_align, u64 qemu_host_page_size and
#: qemu_real_host_page_size: a run of engine fields the flag sits 50 bytes into
#: (icache line, context mode and size, next_pc, hook_insert, first_tb come between)
_PAGE_FIELDS = struct.pack("<IIQQ", 4096, 4095, 4096, 4096)
_FLAG_AFTER_PAGE_FIELDS = 50
_MAPPED = 0x20_0000  # a data page the probe's store lands in
#: mov rbx, _MAPPED; mov [rbx], rcx; inc rdx; inc rdx; inc rdx
_STORE_THEN_INCS = (b"\x48\xbb" + struct.pack("<Q", _MAPPED) + b"\x48\x89\x0b"
                    + b"\x48\xff\xc2" * 3)
_HOOK_MEM = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_int,
                             ctypes.c_int64, ctypes.c_void_p)


def _incs_after_stopping_store(s: _Scratch) -> int:
    """Run the probe code with RDX = 0; how many incs ran after the store's hook stopped it."""
    zero = ctypes.c_uint64(0)
    libuc.lib.uc_reg_write(s.uch, C.X86_REG["rdx"], ctypes.byref(zero))
    s.run()
    rdx = ctypes.c_uint64()
    libuc.lib.uc_reg_read(s.uch, C.X86_REG["rdx"], ctypes.byref(rdx))
    return rdx.value


def _probe_no_exit_request() -> int | None:
    s = _Scratch(_STORE_THEN_INCS)
    data = mmap.mmap(-1, 0x1000)
    try:
        libuc.check(libuc.lib.uc_mem_map_ptr(s.uch, _MAPPED, 0x1000, 3, ctypes.addressof(
            ctypes.c_char.from_buffer(data))))
        stop = _HOOK_MEM(lambda uch, *_: libuc.lib.uc_emu_stop(uch))
        libuc.hook_add(s.uch, C.HOOK_MEM_WRITE, ctypes.cast(stop, ctypes.c_void_p).value or 0,
                       None)
        if _incs_after_stopping_store(s) != 0:
            return None  # the check is not there to skip
        at = _engine_bytes(s.uch).find(_PAGE_FIELDS)
        if at < 0:
            return None
        off = at + _FLAG_AFTER_PAGE_FIELDS
        flag = ctypes.c_uint8.from_address(s.uch + off)
        if flag.value != 0:
            return None
        libuc.flush_tb(s.uch)
        flag.value = 1
        skipped = _incs_after_stopping_store(s) == 3
        flag.value = 0
        libuc.flush_tb(s.uch)
        return off if skipped and _incs_after_stopping_store(s) == 0 else None
    finally:
        s.close()
        data.close()


def offset(name: str) -> int | None:
    """The offset of 'hflags' or 'old_exception' (in the context blob), or of
    'invalid_addr' or 'no_exit_request' (in the engine struct), probed on first use."""
    if name not in _offsets:
        _offsets[name] = {"hflags": _probe_hflags, "old_exception": _probe_old_exception,
                          "invalid_addr": _probe_invalid_addr,
                          "no_exit_request": _probe_no_exit_request}[name]()
    return _offsets[name]


def skip_access_exit_checks(uch: int) -> bool:
    """Compile no stop check after loads and stores (before the engine translates any
    code); False when the flag was not found."""
    off = offset("no_exit_request")
    if off is None:
        return False
    ctypes.c_uint8.from_address(uch + off).value = 1
    return True


def _update(uch: int, name: str, change: Callable[[int], int]) -> bool:
    off = offset(name)
    if off is None:
        return False
    ctx = libuc.Context.saved(uch)
    _patch(ctx, off, change(_u32(ctypes.string_at(ctx.ptr, ctx.size), off)))
    ctx.restore(uch)
    return True


def enter_user_mode(uch: int) -> bool:
    """Run the engine's CPU at CPL 3 from now on; False when hflags was not found."""
    return _update(uch, "hflags", lambda v: v | _HF_CPL)


def forget_exception(uch: int) -> bool:
    """Reset old_exception after an exception was delivered as a signal."""
    return _update(uch, "old_exception", lambda v: 0xFFFF_FFFF)
