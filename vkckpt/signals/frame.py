"""Linux x86-64 rt_sigframe: build one on signal delivery, unpack it in rt_sigreturn.

Layout (kernel's, which musl's ucontext_t and mcontext_t mirror):
  frame+0    pretcode (sa_restorer; the handler returns into it)
  frame+8    struct ucontext: uc_flags, uc_link, uc_stack{sp, flags, size},
             uc_mcontext (struct sigcontext, 256 bytes), uc_sigmask (8 bytes)
  frame+312  siginfo_t (128 bytes)
  fpstate    512-byte FXSAVE image, 64-byte aligned, above the frame; mcontext.fpstate points at it
The frame is placed so that (frame + 8) is 16-byte aligned, as at a function's entry.
"""

from __future__ import annotations

import struct

UC_OFF = 8
MCTX_OFF = UC_OFF + 40
MASK_OFF = MCTX_OFF + 256
INFO_OFF = MASK_OFF + 8
FRAME_SIZE = INFO_OFF + 128
FXSAVE_SIZE = 512
RED_ZONE = 128
UC_SIGCONTEXT_SS, UC_STRICT_RESTORE_SS = 0x2, 0x4
#: sigcontext general registers, in their order in struct sigcontext.
SC_REGS = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx",
           "rdx", "rax", "rcx", "rsp", "rip", "rflags")
USER_CS, USER_SS = 0x33, 0x2B
RFLAGS_USER_MASK = 0x0000_0000_0025_4DD5  # CF PF AF ZF SF TF DF OF NT AC ID the user may set


def _abridged_tag(fptag: int) -> int:
    """FXSAVE's 1-bit-per-register tag from the full 2-bit x87 tag word."""
    return sum(1 << i for i in range(8) if (fptag >> (2 * i)) & 3 != 3)


def _full_tag(abridged: int) -> int:
    """The x87 tag word from FXSAVE's abridged form (non-empty registers marked valid)."""
    return sum(3 << (2 * i) for i in range(8) if not abridged >> i & 1)


def pack_fxsave(st: dict[str, int]) -> bytes:
    """Encode x87/SSE state in the 512-byte FXSAVE format."""
    head = struct.pack("<HHBxHQQII", st["fpcw"], st["fpsw"], _abridged_tag(st["fptag"]),
                       st["fop"], st["fip"], st["fdp"], st["mxcsr"], 0xFFFF)
    sts = b"".join(st[f"st{i}"].to_bytes(16, "little") for i in range(8))
    xmms = b"".join(st[f"xmm{i}"].to_bytes(16, "little") for i in range(16))
    return (head + sts + xmms).ljust(FXSAVE_SIZE, b"\0")


def unpack_fxsave(raw: bytes) -> dict[str, int]:
    """Decode a 512-byte FXSAVE image into register values."""
    fcw, fsw, ftw, fop, fip, fdp, mxcsr, _ = struct.unpack_from("<HHBxHQQII", raw)
    st = {"fpcw": fcw, "fpsw": fsw, "fptag": _full_tag(ftw), "fop": fop, "fip": fip,
          "fdp": fdp, "mxcsr": mxcsr & 0xFFFF}
    for i in range(8):
        st[f"st{i}"] = int.from_bytes(raw[32 + 16 * i: 42 + 16 * i], "little")
    for i in range(16):
        st[f"xmm{i}"] = int.from_bytes(raw[160 + 16 * i: 176 + 16 * i], "little")
    return st


def frame_address(sp: int) -> tuple[int, int]:
    """Given the stack pointer to build below, return (frame address, fpstate address)."""
    fp = (sp - FXSAVE_SIZE) & ~63
    frame = ((fp - FRAME_SIZE) & ~15) - 8
    return frame, fp


def build_frame(regs: dict[str, int], info: bytes, oldmask: int, altstack: tuple[int, int, int],
                restorer: int, frame: int, fp: int) -> tuple[bytes, bytes]:
    """Return (frame bytes at `frame`, fxsave bytes at `fp`) for the interrupted state regs.

    altstack is (ss_sp, ss_flags, ss_size) as sigaltstack(2) reports it at delivery.
    """
    mctx = struct.pack("<18Q", *(regs[r] for r in SC_REGS))
    mctx += struct.pack("<HHHH", USER_CS, 0, 0, USER_SS)
    mctx += struct.pack("<5Q", 0, 0, oldmask & 0xFFFFFFFF, 0, fp) + bytes(64)
    uc = struct.pack("<QQQi4xQ", UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS, 0,
                     altstack[0], altstack[1], altstack[2])
    body = struct.pack("<Q", restorer) + uc + mctx + struct.pack("<Q", oldmask) + info
    assert len(body) == FRAME_SIZE
    return body, pack_fxsave(regs)


def parse_frame(raw: bytes, fxsave: bytes | None) -> tuple[dict[str, int], int]:
    """Decode a frame (rsp - 8 at rt_sigreturn) into (registers to restore, signal mask)."""
    vals = struct.unpack_from("<18Q", raw, MCTX_OFF)
    regs = dict(zip(SC_REGS, vals, strict=True))
    if fxsave is not None:
        regs.update(unpack_fxsave(fxsave))
    (mask,) = struct.unpack_from("<Q", raw, MASK_OFF)
    return regs, mask


def fpstate_pointer(raw: bytes) -> int:
    """The fpstate pointer saved in a frame's sigcontext (0 when there is none)."""
    return struct.unpack_from("<Q", raw, MCTX_OFF + 18 * 8 + 8 + 32)[0]
