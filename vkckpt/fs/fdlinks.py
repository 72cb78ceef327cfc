"""/dev/stdin, /dev/stdout, /dev/stderr and /dev/fd/N: names of a process's own descriptors.

On Linux they are symbolic links into /proc/self/fd, whose entries reopen the file behind
the descriptor.  The vkernel answers them itself: opening one gives a new description of a
file of the guest root (its own offset, as Linux does) and the same description for
anything else (pipes, the console, devices, directories); stat describes the file behind.
"""

from __future__ import annotations

_NAMED = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
_PREFIXES = ("/dev/fd/",)  # /proc/self/fd/N is fs/procfs.py's


def fd_link(guest: str) -> int | None:
    """The descriptor a path names this way, or None for any other path."""
    n = _NAMED.get(guest)
    if n is not None:
        return n
    for prefix in _PREFIXES:
        if guest.startswith(prefix):
            digits = guest[len(prefix):]
            if digits.isdigit() and digits.isascii() and len(digits) <= 10:
                return int(digits)
    return None
