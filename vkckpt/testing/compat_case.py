"""One case of the compatibility suite (testing/compat_cases.py, compat_dynamic.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    """One invocation: argv (argv[0] a guest path), stdin, the suite it belongs to, and why
    its vkernel run differs from the host's if it is a known difference.  A dynamic program
    names the host directories it needs bound read-only at the same guest paths (`binds`)
    and may add to the environment (`env`).  A slow case (python3 importing much of its
    library, each run tens of millions of blocks under the emulator) is left to
    `make compat` so that tests/test_compat.py stays within its time."""

    suite: str
    name: str
    argv: tuple[str, ...]
    stdin: bytes = b""
    known: str = ""  # why the outputs differ (named in vkckpt-abi(7))
    binds: tuple[str, ...] = ()  # host directories bound read-only at the same guest path
    env: tuple[tuple[str, str], ...] = ()  # added to the suite's environment
    slow: bool = False  # over ~5 s with two freezes: run by `make compat`, not by the tests
