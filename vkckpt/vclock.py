"""The virtual clock's constants: what one tick is worth and where CLOCK_REALTIME starts.

Low in the layers so that files (mtimes), the scheduler and the time syscalls share them."""

NS_PER_TICK = 10                     # one translated block is 10 virtual ns
EPOCH_NS = 1_767_225_600 * 10**9     # 2026-01-01T00:00:00Z: CLOCK_REALTIME at tick 0
KTIME_MAX = (1 << 63) - 1            # Linux's ktime_t saturates here: a later time never comes
