"""The deterministic scheduler: round-robin over runnable threads, a virtual clock, sleep
timers, and kernel timer events (threads/ktimer.py: timerfds, interval timers)."""

from __future__ import annotations

import heapq
from collections import deque

from vkckpt.threads.thread import ThreadState
from vkckpt.vclock import KTIME_MAX, NS_PER_TICK

TYPE_CHECKING = False

if TYPE_CHECKING:
    from vkckpt.threads.ktimer import KTimer
    from vkckpt.threads.thread import Thread


class Scheduler:
    """Run queue and sleep timers.  Time is virtual: `ticks` (blocks executed) plus idle skips.

    Invariant: a thread is in `runq` at most once and only while RUNNABLE.
    """

    def __init__(self, quantum: int = 50_000) -> None:
        self.quantum = quantum
        self.runq: deque[Thread] = deque()
        self._queued: set[Thread] = set()  # runq's members, so enqueue is O(1)
        self.ticks = 0         # blocks executed by every thread
        self.idle_ns = 0       # virtual time skipped while every thread slept
        self.timers: list[tuple[int, int, Thread]] = []  # (deadline ns, seq, thread)
        self._timer_seq = 0
        self.events: list[tuple[int, int, KTimer]] = []  # (deadline ns, seq, kernel timer)

    def load_clock(self, ticks: int, idle_ns: int, timer_seq: int) -> None:
        """Take a thawed clock and timer sequence (sched_state.py checked them)."""
        self.ticks, self.idle_ns, self._timer_seq = ticks, idle_ns, timer_seq

    def load_queues(self, runq: list[Thread], timers: list[tuple[int, int, Thread]]) -> None:
        """Take a thawed run queue (in order) and live timers, once the threads exist."""
        self.runq.extend(runq)
        self._queued.update(runq)
        self.timers.extend(timers)
        self.timers.sort(key=lambda x: x[:2])  # a sorted list is a heap

    def now_ns(self, running: int = 0) -> int:
        """Monotonic virtual time; `running` adds blocks of the run in progress."""
        return (self.ticks + running) * NS_PER_TICK + self.idle_ns

    def enqueue(self, t: Thread) -> None:
        """Make t runnable at the tail of the queue."""
        t.state = ThreadState.RUNNABLE
        if t not in self._queued:
            self._queued.add(t)
            self.runq.append(t)

    def remove(self, t: Thread) -> None:
        if t in self._queued:
            self._queued.discard(t)
            self.runq.remove(t)

    def next(self) -> Thread | None:
        """Pop the next runnable thread (None when nothing can run)."""
        while self.runq:
            t = self.runq.popleft()
            self._queued.discard(t)
            if t.state is ThreadState.RUNNABLE:
                return t
        return None

    def take_all(self) -> list[Thread]:
        """Pop every runnable thread, in queue order (a round's members)."""
        out = [t for t in self.runq if t.state is ThreadState.RUNNABLE]
        self.runq.clear()
        self._queued.clear()
        return out

    def add_timer(self, deadline: int, t: Thread) -> None:
        """Arm t's sleep deadline; the entry is live while t.sleep.timer is its sequence."""
        self._timer_seq += 1
        t.sleep.timer = self._timer_seq
        heapq.heappush(self.timers, (deadline, self._timer_seq, t))

    def expired(self) -> list[Thread]:
        """Pop threads whose sleep deadline has passed (stale entries are skipped)."""
        now = self.now_ns()
        out = []
        while self.timers and self.timers[0][0] <= now:
            _, seq, t = heapq.heappop(self.timers)
            if t.sleep is not None and t.sleep.timer == seq:
                out.append(t)
        return out

    def next_due(self) -> int | None:
        """The earliest live sleep timer's or kernel timer event's deadline (None: none)."""
        while self.timers:
            deadline, seq, t = self.timers[0]
            if t.sleep is not None and t.sleep.timer == seq:
                break
            heapq.heappop(self.timers)
        while self.events and self.events[0][2].seq != self.events[0][1]:
            heapq.heappop(self.events)
        due = [h[0][0] for h in (self.timers, self.events) if h]
        due = [d for d in due if d < KTIME_MAX]  # a kernel timer there never fires
        return min(due) if due else None

    def skip_idle(self) -> bool:
        """Nothing runnable: jump virtual time to the earliest live sleep timer or kernel
        timer event. False if there is none."""
        due = self.next_due()
        if due is None:
            return False
        self.idle_ns += max(0, due - self.now_ns())
        return True

    # -- kernel timer events ------------------------------------------------------------------
    def arm(self, kt: KTimer, deadline: int, seq: int = 0) -> None:
        """Arm kernel timer kt at virtual `deadline` (replacing an earlier arming) with the
        next sequence, or with `seq` (a thaw re-arming what was armed at the freeze)."""
        if not seq:
            self._timer_seq += 1
            seq = self._timer_seq
        kt.deadline, kt.seq = deadline, seq
        heapq.heappush(self.events, (deadline, seq, kt))

    def fire_events(self) -> None:
        """Run every live kernel timer whose deadline has passed, in (deadline, seq) order;
        one an expiry re-arms in the past runs again in this call."""
        now = self.now_ns()
        while self.events and self.events[0][0] <= now:
            _, seq, kt = heapq.heappop(self.events)
            if kt.seq == seq:
                kt.seq = 0
                kt.expire()
