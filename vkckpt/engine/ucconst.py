"""The Unicorn 2.x constants vkckpt uses, by value (the C API's enums are stable within 2.x).

Declared here so that running a guest never imports the ``unicorn`` Python package, whose
import costs more than the rest of a small thaw; tests/test_libuc.py checks every value
against the binding's own constant modules.
"""

ARCH_X86 = 4
MODE_64 = 8

ERR_OK = 0
ERR_READ_UNMAPPED = 6
ERR_WRITE_UNMAPPED = 7
ERR_FETCH_UNMAPPED = 8
ERR_INSN_INVALID = 10
ERR_WRITE_PROT = 12
ERR_READ_PROT = 13
ERR_FETCH_PROT = 14

HOOK_INTR = 1
HOOK_INSN = 2
HOOK_BLOCK = 8
HOOK_TLB_FILL = 131072

MEM_FETCH = 18

CTL_IO_WRITE = 1
CTL_CPU_MODEL = 7
CTL_TB_FLUSH = 10
CTL_TLB_FLUSH = 11
CTL_TLB_TYPE = 12
CTL_TCG_BUFFER_SIZE = 13
TLB_VIRTUAL = 1

PROT_READ = 1
PROT_WRITE = 2
PROT_EXEC = 4

X86_INS_CPUID = 113
X86_INS_RDTSC = 608
X86_INS_RDTSCP = 609
X86_INS_SYSCALL = 699

#: x86 register ids (uc_x86_reg) of every register a thread owns.
X86_REG = {
    "rax": 35, "rbx": 37, "rcx": 38, "rdx": 40, "rsi": 43, "rdi": 39, "rbp": 36, "rsp": 44,
    "r8": 106, "r9": 107, "r10": 108, "r11": 109, "r12": 110, "r13": 111, "r14": 112,
    "r15": 113, "rip": 41, "rflags": 253, "fs_base": 250, "gs_base": 251,
    "fpcw": 246, "fpsw": 31, "fptag": 247, "fop": 258, "fip": 254, "fdp": 256, "mxcsr": 249,
    **{f"st{i}": 114 + i for i in range(8)},
    **{f"xmm{i}": 122 + i for i in range(16)},
}
