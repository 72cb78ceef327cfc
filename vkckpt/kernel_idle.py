"""What the run loop does when no guest thread can run: jump the virtual clock, wait on
the outside world, or report a deadlock.

Virtual time never follows host time: with every thread asleep, the clock jumps to the
earliest timer (sched.skip_idle).  Only a run with published ports (fs/publish.py) can be
woken from outside.  It sleeps in select(2) on the host sockets and the host wake-up pipe
(host/wake.py, written when a freeze request is queued): for at most IDLE_WAIT seconds
when a timer is pending, so sleeping guests are not held up by a quiet network, and for as
long as it takes when nothing else could ever wake a guest.  Such a sleep costs no CPU.
"""

from __future__ import annotations

from vkckpt.abi.syscalls import NAMES as SYSCALL_NAMES
from vkckpt.errors import VkError

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.kernel import VKernel

IDLE_WAIT = 0.01  # seconds an idle run with published ports gives the host before a timer


class Deadlock(VkError):
    """Every live thread sleeps forever."""


def idle(k: VKernel) -> None:
    """Nothing is runnable: return when the loop should look again (virtual time jumped,
    or the host has something for the published ports or the control socket); Deadlock
    when nothing can ever wake a guest."""
    if k.publish.active:
        timer = k.sched.next_due() is not None
        if k.publish.wait(IDLE_WAIT if timer else None):
            return  # pumped at the next scheduling point
    if not k.sched.skip_idle():
        k.out.wait(0, None)
        raise Deadlock(deadlock_report(k))


def deadlock_report(k: VKernel) -> str:
    """The Deadlock message: each sleeping thread, its system call and its wait queue."""
    lines = ["deadlock: every guest thread is blocked and no timer is pending"]
    for t in k.threads.values():
        if t.alive and t.sleep is not None:
            name = SYSCALL_NAMES.get(t.sleep.nr, t.sleep.nr)
            where = t.sleep.queue.name if t.sleep.queue else "-"
            lines.append(f"  pid {t.process.pid} tid {t.tid}: {name} on {where}")
    return "\n".join(lines)
