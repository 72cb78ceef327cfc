"""Every record type's version and field types, collected from the state modules; checked
before a thaw.

Each type's saved form declares its own piece beside it (kernel_state.py, sched_state.py,
process_state.py, threads/state.py, vmspace/state.py, fs/state.py, fs/lock_state.py,
signals/state.py); this module only collects them.  The loaders check what they build from
(buffers, VMAs, registers, wait queues, pages); this table catches the rest: a hostile
image that gives a flag word as a string, a pid as a list or a signal number out of range
would otherwise thaw and fail later, inside the run, with a Python error instead of an
ImageError.  Fields not listed are checked by their loaders.  The type grammar is
vkckpt/fieldtypes.py's.
"""

from __future__ import annotations

from vkckpt import kernel_state, process_state
from vkckpt.ckpt import pages
from vkckpt.engine import cpu_state
from vkckpt.errors import ImageError
from vkckpt.fieldtypes import Maybe
from vkckpt.fs import lock_state
from vkckpt.fs import state as fs_state
from vkckpt.threads import state as threads_state
from vkckpt.vmspace import state as vmspace_state

_RANGES = {"u64": (0, 1 << 64), "i64": (-(1 << 63), 1 << 63), "u32": (0, 1 << 32),
           "i32": (-(1 << 31), 1 << 31), "sig": (0, 65)}
#: The meta record (ticks, the parent's file name, process count): not critical, not checked.
_META = {"meta": (1, {})}
#: Record type -> (version, field types), in the order images hold them.
RECORDS: dict[str, tuple[int, dict[str, object]]] = {
    **_META, **kernel_state.RECORDS, **cpu_state.RECORDS, **vmspace_state.RECORDS,
    **fs_state.RECORDS, **process_state.RECORDS, **threads_state.RECORDS, **lock_state.RECORDS,
    **pages.RECORDS}
#: Record types and the versions this vkckpt writes and reads.
RECORD_VERSIONS = {rtype: version for rtype, (version, _) in RECORDS.items()}
SCHEMA = {rtype: fields for rtype, (_, fields) in RECORDS.items() if fields}


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
