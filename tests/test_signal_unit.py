"""Signal bookkeeping without a kernel: pending sets, dispositions, rt_sigframe and siginfo."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from vkckpt.abi import signals as S
from vkckpt.signals import frame as FR
from vkckpt.signals.actions import SigAction, SignalActions
from vkckpt.signals.pending import SIGINFO_SIZE, PendingSignals, SigInfo

ALL = (1 << S.NSIG) - 1
RT = S.SIGRTMIN_KERNEL
u64 = st.integers(0, (1 << 64) - 1)


def signos(p: PendingSignals) -> list[int]:
    return [i.signo for i in p.queue]


def drain(p: PendingSignals, allowed: int = ALL) -> list[SigInfo]:
    out = []
    while (info := p.take(allowed)) is not None:
        out.append(info)
    return out


# -- PendingSignals --------------------------------------------------------------------------


def test_standard_signals_coalesce():
    p = PendingSignals()
    first = SigInfo(S.SIGUSR1, pid=7)
    assert p.add(first)
    assert not p.add(SigInfo(S.SIGUSR1, pid=8))
    assert signos(p) == [S.SIGUSR1]
    assert p.mask == S.sigbit(S.SIGUSR1)
    assert p.take(ALL) is first  # the first sender's info is the one kept
    assert p.mask == 0 and p.take(ALL) is None
    assert p.add(SigInfo(S.SIGUSR1, pid=9))  # after delivery it can be pending again


def test_rt_signals_queue_in_order():
    p = PendingSignals()
    for v in (1, 2, 3):
        assert p.add(SigInfo(RT + 3, S.SI_QUEUE, value=v))
    assert p.add(SigInfo(S.NSIG, value=99))  # the highest RT signal, bit 63
    assert p.mask == S.sigbit(RT + 3) | 1 << 63
    got = [p.take(S.sigbit(RT + 3)).value for _ in range(2)]
    assert got == [1, 2]
    assert p.mask & S.sigbit(RT + 3)  # one instance still queued
    assert p.take(S.sigbit(RT + 3)).value == 3
    assert not p.mask & S.sigbit(RT + 3)
    assert p.take(ALL).signo == S.NSIG


def test_take_prefers_synchronous_faults_then_lowest_number():
    p = PendingSignals()
    for sig in (RT + 8, S.SIGUSR1, S.SIGTERM, S.SIGINT, S.SIGSEGV, S.SIGHUP, RT):
        p.add(SigInfo(sig))
    assert [i.signo for i in drain(p)] == [
        S.SIGSEGV, S.SIGHUP, S.SIGINT, S.SIGUSR1, S.SIGTERM, RT, RT + 8]


def test_take_lowest_synchronous_first():
    p = PendingSignals()
    for sig in (S.SIGHUP, S.SIGSEGV, S.SIGFPE, S.SIGILL):
        p.add(SigInfo(sig, code=1))
    assert [i.signo for i in drain(p)] == [S.SIGILL, S.SIGFPE, S.SIGSEGV, S.SIGHUP]


def test_take_respects_allowed():
    p = PendingSignals()
    p.add(SigInfo(S.SIGSEGV))
    p.add(SigInfo(S.SIGUSR2))
    assert p.take(0) is None
    blocked_segv = ALL & ~S.sigbit(S.SIGSEGV)
    assert p.take(blocked_segv).signo == S.SIGUSR2
    assert p.take(blocked_segv) is None
    assert signos(p) == [S.SIGSEGV] and p.mask == S.sigbit(S.SIGSEGV)


def test_discard():
    p = PendingSignals()
    for v in range(3):
        p.add(SigInfo(RT + 1, value=v))
    p.add(SigInfo(S.SIGCHLD))
    p.add(SigInfo(S.SIGCONT))
    p.discard(RT + 1)
    assert signos(p) == [S.SIGCHLD, S.SIGCONT]
    assert p.mask == S.sigbit(S.SIGCHLD) | S.sigbit(S.SIGCONT)
    p.discard(S.SIGSTOP)  # not pending: harmless
    assert signos(p) == [S.SIGCHLD, S.SIGCONT]
    p.discard(S.SIGCHLD)
    assert p.take(ALL).signo == S.SIGCONT and p.mask == 0


ops = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(1, S.NSIG)),
    st.tuples(st.just("take"), u64),
    st.tuples(st.just("discard"), st.integers(1, S.NSIG)),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_pending_against_model(script):
    """A list model of Linux's rules: coalescing, RT queueing, sync-first, lowest-first."""
    p = PendingSignals()
    model: list[tuple[int, int]] = []  # (signo, serial)
    for serial, (op, arg) in enumerate(script):
        if op == "add":
            dup = arg < RT and any(s == arg for s, _ in model)
            assert p.add(SigInfo(arg, value=serial)) == (not dup)
            if not dup:
                model.append((arg, serial))
        elif op == "discard":
            p.discard(arg)
            model = [m for m in model if m[0] != arg]
        else:
            ready = [s for s, _ in model if S.sigbit(s) & arg]
            sync = [s for s in ready if S.sigbit(s) & S.SYNCHRONOUS]
            info = p.take(arg)
            if not ready:
                assert info is None
                continue
            want = min(sync or ready)
            idx = next(i for i, m in enumerate(model) if m[0] == want)
            assert (info.signo, info.value) == model.pop(idx)
        assert [(i.signo, i.value) for i in p.queue] == model
        assert p.mask == sum({S.sigbit(s) for s, _ in model})


# -- SignalActions ---------------------------------------------------------------------------


def test_actions_default_and_set_get():
    a = SignalActions()
    assert len(a.table) == S.NSIG + 1
    assert a.get(S.SIGINT) == SigAction()
    act = SigAction(0x401000, S.SA_SIGINFO | S.SA_RESTORER, 0x402000, S.sigbit(S.SIGUSR2))
    a.set(S.SIGINT, act)
    assert a.get(S.SIGINT) is act


def test_actions_copy_is_independent():
    a = SignalActions()
    a.set(S.SIGUSR1, SigAction(0x401000, S.SA_RESTART, 0x402000, 0))
    b = a.copy()
    assert b.get(S.SIGUSR1) == a.get(S.SIGUSR1)
    assert b.get(S.SIGUSR1) is not a.get(S.SIGUSR1)
    b.get(S.SIGUSR1).mask = 0xFF           # mutate the copy's entry in place
    b.set(S.SIGUSR2, SigAction(S.SIG_IGN))
    a.get(S.SIGUSR1).flags = 0             # and the original's
    a.set(S.SIGTERM, SigAction(S.SIG_IGN))
    assert a.get(S.SIGUSR1).mask == 0 and a.get(S.SIGUSR2) == SigAction()
    assert b.get(S.SIGUSR1).flags == S.SA_RESTART and b.get(S.SIGTERM) == SigAction()


def test_reset_for_exec_keeps_ignored_and_resets_handlers():
    a = SignalActions()
    a.set(S.SIGINT, SigAction(S.SIG_IGN))
    a.set(S.SIGUSR1, SigAction(0x401000, S.SA_SIGINFO | S.SA_RESTORER, 0x402000, 0xF0))
    a.set(RT + 5, SigAction(0x401100, S.SA_RESTORER, 0x402000))
    a.reset_for_exec()
    assert a.get(S.SIGINT).handler == S.SIG_IGN
    assert a.get(S.SIGUSR1) == SigAction()
    assert a.get(RT + 5) == SigAction()
    assert a.ignored(S.SIGINT) and not a.ignored(S.SIGUSR1)


def test_reset_for_exec_clears_flags_of_kept_dispositions():
    a = SignalActions()
    a.set(S.SIGCHLD, SigAction(S.SIG_DFL, S.SA_NOCLDWAIT))
    a.set(S.SIGPIPE, SigAction(S.SIG_IGN, S.SA_RESTART | S.SA_RESTORER, 0x402000, 0xFF))
    a.reset_for_exec()
    assert a.get(S.SIGCHLD) == SigAction()
    assert a.get(S.SIGPIPE) == SigAction(S.SIG_IGN)


def test_ignored():
    a = SignalActions()
    assert a.ignored(S.SIGCHLD) and a.ignored(S.SIGURG) and a.ignored(S.SIGWINCH)
    assert not a.ignored(S.SIGTERM) and not a.ignored(S.SIGSEGV) and not a.ignored(RT)
    a.set(S.SIGTERM, SigAction(S.SIG_IGN))
    a.set(S.SIGCHLD, SigAction(0x401000))
    assert a.ignored(S.SIGTERM) and not a.ignored(S.SIGCHLD)


# -- rt_sigframe -----------------------------------------------------------------------------


def test_frame_layout_constants():
    assert (FR.UC_OFF, FR.MCTX_OFF, FR.MASK_OFF, FR.INFO_OFF) == (8, 48, 304, 312)
    assert FR.FRAME_SIZE == 440 and FR.FXSAVE_SIZE == 512 and FR.RED_ZONE == 128
    assert len(FR.SC_REGS) == 18 and FR.SC_REGS[0] == "r8" and FR.SC_REGS[-3:] == (
        "rsp", "rip", "rflags")


@settings(max_examples=300, deadline=None)
@given(st.integers(1 << 16, 1 << 47))
def test_frame_address_alignment(sp):
    frame, fp = FR.frame_address(sp)
    assert (frame + 8) % 16 == 0          # like a function entry after `call`
    assert fp % 64 == 0                   # FXSAVE needs 16, the kernel gives 64
    assert fp + FR.FXSAVE_SIZE <= sp      # fpstate fits below sp ...
    assert sp - (fp + FR.FXSAVE_SIZE) < 64    # ... without wasting more than the alignment
    assert frame + FR.FRAME_SIZE <= fp    # the frame sits below the fpstate
    assert fp - (frame + FR.FRAME_SIZE) < 16 + 8


def test_frame_address_does_not_apply_the_red_zone():
    """Skipping the red zone is the caller's job: the fpstate may end exactly at sp."""
    frame, fp = FR.frame_address(0x7FFF_0000)
    assert fp == 0x7FFF_0000 - FR.FXSAVE_SIZE
    assert frame == ((fp - FR.FRAME_SIZE) & ~15) - 8


def tag_words() -> st.SearchStrategy[int]:
    """Full x87 tag words whose registers are each valid (00) or empty (11), as Unicorn has."""
    return st.lists(st.sampled_from([0, 3]), min_size=8, max_size=8).map(
        lambda tags: sum(t << (2 * i) for i, t in enumerate(tags)))


fpu = st.fixed_dictionaries({
    "fpcw": st.integers(0, 0xFFFF), "fpsw": st.integers(0, 0xFFFF), "fptag": tag_words(),
    "fop": st.integers(0, 0x7FF), "fip": u64, "fdp": u64, "mxcsr": st.integers(0, 0xFFFF),
    **{f"st{i}": st.integers(0, (1 << 80) - 1) for i in range(8)},
    **{f"xmm{i}": st.integers(0, (1 << 128) - 1) for i in range(16)},
})
gprs = st.fixed_dictionaries({r: u64 for r in FR.SC_REGS})


@settings(max_examples=200, deadline=None)
@given(fpu)
def test_fxsave_round_trip(state):
    raw = FR.pack_fxsave(state)
    assert len(raw) == FR.FXSAVE_SIZE
    assert FR.unpack_fxsave(raw) == state
    assert struct.unpack_from("<H", raw, 0)[0] == state["fpcw"]
    assert struct.unpack_from("<I", raw, 24)[0] == state["mxcsr"]
    assert int.from_bytes(raw[32:42], "little") == state["st0"]
    assert raw[42:48] == bytes(6)  # the padding of each 16-byte ST slot stays zero
    assert int.from_bytes(raw[160:176], "little") == state["xmm0"]
    assert int.from_bytes(raw[400:416], "little") == state["xmm15"]


def test_fxsave_abridged_tag():
    base = {"fpcw": 0x37F, "fpsw": 0, "fop": 0, "fip": 0, "fdp": 0, "mxcsr": 0x1F80,
            **{f"st{i}": 0 for i in range(8)}, **{f"xmm{i}": 0 for i in range(16)}}
    empty = FR.pack_fxsave({**base, "fptag": 0xFFFF})
    assert empty[4] == 0x00
    # st0 valid, st7 zero (01), st3 special (10): all non-empty in the abridged byte
    tag = 0xFFFF & ~(3 << 0) & ~(2 << 14) & ~(1 << 6)
    raw = FR.pack_fxsave({**base, "fptag": tag})
    assert raw[4] == 0b1000_1001
    # the full word comes back with non-empty registers marked valid (00)
    assert FR.unpack_fxsave(raw)["fptag"] == 0xFFFF & ~(3 << 0) & ~(3 << 6) & ~(3 << 14)


@settings(max_examples=200, deadline=None)
@given(gprs, fpu, u64, u64, st.binary(min_size=128, max_size=128))
def test_build_parse_frame_round_trip(regs, fpstate, mask, restorer, info):
    state = {**regs, **fpstate}
    frame, fp = FR.frame_address(0x7FFF_F000_0000 - 1234)
    alt = (0x5000_0000, S.SS_ONSTACK, 0x4000)
    body, fx = FR.build_frame(state, info, mask, alt, restorer, frame, fp)
    assert len(body) == FR.FRAME_SIZE and len(fx) == FR.FXSAVE_SIZE
    back, got_mask = FR.parse_frame(body, fx)
    assert got_mask == mask
    assert back == state
    # without an fpstate only the general registers come back
    gp_only, _ = FR.parse_frame(body, None)
    assert gp_only == regs
    # fixed fields of the layout
    assert struct.unpack_from("<Q", body, 0)[0] == restorer
    assert body[FR.INFO_OFF:] == info
    assert FR.fpstate_pointer(body) == fp
    uc_flags, uc_link, ss_sp, ss_flags, ss_size = struct.unpack_from("<QQQi4xQ", body, FR.UC_OFF)
    assert uc_flags & FR.UC_SIGCONTEXT_SS and uc_link == 0
    assert (ss_sp, ss_flags, ss_size) == alt
    cs, _gs, _fs, ss = struct.unpack_from("<HHHH", body, FR.MCTX_OFF + 18 * 8)
    assert (cs, ss) == (FR.USER_CS, FR.USER_SS)
    oldmask = struct.unpack_from("<Q", body, FR.MCTX_OFF + 18 * 8 + 8 + 16)[0]
    assert oldmask == mask & 0xFFFFFFFF
    assert struct.unpack_from("<Q", body, FR.MASK_OFF)[0] == mask


def test_parse_frame_reads_registers_by_sigcontext_order():
    regs = {r: 0x1000 + i for i, r in enumerate(FR.SC_REGS)}
    raw = bytearray(FR.FRAME_SIZE)
    struct.pack_into("<18Q", raw, FR.MCTX_OFF, *range(0x1000, 0x1000 + 18))
    struct.pack_into("<Q", raw, FR.MASK_OFF, 0xDEAD)
    got, mask = FR.parse_frame(bytes(raw), None)
    assert got == regs and mask == 0xDEAD
    assert got["r8"] == 0x1000 and got["rip"] == 0x1010 and got["rflags"] == 0x1011
    assert FR.fpstate_pointer(bytes(raw)) == 0


# -- siginfo ---------------------------------------------------------------------------------


def test_siginfo_sigchld_layout():
    raw = SigInfo(S.SIGCHLD, S.CLD_EXITED, pid=4242, uid=1000, status=7).pack()
    assert len(raw) == SIGINFO_SIZE
    signo, errno, code = struct.unpack_from("<iii", raw, 0)
    assert (signo, errno, code) == (S.SIGCHLD, 0, S.CLD_EXITED)
    assert struct.unpack_from("<i", raw, 8)[0] == S.CLD_EXITED      # si_code at 8
    assert struct.unpack_from("<I", raw, 16)[0] == 4242             # si_pid at 16
    assert struct.unpack_from("<I", raw, 20)[0] == 1000             # si_uid at 20
    assert struct.unpack_from("<i", raw, 24)[0] == 7                # si_status at 24
    assert raw[28:] == bytes(SIGINFO_SIZE - 28)                     # utime/stime zero


def test_siginfo_negative_status_and_code():
    raw = SigInfo(S.SIGCHLD, S.CLD_KILLED, pid=1, status=-1).pack()
    assert struct.unpack_from("<i", raw, 24)[0] == -1
    raw = SigInfo(S.SIGUSR1, S.SI_TKILL, pid=5).pack()
    assert struct.unpack_from("<i", raw, 8)[0] == S.SI_TKILL


def test_siginfo_fault_layout():
    raw = SigInfo(S.SIGSEGV, S.SEGV_MAPERR, addr=0xDEAD_BEEF_0000).pack()
    assert struct.unpack_from("<i", raw, 0)[0] == S.SIGSEGV
    assert struct.unpack_from("<i", raw, 8)[0] == S.SEGV_MAPERR
    assert struct.unpack_from("<Q", raw, 16)[0] == 0xDEAD_BEEF_0000  # si_addr at 16
    assert raw[24:] == bytes(SIGINFO_SIZE - 24)
    for sig, code in ((S.SIGBUS, S.BUS_ADRERR), (S.SIGILL, S.ILL_ILLOPN),
                      (S.SIGFPE, S.FPE_INTDIV), (S.SIGTRAP, S.TRAP_BRKPT)):
        assert struct.unpack_from("<Q", SigInfo(sig, code, addr=0x1234).pack(), 16)[0] == 0x1234


def test_siginfo_kill_and_queue_layout():
    # a SIGSEGV sent with kill() (SI_USER) carries the sender, not an address
    raw = SigInfo(S.SIGSEGV, S.SI_USER, pid=77, uid=3, addr=0x999).pack()
    assert struct.unpack_from("<II", raw, 16) == (77, 3)
    raw = SigInfo(RT + 2, S.SI_QUEUE, pid=9, uid=0, value=0x1122334455667788).pack()
    assert struct.unpack_from("<iii", raw, 0) == (RT + 2, 0, S.SI_QUEUE)
    assert struct.unpack_from("<IIQ", raw, 16) == (9, 0, 0x1122334455667788)  # sigval at 24
    raw = SigInfo(S.SIGTERM, S.SI_USER, errno=5).pack()
    assert struct.unpack_from("<i", raw, 4)[0] == 5  # si_errno at 4
