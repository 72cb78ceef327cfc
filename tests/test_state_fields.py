"""Three tests stand in for a code generator (STYLE.md): every runtime field is saved or
declared transient (this file); freeze -> thaw -> freeze is byte-identical and old images
still thaw (test_freeze_thaw.py, tests/data via test_regress.py)."""

from __future__ import annotations

from vkckpt import kernel_state, process_state, sched_state
from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.process import Process
from vkckpt.record import field_names
from vkckpt.runner import boot
from vkckpt.signals.pending import SigInfo
from vkckpt.signals.state import _INFO_FIELDS
from vkckpt.threads import state as tstate
from vkckpt.threads.thread import Sleep, Thread
from vkckpt.vmspace import state as vstate


def _kernel(make_root):
    root = make_root("pthreads")
    return boot(KernelConfig(root=str(root), stdout=lambda b: None,
                             processes=[ProcessSpec("/pthreads", ["pthreads"])]))


def test_every_thread_field_is_saved_or_transient(make_root) -> None:
    k = _kernel(make_root)
    t = k.threads[1]
    saved = set(tstate.save_thread(t, t.process.engine.get_state()))
    for f in field_names(Thread):
        name = {"process": "pid"}.get(f, f)
        assert name in saved or f in tstate.TRANSIENT, f"Thread.{f} is not saved"


def test_every_sleep_and_siginfo_field_is_saved() -> None:
    sleep_keys = {"queue", "deadline", "timeout_result", "restartable", "nr", "args", "seq",
                  "timer"}
    assert set(field_names(Sleep)) == sleep_keys
    assert set(field_names(SigInfo)) - {"extra"} == set(_INFO_FIELDS)


def test_every_process_field_is_saved_or_transient(make_root) -> None:
    k = _kernel(make_root)
    p = k.procs[1]
    p.rlimits.set(4, 0, 0)  # rlimits is written only when a limit differs from its default
    fids = {id(f): i for i, (f, _) in enumerate(p.fds.fds.values())}
    saved = set(process_state.save(p, fids, None))
    for f in field_names(Process):
        assert f in saved or f in process_state.TRANSIENT or f in process_state.OPTIONAL \
            or f in process_state.SOMETIMES, f"Process.{f} is not saved"
    for f, value in process_state.OPTIONAL.items():  # saved once it holds something
        setattr(p, f, value)
        assert process_state.save(p, fids, None)[f] == value, f"Process.{f} is not saved"


def test_every_kernel_and_vmspace_attribute_is_saved_or_transient(make_root) -> None:
    k = _kernel(make_root)
    k.exec_env = {b"FANOUT": b"1"}  # saved only when set (vkckpt fanout --vary env)
    saved = set(kernel_state.save(k, None, []))
    for name in vars(k):
        assert name in saved or name in kernel_state.TRANSIENT, f"VKernel.{name} unsaved"
    for name in vars(k.sched):
        assert name.lstrip("_") in saved or name in sched_state.TRANSIENT, f"sched.{name}"
    for name in k.ids.__slots__:
        assert name in saved, f"Ids.{name} unsaved"
    vsaved = set(vstate.save_vmspace(k.procs[1].vm))
    for name in vars(k.procs[1].vm):
        assert name in vsaved or name in vstate.TRANSIENT or name == "vmas", f"VmSpace.{name}"
