"""The system call table: its argument counts are what the handlers take."""

from __future__ import annotations

import inspect

from vkckpt.syscalls.table import ENTRIES


def test_nargs_matches_each_handlers_signature() -> None:
    # table.py counts arguments with __code__.co_argcount (inspect costs milliseconds at start)
    for e in ENTRIES:
        assert e.nargs == len(inspect.signature(e.handler).parameters) - 2, e.name
        assert 0 <= e.nargs <= 6, e.name
