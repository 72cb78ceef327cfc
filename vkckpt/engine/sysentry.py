"""The syscall instruction hook: registers in, the kernel's entry, the result out.

With the C extension, `vk_syscall_cb` (engine/blockhook.c) reads RAX and the six argument
registers itself and calls the entry with plain integers; the entry's return value goes to
RAX, and RCX/R11 get the next RIP and RFLAGS as a real CPU leaves them.  Without it a ctypes
callback does the same with two batched register calls.  The entry is
`entry(nr, args) -> (value | None, stop)`: None leaves the registers as the handler set them.

With `park` set (phase 2 of a parallel round, vkckpt/rounds.py) the hook runs no Python and
changes nothing the guest sees: it records the syscall instruction's address (`parked_rip`)
and stops the engine; Engine.run puts RIP back there, so the call runs when the thread
resumes.  This is what lets engines run on several host threads: nothing in phase 2 needs
the kernel (or the GIL, with the C hook).
"""

from __future__ import annotations

import ctypes

from vkckpt.engine import libuc
from vkckpt.engine import regs as R
from vkckpt.engine import ucconst as C
from vkckpt.engine.preempt import native_symbol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    Entry = Callable[[int, tuple[int, ...]], tuple[int | None, bool]]

NOWRITE, STOP = 1, 2
_MASK = 0xFFFF_FFFF_FFFF_FFFF
_U64 = ctypes.c_uint64
_ENTRY = ctypes.CFUNCTYPE(_U64, *([_U64] * 7))
_HOOK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
_IN = R.SYSCALL_ARGS  # rax, the six arguments, rip, rflags
_OUT = ("rax", "rcx", "r11")


class SysState(ctypes.Structure):
    """Mirrors struct vk_sys_state in blockhook.c."""

    _fields_ = [("entry", ctypes.c_void_p), ("read_batch", ctypes.c_void_p),
                ("write_batch", ctypes.c_void_p), ("emu_stop", ctypes.c_void_p),
                ("flags", ctypes.c_uint64), ("park", ctypes.c_uint64),
                ("parked", ctypes.c_uint64), ("parked_rip", ctypes.c_uint64),
                ("in_ids", ctypes.c_int32 * 9),
                ("out_ids", ctypes.c_int32 * 3)]


_layout_ok: bool | None = None


def _native_ok() -> bool:
    """The extension's struct vk_sys_state matches SysState (checked once per process)."""
    global _layout_ok
    if _layout_ok is None:
        size = native_symbol("vk_sys_state_size")
        _layout_ok = size is not None and \
            ctypes.CFUNCTYPE(ctypes.c_uint64)(size)() == ctypes.sizeof(SysState)
    return _layout_ok


class SyscallHook:
    """The hook of one engine; `error` holds what the entry raised (run() re-raises it)."""

    def __init__(self, uch: int, entry: Entry, force_python: bool = False) -> None:
        self.uch = uch
        self._entry = entry
        self.error: BaseException | None = None
        self.stopped = False  # the entry asked to stop at the last syscall
        native = None if force_python else native_symbol("vk_syscall_cb")
        self.native = native is not None and _native_ok()
        if self.native:
            self._cb = _ENTRY(self._native_entry)
            self.state = SysState(
                ctypes.cast(self._cb, ctypes.c_void_p).value,
                ctypes.cast(libuc.lib.uc_reg_read_batch, ctypes.c_void_p).value,
                ctypes.cast(libuc.lib.uc_reg_write_batch, ctypes.c_void_p).value,
                ctypes.cast(libuc.lib.uc_emu_stop, ctypes.c_void_p).value, 0, 0, 0, 0,
                (ctypes.c_int32 * 9)(*[R.REG_ID[n] for n in _IN]),
                (ctypes.c_int32 * 3)(*[R.REG_ID[n] for n in _OUT]))
            libuc.hook_add(uch, C.HOOK_INSN, native, ctypes.addressof(self.state),
                           ctypes.c_int(C.X86_INS_SYSCALL))
        else:
            self.state = SysState()  # only park/parked/parked_rip are used
            self._in, self._out = R.RegBatch(_IN), R.RegBatch(_OUT)
            self._cb = _HOOK(self._python_hook)
            libuc.hook_add(uch, C.HOOK_INSN, ctypes.cast(self._cb, ctypes.c_void_p).value or 0,
                           None, ctypes.c_int(C.X86_INS_SYSCALL))

    def set_park(self, park: bool) -> None:
        """Leave the thread before its next syscall instead of entering the kernel (True
        also forgets an earlier parked stop)."""
        self.state.park = int(park)
        if park:
            self.state.parked = 0

    def take_parked(self) -> int | None:
        """The parked syscall's address if the last run stopped there (then cleared)."""
        st = self.state
        if not st.parked:
            return None
        st.parked = 0
        return st.parked_rip

    def _call(self, nr: int, args: tuple[int, ...]) -> tuple[int | None, bool]:
        try:
            ret, stop = self._entry(nr, args)
        except BaseException as exc:  # surfaced by Engine.run(); ctypes would swallow it
            self.error = exc
            return None, True
        if stop:
            self.stopped = True
        return ret, stop

    def _native_entry(self, nr: int, a1: int, a2: int, a3: int, a4: int, a5: int,
                      a6: int) -> int:
        ret, stop = self._call(nr, (a1, a2, a3, a4, a5, a6))
        if ret is None or stop:
            self.state.flags = (NOWRITE if ret is None else 0) | (STOP if stop else 0)
        return 0 if ret is None else ret & _MASK

    def _python_hook(self, _uc: int, _ud: int) -> None:
        v = self._in.read(self.uch)
        if self.state.park:
            self.state.parked, self.state.parked_rip = 1, v[7]
            libuc.lib.uc_emu_stop(self.uch)
            return
        ret, stop = self._call(v[0], (v[1], v[2], v[3], v[4], v[5], v[6]))
        if ret is not None:
            self._out.write3(self.uch, ret, v[7] + 2, v[8])
        if stop:
            libuc.lib.uc_emu_stop(self.uch)
