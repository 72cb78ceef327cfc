"""TEST ONLY: restore bugs planted on purpose, so the regression suite (`vkckpt regress`) can
prove that it notices and bisects one.

VKCKPT_TEST_FAULT names the fault; `install_from_env()` plants it (through restore's
after-load hook) in `vkckpt regress`, in its worker processes and in the `vkckpt thaw`
processes it starts, which inherit the variable.  `drop-register:NAME` zeroes register
NAME of every thread once it is loaded, `flip-page` flips the first byte of the first page
laid down.
"""

from __future__ import annotations

import os

from vkckpt.abi.mman import PAGE
from vkckpt.ckpt import restore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from vkckpt.ckpt.lay_pages import Laid
    from vkckpt.kernel import VKernel
    from vkckpt.vmspace.hostmem import HostBuffer

DROP_REGISTER = "drop-register:"
FLIP_PAGE = "flip-page"
_installed: set[str] = set()


def install_from_env() -> None:
    """Plant the fault VKCKPT_TEST_FAULT names, if any, in this process."""
    fault = os.environ.get("VKCKPT_TEST_FAULT", "")
    if fault:
        install(fault)


def install(fault: str) -> None:
    """Plant the named fault in every later thaw of this process, once however often this
    is called (unknown names: none)."""
    if fault in _installed:
        return
    _installed.add(fault)
    if fault.startswith(DROP_REGISTER):
        name = fault[len(DROP_REGISTER):]
        restore.add_after_load(lambda k, bufs, laid: _drop_register(k, name))
    elif fault == FLIP_PAGE:
        restore.add_after_load(_flip_page)


def _drop_register(k: VKernel, name: str) -> None:
    """Zero register name of every thread (the last one of each process stays loaded)."""
    for t in k.threads.values():
        t.load()
        regs = t.process.engine.get_state()
        if name in regs:
            regs[name] = 0
            t.process.engine.set_state(regs)


def _flip_page(k: VKernel, bufs: dict[int, HostBuffer], laid: Laid) -> None:
    """Flip the first byte of the first page laid down."""
    for bid, runs in laid.items():
        if runs:
            bufs[bid].view[runs[0][0] * PAGE] ^= 0xFF
            return
