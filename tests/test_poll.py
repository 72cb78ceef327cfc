"""poll(2) over several pipes: sleepers on the kernel's poll queue survive a freeze.

The guest's behaviour against native Linux is checked by test_differential (pollpipes);
here a run is frozen while its parent sleeps in poll(2), and the thaw must hold that sleeper
on the same queue and finish bit-identically.
"""

from __future__ import annotations

from vkckpt.ckpt.restore import ThawOptions, thaw
from vkckpt.ckpt.snapshot import write_image
from vkckpt.config import KernelConfig, ProcessSpec
from vkckpt.runner import boot


def _boot(root, out: list[bytes]):
    return boot(KernelConfig(root=str(root), stdout=out.append, stderr=out.append,
                             processes=[ProcessSpec("/pollpipes", ["pollpipes"])]))


def test_a_poll_sleeper_thaws_on_the_poll_queue(make_root) -> None:
    root = make_root("pollpipes")
    gold: list[bytes] = []
    k = _boot(root, gold)
    gold_status = k.run()
    gold_ticks = k.sched.ticks
    k.shutdown()

    out: list[bytes] = []
    k = _boot(root, out)
    while not k.poll_q.waiters:
        assert k.run(until_ticks=k.sched.ticks + 1000) is None, "the run never polled"
    sleepers = [t.tid for t in k.poll_q.waiters]
    image = root.parent / "poll.img"
    write_image(k, str(image))
    k.shutdown()

    after: list[bytes] = []
    k2 = thaw(str(image), ThawOptions(root=str(root), stdout=after.append,
                                      stderr=after.append))
    assert [t.tid for t in k2.poll_q.waiters] == sleepers
    assert all(t.sleep is not None and t.sleep.queue is k2.poll_q for t in k2.poll_q.waiters)
    assert k2.run() == gold_status
    assert b"".join(out + after) == b"".join(gold)
    assert k2.sched.ticks == gold_ticks
