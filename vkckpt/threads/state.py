"""Save and load threads as plain records (no runtime object ever imports msgpack)."""

from __future__ import annotations

from vkckpt.abi.limits import MAX_RW_COUNT
from vkckpt.abi.syscalls import NUMBERS
from vkckpt.engine import regs as R
from vkckpt.errors import ImageError
from vkckpt.fieldtypes import Maybe
from vkckpt.image.migrate import migration
from vkckpt.signals.state import PENDING_SCHEMA, load_pending, save_pending
from vkckpt.threads.thread import Sleep, Thread, ThreadState
from vkckpt.threads.wait import WaitQueue

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.process import Process

#: Thread fields not saved as such, and why.
TRANSIENT = {"process": "saved as the pid", "ctx": "saved as regs",
             "waker": "installed again by the kernel that registers the thread"}

THREAD_VERSION = 2  # 2: progress
WAITQ_VERSION = 1
#: The calls that sleep with part of their bytes written (syscalls/progress.py).
_WRITES = {NUMBERS[n] for n in ("write", "writev", "sendto", "sendmsg")}
_ARGS = ("u64",) * 6  # a syscall's six argument registers
_SLEEP = {"queue": "?list", "deadline": "?u64", "timeout_result": "?i64",
          "restartable": "bool", "nr": "u64", "args": _ARGS, "seq": "u64", "timer": "u64"}
#: The type/range tables ckpt/schema.py checks (the registers are checked by load_regs).
THREAD_SCHEMA = {"tid": "u32", "pid": "u32", "state": "str", "sigmask": "u64",
                 "pending": PENDING_SCHEMA, "altstack": ("u64", "i32", "u64"),
                 "clear_child_tid": "u64", "robust_list": ("u64", "u64"),
                 "sleep": Maybe(_SLEEP), "wake_result": "?i64", "retry": "bool",
                 "retry_call": ("u64", ["u64"]), "restart_nr": "?u64",
                 "saved_sigmask": "?u64", "ticks": "u64", "exit_code": "i32",
                 "ckpt_frames": ["u64"], "futex_bitset": "u32", "retry_deadline": "?u64",
                 "progress": "u64"}
WAITQ_SCHEMA = {"key": "list", "tids": ["u32"]}
RECORDS = {"thread": (THREAD_VERSION, THREAD_SCHEMA), "waitq": (WAITQ_VERSION, WAITQ_SCHEMA)}


def save_regs(st: dict[str, int]) -> dict[str, int | bytes]:
    """Registers by name; wide ones (x87, XMM) as little-endian bytes of their width."""
    out: dict[str, int | bytes] = {}
    for name in R.ALL_REGS:
        v = st[name]
        out[name] = v.to_bytes(R.WIDTH[name], "little") if name in R.WIDTH else v
    return out


def load_regs(d: dict) -> dict[str, int]:
    """Inverse of save_regs, checking names, types and widths."""
    if not isinstance(d, dict) or set(d) != set(R.ALL_REGS):
        missing = set(R.ALL_REGS) - set(d) if isinstance(d, dict) else set(R.ALL_REGS)
        raise ImageError(f"register set is incomplete or has unknown names (missing: "
                         f"{', '.join(sorted(missing)) or 'none'})")
    out = {}
    for name in R.ALL_REGS:
        v = d[name]
        if name in R.WIDTH:
            if not isinstance(v, bytes) or len(v) != R.WIDTH[name]:
                raise ImageError(f"register {name} must be {R.WIDTH[name]} bytes")
            out[name] = int.from_bytes(v, "little")
        else:
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 64:
                raise ImageError(f"register {name} is not a 64-bit unsigned integer")
            out[name] = v
    return out


def save_thread(t: Thread, regs: dict[str, int]) -> dict:
    """Every field of t, by name."""
    s = t.sleep
    return {
        "tid": t.tid, "pid": t.process.pid, "state": t.state.value, "sigmask": t.sigmask,
        "pending": save_pending(t.pending), "altstack": list(t.altstack),
        "clear_child_tid": t.clear_child_tid, "robust_list": list(t.robust_list),
        "sleep": None if s is None else {
            "queue": None if s.queue is None else list(s.queue.key), "deadline": s.deadline,
            "timeout_result": s.timeout_result, "restartable": s.restartable, "nr": s.nr,
            "args": list(s.args), "seq": s.seq, "timer": s.timer},
        "wake_result": t.wake_result, "retry": t.retry,
        "retry_call": [t.retry_call[0], list(t.retry_call[1])], "restart_nr": t.restart_nr,
        "saved_sigmask": t.saved_sigmask, "ticks": t.ticks, "exit_code": t.exit_code,
        "ckpt_frames": list(t.ckpt_frames), "futex_bitset": t.futex_bitset,
        "retry_deadline": t.retry_deadline, "progress": t.progress, "regs": save_regs(regs),
    }


def load_thread(d: dict, p: Process, queues: dict[tuple, WaitQueue]) -> tuple[Thread,
                                                                               dict[str, int]]:
    """A Thread from its record (sleep queues looked up or created in `queues`)."""
    t = Thread(d["tid"], p, state=ThreadState(d["state"]), sigmask=d["sigmask"],
               pending=load_pending(d["pending"]), altstack=tuple(d["altstack"]),
               clear_child_tid=d["clear_child_tid"], robust_list=tuple(d["robust_list"]),
               wake_result=d["wake_result"], retry=d["retry"],
               retry_call=(d["retry_call"][0], tuple(d["retry_call"][1])),
               restart_nr=d["restart_nr"], saved_sigmask=d["saved_sigmask"], ticks=d["ticks"],
               exit_code=d["exit_code"], ckpt_frames=list(d["ckpt_frames"]),
               futex_bitset=d["futex_bitset"], retry_deadline=d.get("retry_deadline"),
               progress=d["progress"])
    if t.retry and len(t.retry_call[1]) != 6:
        raise ImageError(f"thread {t.tid}: the call to run again lacks its arguments")
    s = d["sleep"]
    if s is not None:
        q = None
        if s["queue"] is not None:
            key = tuple(s["queue"])
            q = queues.get(key) or queues.setdefault(key, WaitQueue(key))
        t.sleep = Sleep(q, s["deadline"], s["timeout_result"], s["restartable"], s["nr"],
                        tuple(s["args"]), s["seq"], s["timer"])
    call = t.sleep.nr if t.sleep is not None else t.retry_call[0] if t.retry else None
    if t.progress and (call not in _WRITES or t.progress >= MAX_RW_COUNT):
        raise ImageError(f"thread {t.tid}: {t.progress} bytes of a write done, with no write "
                         f"waiting to go on or more than one write moves")
    return t, load_regs(d["regs"])


@migration("thread", 1)
def _thread_v1(fields: dict) -> dict:
    """thread v1 -> v2: no write had written part of its bytes before sleeping."""
    if "progress" in fields:
        raise ValueError("a version 1 thread holds a progress count")
    return {**fields, "progress": 0}
