/*
 * Deterministic preemption for Unicorn: a UC_HOOK_BLOCK callback that counts
 * translated blocks down from a budget and stops the engine when it is spent.
 *
 * Built as the Python extension module vkckpt.engine._blockhook only so that
 * setuptools compiles and installs it; the module itself is empty. Python
 * loads this file with ctypes.CDLL(module.__file__) and passes the address of
 * vk_block_cb to uc_hook_add, with a pointer to a struct vk_block_state as the
 * hook's user data. No Unicorn header is needed.
 *
 * The same state serves the rdtsc and rdtscp hooks (UC_HOOK_INSN, Unicorn >= 2.1):
 * the time-stamp counter is read off the virtual clock, never the host's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stdint.h>

typedef int (*vk_emu_stop_fn)(void *uc);
typedef int (*vk_reg_fn)(void *uc, int regid, void *value);

/* One CPUID answer; mirrors CpuidLeaf in cpuhooks.py. */
struct vk_cpuid_leaf {
    uint32_t leaf, subleaf;
    uint32_t by_subleaf; /* 1: the answer is for this subleaf only */
    uint32_t regs[4];    /* EAX, EBX, ECX, EDX */
};

/* Layout shared with BlockState in preempt.py. */
struct vk_block_state {
    uint64_t remaining; /* blocks still allowed before the engine stops */
    uint64_t total;     /* blocks executed so far (survives checkpoints) */
    uint64_t expired;   /* set to 1 when the budget ran out */
    vk_emu_stop_fn emu_stop;
    uint64_t block_addr;    /* guest address of the block being executed */
    uint64_t tsc_base;      /* TSC = tsc_base + total * tsc_per_block + offset in block */
    uint64_t tsc_per_block; /* TSC cycles per block of virtual time (> 0) */
    uint64_t tsc_aux;       /* what rdtscp leaves in ECX */
    vk_reg_fn reg_read;     /* uc_reg_read and uc_reg_write */
    vk_reg_fn reg_write;
    int32_t reg_rip, reg_rax, reg_rdx, reg_rcx; /* uc_x86_reg ids */
    int32_t reg_rbx, pad;
    const struct vk_cpuid_leaf *cpuid; /* the CPU model's table; other leaves read 0 */
    uint64_t cpuid_count;
};

/*
 * Called on entry to every translated block, before the block's instructions.
 * At a spent budget the block is not counted: uc_emu_stop makes the engine
 * leave before the block executes, and it is counted when it runs on resume.
 */
__attribute__((visibility("default"))) void
vk_block_cb(void *uc, uint64_t addr, uint32_t size, void *user_data)
{
    struct vk_block_state *st = (struct vk_block_state *)user_data;

    (void)addr;
    (void)size;
    if (st->remaining == 0) {
        st->expired = 1;
        st->emu_stop(uc);
        return;
    }
    st->remaining--;
    st->total++;
    st->block_addr = addr;
}

/*
 * The virtual TSC at the instruction being executed: the block count on the clock, plus
 * the instruction's offset in its block (capped below one block's worth of cycles), so two
 * reads in one block still increase and a later block always reads more.
 */
static uint64_t
vk_tsc(void *uc, struct vk_block_state *st)
{
    uint64_t rip = 0, off;

    st->reg_read(uc, st->reg_rip, &rip);
    off = rip - st->block_addr;
    if (rip < st->block_addr || off >= st->tsc_per_block)
        off = st->tsc_per_block - 1;
    return st->tsc_base + st->total * st->tsc_per_block + off;
}

static void
vk_put_tsc(void *uc, struct vk_block_state *st, uint64_t tsc)
{
    uint64_t lo = tsc & 0xffffffffu, hi = tsc >> 32;

    st->reg_write(uc, st->reg_rax, &lo);
    st->reg_write(uc, st->reg_rdx, &hi);
}

/* UC_HOOK_INSN for rdtsc: EDX:EAX from the virtual clock; 1 = the instruction is done. */
__attribute__((visibility("default"))) int
vk_rdtsc_cb(void *uc, void *user_data)
{
    struct vk_block_state *st = (struct vk_block_state *)user_data;

    vk_put_tsc(uc, st, vk_tsc(uc, st));
    return 1;
}

/* UC_HOOK_INSN for rdtscp: as rdtsc, and ECX = the fixed TSC_AUX (the CPU number). */
__attribute__((visibility("default"))) int
vk_rdtscp_cb(void *uc, void *user_data)
{
    struct vk_block_state *st = (struct vk_block_state *)user_data;
    uint64_t aux = st->tsc_aux;

    vk_put_tsc(uc, st, vk_tsc(uc, st));
    st->reg_write(uc, st->reg_rcx, &aux);
    return 1;
}

/* UC_HOOK_INSN for cpuid: the answer from the model's table, never the emulator's. */
__attribute__((visibility("default"))) int
vk_cpuid_cb(void *uc, void *user_data)
{
    struct vk_block_state *st = (struct vk_block_state *)user_data;
    uint64_t leaf = 0, sub = 0, out[4] = {0, 0, 0, 0};
    const int32_t ids[4] = {st->reg_rax, st->reg_rbx, st->reg_rcx, st->reg_rdx};

    st->reg_read(uc, st->reg_rax, &leaf);
    st->reg_read(uc, st->reg_rcx, &sub);
    for (uint64_t i = 0; i < st->cpuid_count; i++) {
        const struct vk_cpuid_leaf *e = &st->cpuid[i];
        if (e->leaf == (uint32_t)leaf && (!e->by_subleaf || e->subleaf == (uint32_t)sub)) {
            for (int r = 0; r < 4; r++)
                out[r] = e->regs[r];
            break;
        }
    }
    for (int r = 0; r < 4; r++)
        st->reg_write(uc, ids[r], &out[r]);
    return 1;
}

/* Unicorn 2.1's uc_tlb_entry, uc_prot and uc_mem_type values. */
struct vk_tlb_entry {
    uint64_t paddr;
    int32_t perms;
};
#define VK_PROT_READ 1
#define VK_PROT_WRITE 2
#define VK_PROT_EXEC 4
#define VK_MEM_FETCH 18

/*
 * UC_HOOK_TLB_FILL (with the engine's TLB in UC_TLB_VIRTUAL mode): guest addresses are
 * their own physical addresses; a fetch gets READ|EXEC, a load or store READ|WRITE, never
 * all three.  A data page is then never executable in the TLB, so Unicorn drops its
 * TLB_NOTDIRTY flag after the first store and later stores take the fast path (about 5x
 * faster, see UNICORN-NOTES).  The region's own protection (uc_mem_map_ptr/uc_mem_protect,
 * the VMA's) still decides every access: an access it forbids stops the engine with
 * UC_ERR_*_PROT, and one to unmapped memory with UC_ERR_*_UNMAPPED, as before.
 */
__attribute__((visibility("default"))) bool
vk_tlb_fill_cb(void *uc, uint64_t addr, int type, struct vk_tlb_entry *e, void *user_data)
{
    (void)uc;
    (void)user_data;
    e->paddr = addr;
    e->perms = type == VK_MEM_FETCH ? (VK_PROT_READ | VK_PROT_EXEC)
                                    : (VK_PROT_READ | VK_PROT_WRITE);
    return true;
}

/*
 * The syscall instruction hook (UC_HOOK_INSN, UC_X86_INS_SYSCALL): the nine registers a
 * system call reads are read here and passed to the kernel's entry (a ctypes callback) as
 * plain integers; its result goes to RAX, and RCX/R11 get what a real CPU leaves there
 * (the next RIP, RFLAGS), unless the entry set VK_SYS_NOWRITE.  VK_SYS_STOP stops the
 * engine.  This replaces two ctypes register calls per system call.  Layout shared with
 * SysState in engine/sysentry.py.
 *
 * With `park` set (phase 2 of a parallel round, vkckpt/rounds.py) the hook calls no Python
 * and changes nothing the guest sees: it records the syscall instruction's address in
 * `parked_rip`, sets `parked` and stops the engine.  Unicorn's helper_syscall still adds
 * the instruction's length to RIP after the hook, so the caller puts RIP back on
 * `parked_rip`; the syscall then runs, inline as usual, when the thread resumes there.
 */
typedef uint64_t (*vk_sys_fn)(uint64_t nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                              uint64_t a5, uint64_t a6);
typedef int (*vk_batch_fn)(void *uc, int *regs, void **vals, int count);

#define VK_SYS_NOWRITE 1u
#define VK_SYS_STOP 2u

struct vk_sys_state {
    vk_sys_fn entry;
    vk_batch_fn read_batch, write_batch;
    vk_emu_stop_fn emu_stop;
    uint64_t flags;     /* set by entry; cleared before each call */
    uint64_t park;      /* 1: leave the thread before the syscall, calling nothing */
    uint64_t parked;    /* set to 1 by a parked stop (the caller clears it) */
    uint64_t parked_rip; /* the syscall instruction's address at that stop */
    int32_t in_ids[9];  /* rax rdi rsi rdx r10 r8 r9 rip rflags */
    int32_t out_ids[3]; /* rax rcx r11 */
};

__attribute__((visibility("default"))) void
vk_syscall_cb(void *uc, void *user_data)
{
    struct vk_sys_state *st = (struct vk_sys_state *)user_data;
    uint64_t v[9], out[3];
    void *pin[9], *pout[3];
    uint64_t ret;

    if (st->park) {
        pin[0] = &st->parked_rip;
        st->read_batch(uc, &st->in_ids[7], pin, 1);
        st->parked = 1;
        st->emu_stop(uc);
        return;
    }
    for (int i = 0; i < 9; i++)
        pin[i] = &v[i];
    st->read_batch(uc, st->in_ids, pin, 9);
    st->flags = 0;
    ret = st->entry(v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
    if (!(st->flags & VK_SYS_NOWRITE)) {
        out[0] = ret;
        out[1] = v[7] + 2; /* the syscall instruction is two bytes */
        out[2] = v[8];
        for (int i = 0; i < 3; i++)
            pout[i] = &out[i];
        st->write_batch(uc, st->out_ids, pout, 3);
    }
    if (st->flags & VK_SYS_STOP)
        st->emu_stop(uc);
}

/* Size of struct vk_sys_state, so Python can check the layout it mirrors. */
__attribute__((visibility("default"))) uint64_t
vk_sys_state_size(void)
{
    return (uint64_t)sizeof(struct vk_sys_state);
}

/* Size of struct vk_block_state, so Python can check the layout it mirrors. */
__attribute__((visibility("default"))) uint64_t
vk_block_state_size(void)
{
    return (uint64_t)sizeof(struct vk_block_state);
}

static struct PyModuleDef blockhook_module = {
    PyModuleDef_HEAD_INIT,
    "_blockhook",
    "Native UC_HOOK_BLOCK budget counter; load with ctypes.CDLL(__file__).",
    -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__blockhook(void)
{
    return PyModule_Create(&blockhook_module);
}
