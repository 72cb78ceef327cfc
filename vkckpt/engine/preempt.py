"""Deterministic preemption: count translated blocks and stop the engine when a budget is spent.

A ``UC_HOOK_BLOCK`` callback runs on entry to every translated block. The native one (C, in
``blockhook.c``) costs a few percent of emulator speed; the Python fallback has exactly the same
semantics but costs about a microsecond per block.

Semantics (identical for both): on block entry, if ``remaining`` is 0 the counter sets ``expired``
and calls ``uc_emu_stop``; the block does not execute and is not counted, so it is counted when it
runs after the engine is resumed at it. Otherwise ``remaining`` drops by one and ``total`` grows by
one. ``total`` is therefore the exact number of blocks entered, and a run chopped into quanta at
any budgets executes and counts the same blocks as one long run.

Unicorn compiles hooks into translated blocks, so blocks translated before a hook was added never
call it (``emu_start(count=...)`` has the same problem): the counter flushes the translation cache
when it is created and when it is closed. Each iteration of a ``rep``-prefixed string instruction
is a block of its own. A stop requested by another hook in the middle of a block splits it: the
rest is counted as a new block on resume.
"""

from __future__ import annotations

import ctypes

from vkckpt.engine import libuc
from vkckpt.engine.ucconst import HOOK_BLOCK, X86_REG

try:  # the optional C extension (setup.py); loaded through ctypes by _native_callback
    from vkckpt.engine import _blockhook  # type: ignore[attr-defined]
except ImportError:
    _blockhook = None

__all__ = ["UNLIMITED", "BlockCounter", "BlockState", "NoCounter", "native_available",
           "native_symbol", "new_state"]

#: ``remaining`` of a counter that is not armed: it counts but never stops the engine.
UNLIMITED = (1 << 64) - 1


class BlockState(ctypes.Structure):
    """Hook user data; mirrors ``struct vk_block_state`` in blockhook.c."""

    _fields_ = [
        ("remaining", ctypes.c_uint64),
        ("total", ctypes.c_uint64),
        ("expired", ctypes.c_uint64),
        ("emu_stop", ctypes.c_void_p),
        ("block_addr", ctypes.c_uint64),
        ("tsc_base", ctypes.c_uint64),
        ("tsc_per_block", ctypes.c_uint64),
        ("tsc_aux", ctypes.c_uint64),
        ("reg_read", ctypes.c_void_p),
        ("reg_write", ctypes.c_void_p),
        ("reg_rip", ctypes.c_int32),
        ("reg_rax", ctypes.c_int32),
        ("reg_rdx", ctypes.c_int32),
        ("reg_rcx", ctypes.c_int32),
        ("reg_rbx", ctypes.c_int32),
        ("pad", ctypes.c_int32),
        ("cpuid", ctypes.c_void_p),
        ("cpuid_count", ctypes.c_uint64),
    ]


def new_state() -> BlockState:
    """A state that counts without stopping, with the addresses and ids the C hooks call."""
    return BlockState(UNLIMITED, 0, 0, _EMU_STOP_ADDR, 0, 0, 1, 0, _REG_READ_ADDR,
                      _REG_WRITE_ADDR, X86_REG["rip"], X86_REG["rax"], X86_REG["rdx"],
                      X86_REG["rcx"], X86_REG["rbx"], 0, None, 0)


_BLOCK_CFUNC = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_void_p
)
_EMU_STOP_ADDR: int = ctypes.cast(libuc.lib.uc_emu_stop, ctypes.c_void_p).value or 0
_REG_READ_ADDR: int = ctypes.cast(libuc.lib.uc_reg_read, ctypes.c_void_p).value or 0
_REG_WRITE_ADDR: int = ctypes.cast(libuc.lib.uc_reg_write, ctypes.c_void_p).value or 0

_native_cb: int | None = None
_native_tried = False
_native_lib: list[ctypes.CDLL] = []  # keeps the loaded extension referenced


def _native_callback() -> int | None:
    """Address of ``vk_block_cb`` from the built extension, or None when it is missing."""
    global _native_cb, _native_tried
    if not _native_tried:
        _native_tried = True
        try:
            if _blockhook is not None:
                lib = ctypes.CDLL(_blockhook.__file__)
                lib.vk_block_state_size.restype = ctypes.c_uint64
                if lib.vk_block_state_size() == ctypes.sizeof(BlockState):
                    _native_cb = ctypes.cast(lib.vk_block_cb, ctypes.c_void_p).value
                    _native_lib.append(lib)
        except (OSError, AttributeError):
            _native_cb = None
    return _native_cb


def native_symbol(name: str) -> int | None:
    """Address of another function of the built extension (None when it is missing)."""
    if _native_callback() is None:
        return None
    return ctypes.cast(getattr(_native_lib[0], name), ctypes.c_void_p).value


def native_library() -> ctypes.CDLL | None:
    """The built extension loaded as a library (None when it is missing)."""
    return _native_lib[0] if _native_callback() is not None else None


def native_available() -> bool:
    """True when the compiled ``vkckpt.engine._blockhook`` extension can be used."""
    return _native_callback() is not None


class BlockCounter:
    """Count translated blocks executed on one Unicorn engine and stop it when a budget is spent.

    A new counter is not armed: it counts without stopping until :meth:`arm` is called.
    """

    native: bool

    def __init__(self, uch: int, force_python: bool = False) -> None:
        """uch is the raw handle of the engine (uc_engine *) to count on."""
        self._uch = uch
        self._state = new_state()
        cb_addr = None if force_python else _native_callback()
        self.native = cb_addr is not None
        self._pycb: object = None
        if cb_addr is None:
            self._pycb = _BLOCK_CFUNC(self._python_cb)
            cb_addr = ctypes.cast(self._pycb, ctypes.c_void_p).value or 0
        self._handle: int | None = libuc.hook_add(uch, HOOK_BLOCK, cb_addr,
                                                  ctypes.addressof(self._state))
        # Hooks are compiled into translated blocks: blocks cached before the hook existed would
        # never call it, so drop them.
        libuc.flush_tb(uch)

    def _python_cb(self, uch: int, addr: int, size: int, user_data: int) -> None:
        """Python twin of ``vk_block_cb``."""
        st = self._state
        if st.remaining == 0:
            st.expired = 1
            libuc.lib.uc_emu_stop(uch)
            return
        st.remaining -= 1
        st.total += 1
        st.block_addr = addr

    @property
    def state(self) -> BlockState:
        """The hook's user data (the TSC hooks read the block count and address from it)."""
        return self._state

    def arm(self, budget: int) -> None:
        """Allow ``budget`` (>= 1) more blocks, then stop the engine at the next block entry."""
        if not 1 <= budget < UNLIMITED:
            raise ValueError(f"budget must be in [1, 2**64-1), got {budget}")
        self._state.remaining = budget
        self._state.expired = 0

    def disarm(self) -> None:
        """Keep counting but never stop the engine."""
        self._state.remaining = UNLIMITED
        self._state.expired = 0

    def uncount(self) -> None:
        """Forget the last block entered (it will be entered, and counted, again): a run
        parked at a syscall (Engine.run) re-runs the block that starts at the syscall."""
        st = self._state
        if st.total and st.remaining < UNLIMITED:
            st.total -= 1
            st.remaining += 1

    @property
    def remaining(self) -> int:
        """Blocks still allowed before the stop (``UNLIMITED`` when not armed)."""
        return self._state.remaining

    @property
    def expired(self) -> bool:
        """True when the last stop was caused by the budget running out."""
        return bool(self._state.expired)

    @property
    def total(self) -> int:
        """Blocks executed so far; writable so a restored checkpoint can carry it on."""
        return self._state.total

    @total.setter
    def total(self, value: int) -> None:
        if not 0 <= value < (1 << 64):
            raise ValueError(f"total out of range: {value}")
        self._state.total = value

    def close(self) -> None:
        """Remove the hook from the engine; further calls do nothing."""
        if self._handle is not None:
            libuc.hook_del(self._uch, self._handle)
            self._handle = None
            libuc.flush_tb(self._uch)  # cached blocks would still call into the hook dispatcher

    def __enter__(self) -> BlockCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NoCounter:
    """Stand-in for :class:`BlockCounter` on an engine that is never preempted (benchmarks).

    Nothing is hooked, so no block is counted and a run ends only at a trap or a stop asked for
    by another hook; ``remaining`` stays at the armed budget, so callers see zero blocks used.
    """

    native = False
    expired = False
    total = 0

    def __init__(self) -> None:
        self.remaining = UNLIMITED
        self.state = new_state()  # never counts: the TSC stays at the slice's start

    def arm(self, budget: int) -> None:
        self.remaining = budget

    def disarm(self) -> None:
        self.remaining = UNLIMITED

    def uncount(self) -> None:
        pass

    def close(self) -> None:
        pass
