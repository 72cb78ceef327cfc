"""vkckpt's benchmarks (issue 6): ``python -m bench [--quick] [--json FILE] [--only NAME,...]``.

Every comparison is measured side by side in one run on this host; targets are checked and
shown in the table but never asserted (tests/test_bench.py only checks that numbers exist).
"""
