"""Exactness and determinism of BlockCounter (native C hook and Python fallback)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn import x86_const as X

from vkckpt.engine.preempt import UNLIMITED, BlockCounter, native_available

CODE, DATA = 0x100000, 0x200000

# xor eax,eax; 1: add rax,1; dec rcx; jnz 1b
# One block per iteration; the first block also holds the xor.
ALU = bytes.fromhex("31c04883c00148ffc975f7")
ALU_LOOP = CODE + 2

# xor eax,eax; mov rdi,0x200000
# 1: mov [rdi],rax; add rax,1; mov [rdi+8],rcx; add rdi,16; and rdi,0x200ff0; dec rcx; jnz 1b
STORE = bytes.fromhex("31c048c7c7000020004889074883c00148894f084883c7104881e7f00f200048ffc975e5")

# xor eax,eax; mov rbx,SEED; mov rdi,0x200000
# 3: rbx ^= rbx<<13; rbx ^= rbx>>7; rbx ^= rbx<<17 (through rdx); test rbx,1; jz 4f
#    add rax,rbx; mov rdx,rbx; and rdx,0xff8; mov [rdi+rdx],rax; jmp 5f
# 4: sub rax,3; test rbx,6; jz 5f
#    inc r8; test rbx,8; jnz 5f
#    call 6f
# 5: dec rcx; jnz 3b; jmp 7f
# 6: inc r9; ret
# 7:
BRANCHY = bytes.fromhex(
    "31c048bb157c4a7fb979379e48c7c7000020004889da48c1e20d4831d34889da48c1ea07"
    "4831d34889da48c1e2114831d348f7c30100000074134801d84889da4881e2f80f0000"
    "48890417eb1e4883e80348f7c306000000741149ffc048f7c3080000007505e8070000"
    "0048ffc975a3eb0449ffc1c3"
)
BRANCHY_SEED = 0x9E3779B97F4A7C15

# mov rsi,0x200000; mov rdi,0x200800; mov ecx,100; rep movsb; nop (a block per iteration)
REP = bytes.fromhex("48c7c60000200048c7c700082000b964000000f3a490")

SNIPPETS = {"alu": ALU, "store": STORE, "branchy": BRANCHY, "rep": REP}
REGS = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags",
)  # fmt: skip

MODES = [
    pytest.param(
        False,
        id="native",
        marks=pytest.mark.skipif(not native_available(), reason="_blockhook not built"),
    ),
    pytest.param(True, id="python"),
]


def make(code: bytes, n: int = 1000) -> tuple[Uc, int]:
    """A fresh engine with ``code`` at CODE, RCX = n, a stack in DATA; returns (uc, end)."""
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(CODE, 0x1000)
    uc.mem_map(DATA, 0x1000)
    uc.mem_write(CODE, code)
    uc.reg_write(X.UC_X86_REG_RCX, n)
    uc.reg_write(X.UC_X86_REG_RSP, DATA + 0x1000)
    return uc, CODE + len(code)


def reg(uc: Uc, name: str) -> int:
    return uc.reg_read(getattr(X, f"UC_X86_REG_{name.upper()}"))


def state(uc: Uc) -> tuple[tuple[int, ...], bytes]:
    return tuple(reg(uc, r) for r in REGS), bytes(uc.mem_read(DATA, 0x1000))


Stop = tuple[int, int, bool]


def run(
    code: bytes,
    n: int,
    budget: Callable[[], int] | None,
    force_python: bool,
) -> tuple[tuple[tuple[int, ...], bytes], int, list[Stop]]:
    """Run to the end, re-arming with ``budget()`` at every stop (None: one unarmed run)."""
    uc, end = make(code, n)
    bc = BlockCounter(uc._uch.value, force_python=force_python)
    stops: list[Stop] = []
    pc = CODE
    while True:
        if budget is not None:
            bc.arm(budget())
        uc.emu_start(pc, end)
        pc = reg(uc, "rip")
        stops.append((pc, bc.total, bc.expired))
        if not bc.expired:
            break
        assert len(stops) < 1_000_000
    assert pc == end
    return state(uc), bc.total, stops


def budgets(seed: int, choices: list[int]) -> Callable[[], int]:
    """A repeatable sequence of budgets drawn from ``choices``."""
    rng = random.Random(seed)
    return lambda: rng.choice(choices)


def branchy_blocks(n: int) -> int:
    """Blocks BRANCHY executes for n iterations, from a model of its control flow."""
    mask = (1 << 64) - 1
    b, total = BRANCHY_SEED, 1  # the final "jmp 7f" block
    for _ in range(n):
        b ^= (b << 13) & mask
        b ^= b >> 7
        b ^= (b << 17) & mask
        if b & 1 or not b & 6:
            total += 3  # head, odd/even block, "5:"
        elif b & 8:
            total += 4  # head, even, "inc r8" block, "5:"
        else:
            total += 6  # head, even, "inc r8", "call", "6:", "5:"
    return total


@pytest.mark.parametrize("force_python", MODES)
def test_backend_selection(force_python: bool) -> None:
    uc, _ = make(ALU)
    bc = BlockCounter(uc._uch.value, force_python=force_python)
    assert bc.native is (not force_python)
    bc.close()


@pytest.mark.parametrize("force_python", MODES)
@pytest.mark.parametrize("budget", [1, 2, 7, 100, 999])
def test_stop_block_does_not_execute(force_python: bool, budget: int) -> None:
    uc, end = make(ALU, 1000)
    bc = BlockCounter(uc._uch.value, force_python=force_python)
    bc.arm(budget)
    uc.emu_start(CODE, end)
    assert bc.expired and bc.remaining == 0
    assert bc.total == budget
    assert reg(uc, "rax") == budget  # exactly `budget` loop iterations ran
    assert reg(uc, "rcx") == 1000 - budget
    assert reg(uc, "rip") == ALU_LOOP  # stopped at the entry of the next block


@pytest.mark.parametrize("force_python", MODES)
@pytest.mark.parametrize(
    ("name", "n", "blocks"),
    [("alu", 1000, 1000), ("store", 1000, 1000), ("branchy", 3000, branchy_blocks(3000))],
)
def test_total_is_exact(force_python: bool, name: str, n: int, blocks: int) -> None:
    _, total, stops = run(SNIPPETS[name], n, None, force_python)
    assert total == blocks
    assert stops == [(CODE + len(SNIPPETS[name]), blocks, False)]


@pytest.mark.parametrize("force_python", MODES)
@pytest.mark.parametrize("name", ["alu", "store", "branchy", "rep"])
def test_chopped_equals_single_run(force_python: bool, name: str) -> None:
    code = SNIPPETS[name]
    single_state, single_total, _ = run(code, 2000, None, force_python)
    for seed in range(3):
        st, total, stops = run(code, 2000, budgets(seed, [1, 2, 3, 5, 17, 60]), force_python)
        assert (st, total) == (single_state, single_total)
        assert len(stops) >= 2
    st, total, stops = run(code, 2000, lambda: 1, force_python)
    assert (st, total) == (single_state, single_total)
    assert len(stops) == single_total  # one block per quantum; the last ends at `end`


@pytest.mark.parametrize("force_python", MODES)
def test_repeatable(force_python: bool) -> None:
    def chopped() -> tuple[object, ...]:
        rng = random.Random(42)
        return run(BRANCHY, 3000, lambda: rng.randint(1, 300), force_python)

    assert chopped() == chopped()


@pytest.mark.skipif(not native_available(), reason="_blockhook not built")
@pytest.mark.parametrize("name", ["alu", "store", "branchy", "rep"])
def test_native_matches_python(name: str) -> None:
    def chopped(force_python: bool) -> tuple[object, ...]:
        rng = random.Random(7)
        return run(SNIPPETS[name], 1500, lambda: rng.randint(1, 50), force_python)

    assert chopped(False) == chopped(True)


@pytest.mark.parametrize("force_python", MODES)
def test_rep_iterations_are_preemptible(force_python: bool) -> None:
    uc, end = make(REP)
    bc = BlockCounter(uc._uch.value, force_python=force_python)
    bc.arm(10)
    uc.emu_start(CODE, end)
    assert bc.expired
    assert reg(uc, "rip") == CODE + len(REP) - 3  # at the rep movsb, part-way through
    assert 0 < reg(uc, "rcx") < 100


@pytest.mark.parametrize("force_python", MODES)
def test_unarmed_counts_and_spent_budget_stops_at_once(force_python: bool) -> None:
    uc, end = make(ALU, 50)
    bc = BlockCounter(uc._uch.value, force_python=force_python)
    assert bc.remaining == UNLIMITED and not bc.expired
    bc.arm(10)
    uc.emu_start(CODE, end)
    assert (bc.total, bc.expired) == (10, True)
    uc.emu_start(ALU_LOOP, end)  # not re-armed: stops before the first block
    assert (bc.total, reg(uc, "rip"), reg(uc, "rax")) == (10, ALU_LOOP, 10)
    bc.disarm()
    uc.emu_start(ALU_LOOP, end)
    assert (bc.total, bc.expired, reg(uc, "rip"), reg(uc, "rax")) == (50, False, end, 50)


@pytest.mark.parametrize("force_python", MODES)
def test_total_is_writable(force_python: bool) -> None:
    uc, end = make(ALU, 100)
    bc = BlockCounter(uc._uch.value, force_python=force_python)
    bc.total = 1_000_000
    bc.arm(30)
    uc.emu_start(CODE, end)
    assert bc.total == 1_000_030
    with pytest.raises(ValueError):
        bc.total = -1


@pytest.mark.parametrize("force_python", MODES)
def test_counter_added_after_code_was_translated(force_python: bool) -> None:
    uc, end = make(ALU, 100)
    uc.emu_start(CODE, end)  # translation cache now holds hook-less blocks
    uc.reg_write(X.UC_X86_REG_RCX, 100)
    bc = BlockCounter(uc._uch.value, force_python=force_python)
    bc.arm(40)
    uc.emu_start(CODE, end)
    assert (bc.total, bc.expired, reg(uc, "rax")) == (40, True, 40)


@pytest.mark.parametrize("force_python", MODES)
def test_close(force_python: bool) -> None:
    uc, end = make(ALU, 100)
    bc = BlockCounter(uc._uch.value, force_python=force_python)
    uc.emu_start(CODE, end)
    assert bc.total == 100
    bc.close()
    bc.close()
    uc.reg_write(X.UC_X86_REG_RCX, 100)
    uc.emu_start(CODE, end)
    assert bc.total == 100 and reg(uc, "rax") == 100


def test_two_counters_on_two_engines_are_independent() -> None:
    (u1, e1), (u2, e2) = make(ALU, 100), make(STORE, 100)
    c1, c2 = BlockCounter(u1._uch.value), BlockCounter(u2._uch.value)
    c1.arm(5)
    c2.arm(9)
    u1.emu_start(CODE, e1)
    u2.emu_start(CODE, e2)
    assert (c1.total, c2.total) == (5, 9)


@pytest.mark.parametrize("budget", [0, -1, UNLIMITED])
def test_arm_rejects_bad_budget(budget: int) -> None:
    uc, _ = make(ALU)
    with pytest.raises(ValueError):
        BlockCounter(uc._uch.value, force_python=True).arm(budget)


def test_falls_back_when_extension_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from vkckpt.engine import preempt

    monkeypatch.setattr(preempt, "_native_callback", lambda: None)
    uc, end = make(ALU, 100)
    bc = BlockCounter(uc._uch.value)
    assert not bc.native
    bc.arm(7)
    uc.emu_start(CODE, end)
    assert (bc.total, reg(uc, "rax")) == (7, 7)
