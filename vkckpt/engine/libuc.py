"""libunicorn through raw ctypes: the C API vkckpt calls, without the ``unicorn`` package.

The Python binding's import alone (~20 ms: importlib.resources, tempfile, zipfile, typing)
costs more than thawing a small image, and its checked prototypes make every call slower, so
the engine loads the shared library the binding ships and declares the prototypes it needs.
The library is looked up as the binding does: ``$LIBUNICORN_PATH``, then
``<sys.path entry>/unicorn/lib``, then the system loader.
"""

from __future__ import annotations

import ctypes
import os
import sys

from vkckpt.engine import ucconst as C

LIB_NAME = "libunicorn.so.2"

_u32, _u64, _i32 = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int32
_size, _ptr = ctypes.c_size_t, ctypes.c_void_p


def _candidates() -> list[str]:
    found = []
    env = os.environ.get("LIBUNICORN_PATH")
    if env:
        found.append(os.path.join(env, LIB_NAME) if os.path.isdir(env) else env)
    for entry in sys.path:
        path = os.path.join(entry or ".", "unicorn", "lib", LIB_NAME)
        if os.path.exists(path):
            found.append(path)
    found.append(LIB_NAME)
    return found


def _load() -> ctypes.CDLL:
    errors = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            errors.append(f"{path}: {e}")
    raise ImportError("cannot load the Unicorn library; install the 'unicorn' package "
                      "(pip install unicorn) or set LIBUNICORN_PATH. Tried: " + "; ".join(errors))


lib = _load()

# name: (restype, argtypes); variadic functions (uc_hook_add, uc_ctl) keep no argtypes.
_PROTOTYPES: dict[str, tuple[object, tuple[object, ...] | None]] = {
    "uc_open": (ctypes.c_int, (_u32, _u32, ctypes.POINTER(_ptr))),
    "uc_close": (ctypes.c_int, (_ptr,)),
    "uc_strerror": (ctypes.c_char_p, (ctypes.c_int,)),
    "uc_version": (_u32, (_ptr, _ptr)),
    "uc_emu_start": (ctypes.c_int, (_ptr, _u64, _u64, _u64, _size)),
    "uc_emu_stop": (ctypes.c_int, (_ptr,)),
    "uc_hook_add": (ctypes.c_int, None),
    "uc_hook_del": (ctypes.c_int, (_ptr, _size)),
    "uc_ctl": (ctypes.c_int, None),
    "uc_mem_map_ptr": (ctypes.c_int, (_ptr, _u64, _size, _u32, _ptr)),
    "uc_mem_unmap": (ctypes.c_int, (_ptr, _u64, _size)),
    "uc_mem_protect": (ctypes.c_int, (_ptr, _u64, _size, _u32)),
    "uc_mem_read": (ctypes.c_int, (_ptr, _u64, _ptr, _size)),
    "uc_mem_write": (ctypes.c_int, (_ptr, _u64, ctypes.c_char_p, _size)),
    "uc_mem_regions": (ctypes.c_int, (_ptr, _ptr, ctypes.POINTER(_u32))),
    "uc_free": (ctypes.c_int, (_ptr,)),
    "uc_reg_read": (ctypes.c_int, (_ptr, ctypes.c_int, _ptr)),
    "uc_reg_write": (ctypes.c_int, (_ptr, ctypes.c_int, _ptr)),
    "uc_context_alloc": (ctypes.c_int, (_ptr, ctypes.POINTER(_ptr))),
    "uc_context_size": (_size, (_ptr,)),
    "uc_context_save": (ctypes.c_int, (_ptr, _ptr)),
    "uc_context_restore": (ctypes.c_int, (_ptr, _ptr)),
    "uc_context_reg_write": (ctypes.c_int, (_ptr, ctypes.c_int, _ptr)),
    "uc_context_free": (ctypes.c_int, (_ptr,)),
}
for _name, (_res, _args) in _PROTOTYPES.items():
    _fn = getattr(lib, _name)
    _fn.restype = _res
    if _args is not None:
        _fn.argtypes = _args


class UcError(Exception):
    """A Unicorn call failed; ``errno`` is the uc_err code."""

    def __init__(self, errno: int) -> None:
        self.errno = errno
        msg = lib.uc_strerror(errno)
        super().__init__(msg.decode() if msg else f"unicorn error {errno}")


def check(err: int) -> None:
    """Raise UcError for a failed call."""
    if err != C.ERR_OK:
        raise UcError(err)


def version() -> tuple[int, int]:
    """The loaded library's (major, minor) version."""
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.uc_version(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def open_x86_64() -> int:
    """A new x86-64 engine; returns its handle."""
    h = _ptr()
    check(lib.uc_open(C.ARCH_X86, C.MODE_64, ctypes.byref(h)))
    return h.value or 0


def _ctl_write(uch: int, ctl: int, *args: object) -> None:
    code = (C.CTL_IO_WRITE << 30) | (len(args) << 26) | ctl
    check(lib.uc_ctl(_ptr(uch), ctypes.c_int(code), *args))


def flush_tb(uch: int) -> None:
    """Drop every translated block (hooks are compiled into blocks)."""
    _ctl_write(uch, C.CTL_TB_FLUSH)


def flush_tlb(uch: int) -> None:
    """Drop every TLB entry (the next access to each page refills it)."""
    _ctl_write(uch, C.CTL_TLB_FLUSH)


def set_cpu_model(uch: int, model: int) -> None:
    """Choose the engine's CPU model (a UC_CPU_X86_* value); only before its first use."""
    _ctl_write(uch, C.CTL_CPU_MODEL, ctypes.c_int(model))


def set_tlb_virtual(uch: int) -> None:
    """Let a UC_HOOK_TLB_FILL callback map guest pages (x86 paging stays off)."""
    _ctl_write(uch, C.CTL_TLB_TYPE, ctypes.c_int(C.TLB_VIRTUAL))


def set_tcg_buffer_size(uch: int, size: int) -> None:
    """Size the engine's translation cache (Unicorn reserves 1 GiB by default)."""
    _ctl_write(uch, C.CTL_TCG_BUFFER_SIZE, ctypes.c_uint32(size))


def hook_add(uch: int, kind: int, callback: int, user_data: int | None = None,
             *extra: object) -> int:
    """Register callback (a C function address) for kind; returns the hook handle."""
    h = _size()
    check(lib.uc_hook_add(_ptr(uch), ctypes.byref(h), ctypes.c_int(kind), _ptr(callback),
                          _ptr(user_data), _u64(1), _u64(0), *extra))
    return h.value


def hook_del(uch: int, handle: int) -> None:
    """Remove a hook."""
    check(lib.uc_hook_del(uch, handle))


class _Region(ctypes.Structure):
    _fields_ = [("begin", _u64), ("end", _u64), ("perms", _u32)]


def mem_regions(uch: int) -> list[tuple[int, int, int]]:
    """The engine's mapped regions as (begin, end inclusive, perms)."""
    regions = ctypes.POINTER(_Region)()
    count = _u32()
    check(lib.uc_mem_regions(uch, ctypes.byref(regions), ctypes.byref(count)))
    try:
        return [(regions[i].begin, regions[i].end, regions[i].perms) for i in range(count.value)]
    finally:
        lib.uc_free(ctypes.cast(regions, _ptr))


class Context:
    """A saved CPU state (uc_context), freed when collected."""

    __slots__ = ("ptr", "size")

    def __init__(self, uch: int) -> None:
        p = _ptr()
        check(lib.uc_context_alloc(uch, ctypes.byref(p)))
        self.ptr: int = p.value or 0
        self.size: int = lib.uc_context_size(uch)

    @classmethod
    def saved(cls, uch: int) -> Context:
        """A new context holding the engine's current CPU state."""
        ctx = cls(uch)
        check(lib.uc_context_save(uch, ctx.ptr))
        return ctx

    def restore(self, uch: int) -> None:
        """Load this state into the engine's CPU."""
        check(lib.uc_context_restore(uch, self.ptr))

    def reg_write(self, reg_id: int, value: int) -> None:
        """Set one 8-byte register in the saved state."""
        v = _u64(value & 0xFFFF_FFFF_FFFF_FFFF)
        check(lib.uc_context_reg_write(self.ptr, reg_id, ctypes.byref(v)))

    def __del__(self) -> None:
        if self.ptr:
            lib.uc_context_free(self.ptr)
            self.ptr = 0
