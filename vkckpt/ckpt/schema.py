"""The types of the scalar fields of every structural image record, checked before a thaw.

The loaders check what they build from (buffers, VMAs, registers, wait queues, pages); this
table catches the rest: a hostile image that gives a flag word as a string, a pid as a list
or a signal number out of range would otherwise thaw and fail later, inside the run, with a
Python error instead of an ImageError. Fields not listed are checked by their loaders.

A type is a name (`u64`, `i64`, `u32`, `i32`, `sig`, `bool`, `str`, `bytes`, `list`), a
name with a leading ``?`` (None allowed), a list ``[T]`` (each item T), a tuple of types (a
list of exactly that many items), a dict (a nested record) or ``Maybe(T)`` (None or T).
"""

from __future__ import annotations

from vkckpt.errors import ImageError

_RANGES = {"u64": (0, 1 << 64), "i64": (-(1 << 63), 1 << 63), "u32": (0, 1 << 32),
           "i32": (-(1 << 31), 1 << 31), "sig": (0, 65)}


class Maybe:
    """None, or a value of the wrapped type."""

    def __init__(self, kind: object) -> None:
        self.kind = kind


_SIGINFO = {"signo": "sig", "code": "i32", "errno": "i32", "pid": "i32", "uid": "u32",
            "status": "i32", "addr": "u64", "value": "u64"}
_ARGS = ("u64",) * 6  # a syscall's six argument registers
_SLEEP = {"queue": "?list", "deadline": "?u64", "timeout_result": "i64",
          "restartable": "bool", "nr": "u64", "args": _ARGS, "seq": "u64", "timer": "u64"}

SCHEMA: dict[str, dict[str, object]] = {
    "kernel": {"exit_status": "?i32", "idle_ns": "u64", "init_pid": "u32", "max_processes": "u32",
               "max_threads": "u32", "memory_limit": "u64", "next_bid": "u64",
               "next_ino": "u64", "next_pid": "u32", "next_pipe": "u64", "quantum": "u64",
               "rng_counter": "u64", "root": "str", "runq": ["u32"], "seed": "u64",
               "sleep_seq": "u64", "statuses": [("u32", "i32")], "ticks": "u64",
               "timer_seq": "u64", "timers": [("u64", "u64", "u32")], "enosys": ["u64"]},
    "buffer": {"bid": "u64", "size": "u64"},
    "pipe": {"id": "u64", "data": "bytes"},
    "file": {"id": "u64", "kind": "str", "flags": "u32", "stream": "u32", "pipe": "u64",
             "path": "str", "offset": "i64"},
    "process": {"pid": "u32", "ppid": "u32", "pgid": "u32", "sid": "u32", "umask": "u32",
                "cwd": "str", "exe": "str", "argv": ["bytes"], "children": ["u32"],
                "exiting": "bool", "zombie": "bool", "wait_status": "i32", "exit_signal": "sig",
                "stopped": "bool", "stop_report": "?u32", "ticks": "u64", "vfork_parent": "u32",
                "threads": ["u32"], "fds": [("u32", "u64", "u32")],
                "actions": [("sig", "u64", "u64", "u64", "u64")], "pending": [_SIGINFO]},
    "vmspace": {"pid": "u32", "brk": "u64", "brk_start": "u64"},
    "thread": {"tid": "u32", "pid": "u32", "state": "str", "sigmask": "u64",
               "pending": [_SIGINFO], "altstack": ("u64", "i32", "u64"),
               "clear_child_tid": "u64", "robust_list": ("u64", "u64"), "sleep": Maybe(_SLEEP),
               "wake_result": "?i64", "retry": "bool", "retry_call": ("u64", ["u64"]),
               "restart_nr": "?u64", "saved_sigmask": "?u64", "ticks": "u64",
               "exit_code": "i32", "ckpt_frames": ["u64"], "futex_bitset": "u32",
               "retry_deadline": "?u64"},
    "waitq": {"key": "list", "tids": ["u32"]},
}


def _ok(value: object, kind: object) -> bool:
    if isinstance(kind, Maybe):
        return value is None or _ok(value, kind.kind)
    if isinstance(kind, dict):
        return isinstance(value, dict) and all(k not in value or _ok(value[k], t)
                                               for k, t in kind.items())
    if isinstance(kind, list):
        return isinstance(value, list) and all(_ok(v, kind[0]) for v in value)
    if isinstance(kind, tuple):
        return isinstance(value, list) and len(value) == len(kind) and \
            all(_ok(v, t) for v, t in zip(value, kind, strict=True))
    name = str(kind)
    if name.startswith("?"):
        return value is None or _ok(value, name[1:])
    if name in _RANGES:
        lo, hi = _RANGES[name]
        return isinstance(value, int) and not isinstance(value, bool) and lo <= value < hi
    return isinstance(value, {"bool": bool, "str": str, "bytes": bytes, "list": list}[name])


def check(rtype: str, fields: dict) -> None:
    """Raise ImageError when a field of a record of type rtype has the wrong type or range."""
    for name, kind in SCHEMA.get(rtype, {}).items():
        if name in fields and not _ok(fields[name], kind):
            raise ImageError(f"{rtype} record: field {name} is malformed "
                             f"({_short(fields[name])})")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
