"""The syscall hook (engine/sysentry.py) hands the kernel's entry RAX and the six arguments as
integers and leaves RAX, RCX and R11 as a real CPU does, in C and in the ctypes fallback."""

from __future__ import annotations

import ctypes
import mmap

import pytest

from vkckpt.engine import sysentry
from vkckpt.engine.engine import Engine, Stop

CODE = 0x400000
# mov eax,39; mov edi,1; mov esi,2; mov edx,3; mov r10d,4; mov r8d,5; mov r9d,6; syscall; hlt
PROGRAM = bytes.fromhex("b827000000 bf01000000 be02000000 ba03000000 41ba04000000"
                        " 41b805000000 41b906000000 0f05 f4")
SYSCALL_END = CODE + len(PROGRAM) - 1  # the hlt after the two-byte syscall


@pytest.fixture(params=["native", "python"])
def hook_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
              no_engine_pool: None) -> str:
    if request.param == "python":
        monkeypatch.setattr(sysentry, "native_symbol", lambda name: None)
    return request.param


def _run(entry) -> tuple[Engine, Stop, mmap.mmap]:  # noqa: ANN001
    e = Engine(entry)
    page = mmap.mmap(-1, 0x1000)
    page.write(PROGRAM)
    e.map_host(CODE, 0x1000, 5, ctypes.addressof(ctypes.c_char.from_buffer(page)))
    return e, e.run(CODE, 1000), page


def test_the_entry_gets_the_call_and_its_result_lands_in_rax(hook_kind: str) -> None:
    seen = []
    e, stop, _page = _run(lambda nr, args: (seen.append((nr, args)), (-38, False))[1])
    try:
        assert e.sys.native is (hook_kind == "native")
        assert seen == [(39, (1, 2, 3, 4, 5, 6))]
        assert stop is Stop.INTERRUPT  # ran on to the hlt (#GP at CPL 3)
        assert e.reg("rax") == (1 << 64) - 38
        assert e.reg("rcx") == SYSCALL_END and e.reg("r11") == e.reg("rflags")
    finally:
        e.close()


def test_stop_and_no_write_back(hook_kind: str) -> None:
    e, stop, _page = _run(lambda nr, args: (None, True))
    try:
        assert stop is Stop.SYSCALL
        assert e.reg("rax") == 39  # left as the handler set it
        assert e.reg("rip") == SYSCALL_END
    finally:
        e.close()


def test_an_exception_in_the_entry_reaches_run(hook_kind: str) -> None:
    def boom(nr: int, args: tuple[int, ...]) -> tuple[int | None, bool]:
        raise RuntimeError("handler bug")

    with pytest.raises(RuntimeError, match="handler bug"):
        _run(boom)
