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
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

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
#define VK_MEM_READ 16
#define VK_MEM_WRITE 17
#define VK_MEM_FETCH 18

/*
 * UC_HOOK_TLB_FILL (with the engine's TLB in UC_TLB_VIRTUAL mode): guest addresses are
 * their own physical addresses, and the engine's mappings (one vk_range per region, kept
 * by engine.py beside every uc_mem_map_ptr/unmap/protect) decide each fill:
 *   - a fetch needs PROT_EXEC, a store PROT_WRITE, a load PROT_READ (the regions' own
 *     rule); a fetch's entry adds READ if the page has it, a load's WRITE and a store's
 *     READ, but never EXEC to a data access.  A data page is then never
 *     executable in the TLB, so Unicorn drops its TLB_NOTDIRTY flag after the first store
 *     and later stores take the fast path (about 5x faster, see UNICORN-NOTES);
 *   - an access the mappings refuse is recorded (page, kind, unmapped or not) and the fill
 *     fails: Unicorn leaves the block at once with UC_ERR_EXCEPTION, RIP at the faulting
 *     instruction.  Nothing waits for Unicorn's stop check after each access, so the
 *     engine can compile without it (quirks.skip_access_exit_checks).
 * Without a state (user_data NULL) every fill is the identity READ|EXEC or READ|WRITE and
 * the regions' own protections refuse accesses, through that stop check.
 * Layout shared with TlbState in engine/tlb.py.
 */
struct vk_range {
    uint64_t start, end; /* [start, end), page aligned */
    int64_t perms;       /* PROT_* bits */
};

struct vk_tlb_state {
    uint64_t fills;          /* fills since Python last reset it (tlb.py grows the TLB) */
    uint64_t fault_page;     /* the page of the last refused access */
    int32_t fault_type;      /* its uc_mem_type: VK_MEM_READ, _WRITE or _FETCH */
    int32_t fault_unmapped;  /* 1: no mapping there; 0: the mapping's protection refused */
    int32_t faulted;         /* set at a refusal; Python clears it before each run */
    int32_t unmapping;       /* 1 while engine.py unmaps: see vk_tlb_fill_cb */
    struct vk_range *ranges; /* sorted, disjoint; malloc'd here */
    uint64_t count, cap;
};

__attribute__((visibility("default"))) uint64_t
vk_tlb_state_size(void)
{
    return sizeof(struct vk_tlb_state);
}

/* The index of the first range ending after addr (count when there is none). */
static uint64_t
vk_first_after(const struct vk_tlb_state *st, uint64_t addr)
{
    uint64_t lo = 0, hi = st->count;

    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (st->ranges[mid].end <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/*
 * Make [start, end) mapped with perms, or unmapped when perms < 0: overlapped ranges are
 * cut, the pieces outside kept.  0 on success, -1 when memory ran out (nothing changed).
 */
__attribute__((visibility("default"))) int
vk_tlb_set(struct vk_tlb_state *st, uint64_t start, uint64_t end, int64_t perms)
{
    struct vk_range pieces[3];
    uint64_t i, j, k = 0, need;

    if (start >= end)
        return 0;
    i = vk_first_after(st, start);
    for (j = i; j < st->count && st->ranges[j].start < end; j++)
        ;
    if (i < j && st->ranges[i].start < start) {
        pieces[k] = st->ranges[i];
        pieces[k++].end = start;
    }
    if (perms >= 0) {
        pieces[k].start = start;
        pieces[k].end = end;
        pieces[k++].perms = perms;
    }
    if (i < j && st->ranges[j - 1].end > end) {
        pieces[k] = st->ranges[j - 1];
        pieces[k++].start = end;
    }
    need = st->count - (j - i) + k;
    if (need > st->cap) {
        uint64_t cap = st->cap ? st->cap * 2 : 64;
        struct vk_range *r;
        while (cap < need)
            cap *= 2;
        r = realloc(st->ranges, cap * sizeof(*r));
        if (!r)
            return -1;
        st->ranges = r;
        st->cap = cap;
    }
    memmove(st->ranges + i + k, st->ranges + j, (st->count - j) * sizeof(*st->ranges));
    memcpy(st->ranges + i, pieces, k * sizeof(*pieces));
    st->count = need;
    return 0;
}

/* Free the ranges (the state itself belongs to Python). */
__attribute__((visibility("default"))) void
vk_tlb_release(struct vk_tlb_state *st)
{
    free(st->ranges);
    st->ranges = NULL;
    st->count = st->cap = 0;
}

/*
 * Record a refusal: the first of a run is the one that stopped it (x86 code never probes).
 * Unicorn writes the access's exact address to its invalid_addr field (tlb.py reads it).
 */
static bool
vk_refuse(struct vk_tlb_state *st, uint64_t page, int type, int unmapped)
{
    if (st->faulted)
        return false;
    st->fault_page = page;
    st->fault_type = type;
    st->fault_unmapped = unmapped;
    st->faulted = 1;
    return false;
}

__attribute__((visibility("default"))) bool
vk_tlb_fill_cb(void *uc, uint64_t addr, int type, struct vk_tlb_entry *e, void *user_data)
{
    struct vk_tlb_state *st = (struct vk_tlb_state *)user_data;
    const struct vk_range *r;
    uint64_t i;
    int64_t p;

    (void)uc;
    e->paddr = addr;
    if (!st) {
        e->perms = type == VK_MEM_FETCH ? (VK_PROT_READ | VK_PROT_EXEC)
                                        : (VK_PROT_READ | VK_PROT_WRITE);
        return true;
    }
    if (st->unmapping) {
        /* uc_mem_unmap looks its first page up as code to drop translated blocks, then
         * flushes every page: a refusal would stop the engine with UC_ERR_EXCEPTION. */
        e->perms = VK_PROT_READ | VK_PROT_EXEC;
        return true;
    }
    st->fills++;
    i = vk_first_after(st, addr);
    if (i == st->count || st->ranges[i].start > addr)
        return vk_refuse(st, addr, type, 1);
    r = &st->ranges[i];
    p = r->perms;
    /* The same rule as the region's own protection, so Unicorn's check never refuses
     * what was filled (it would only flag an error for a stop check that is not there). */
    if (type == VK_MEM_FETCH) {
        if (!(p & VK_PROT_EXEC))
            return vk_refuse(st, addr, type, 0);
        e->perms = VK_PROT_EXEC | (p & VK_PROT_READ);
    } else if (type == VK_MEM_WRITE) {
        if (!(p & VK_PROT_WRITE))
            return vk_refuse(st, addr, type, 0);
        e->perms = VK_PROT_WRITE | (p & VK_PROT_READ);
    } else {
        if (!(p & VK_PROT_READ))
            return vk_refuse(st, addr, type, 0);
        e->perms = VK_PROT_READ | (p & VK_PROT_WRITE);
    }
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

/*
 * Hand-off words for the crew below: a thread waits for a 32-bit word to change by spinning
 * for spin_ns (a round's serial phases are tens of microseconds: a sleep and wake-up on
 * this VM costs about as much), then sleeping on a futex.
 */
static uint64_t
vk_now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Wait until *word differs from old; returns its new value. */
static uint32_t
vk_wait_change(uint32_t *word, uint32_t old, uint64_t spin_ns)
{
    uint64_t start = vk_now_ns();
    uint32_t v;

    for (unsigned i = 1;; i++) {
        v = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        if (v != old)
            return v;
        __builtin_ia32_pause();
        if ((i & 255) == 0 && vk_now_ns() - start >= spin_ns)
            break;
    }
    for (;;) {
        v = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        if (v != old)
            return v;
        syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, old, NULL, NULL, 0);
    }
}

/* Store value into *word and wake every thread sleeping on it. */
static void
vk_store_wake(uint32_t *word, uint32_t value)
{
    __atomic_store_n(word, value, __ATOMIC_RELEASE);
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

/*
 * A crew of host threads for rounds' guest code (vkckpt/rounds.py): a batch of
 * uc_emu_start calls, one per engine, each prepared by Python (Engine.begin_run) and
 * decoded after (finish_run).  The caller runs jobs too; workers take the next job until
 * none is left.  No worker ever runs Python, so a batch needs no GIL hand-off: vk_crew_run
 * is called through ctypes, which releases the GIL for the whole batch.
 */
typedef int (*vk_emu_start_fn)(void *uc, uint64_t begin, uint64_t until, uint64_t timeout,
                               size_t count);

struct vk_job {
    void *uc;
    uint64_t rip;
    int64_t err; /* what uc_emu_start returned */
};

#define VK_CREW_MAX 16

struct vk_crew {
    vk_emu_start_fn emu_start;
    uint64_t spin_ns;
    struct vk_job *jobs;
    uint32_t njobs, next; /* next: the index of the next job to take (atomic) */
    uint32_t gen;         /* bumped to start a batch */
    uint32_t quit;
    uint32_t nworkers;
    uint32_t done[VK_CREW_MAX]; /* the last batch each worker finished */
};

struct vk_worker_arg {
    struct vk_crew *crew;
    uint32_t index;
};

static void
vk_crew_drain(struct vk_crew *c)
{
    for (;;) {
        uint32_t i = __atomic_fetch_add(&c->next, 1, __ATOMIC_ACQ_REL);
        struct vk_job *j;

        if (i >= c->njobs)
            return;
        j = &c->jobs[i];
        j->err = c->emu_start(j->uc, j->rip, UINT64_MAX, 0, 0);
    }
}

static void *
vk_crew_worker(void *arg)
{
    struct vk_worker_arg a = *(struct vk_worker_arg *)arg;
    struct vk_crew *c = a.crew;
    uint32_t gen = 0;

    free(arg);
    for (;;) {
        uint32_t quit;

        gen = vk_wait_change(&c->gen, gen, c->spin_ns);
        quit = __atomic_load_n(&c->quit, __ATOMIC_ACQUIRE);
        if (!quit)
            vk_crew_drain(c);
        /* Once done is stored, vk_crew_free may free c (and calloc may hand the same
         * memory to the next crew): quit was read before, and c is not touched after. */
        vk_store_wake(&c->done[a.index], gen);
        if (quit)
            return NULL;
    }
}

/* A crew of nworkers threads (at most VK_CREW_MAX), or NULL when none could start. */
__attribute__((visibility("default"))) struct vk_crew *
vk_crew_new(uint32_t nworkers, uint64_t spin_ns, vk_emu_start_fn emu_start)
{
    struct vk_crew *c = calloc(1, sizeof(*c));
    pthread_attr_t attr;

    if (!c || nworkers > VK_CREW_MAX) {
        free(c);
        return NULL;
    }
    c->emu_start = emu_start;
    c->spin_ns = spin_ns;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (uint32_t i = 0; i < nworkers; i++) {
        struct vk_worker_arg *a = malloc(sizeof(*a));
        pthread_t t;

        if (!a)
            break;
        a->crew = c;
        a->index = i;
        if (pthread_create(&t, &attr, vk_crew_worker, a) != 0) {
            free(a);
            break;
        }
        c->nworkers++;
    }
    pthread_attr_destroy(&attr);
    return c;
}

static void
vk_crew_wait_all(struct vk_crew *c, uint32_t gen)
{
    for (uint32_t i = 0; i < c->nworkers; i++) {
        uint32_t v = __atomic_load_n(&c->done[i], __ATOMIC_ACQUIRE);
        while (v != gen)
            v = vk_wait_change(&c->done[i], v, c->spin_ns);
    }
}

/* Run the n jobs on the crew and the calling thread; returns when every job has run. */
__attribute__((visibility("default"))) void
vk_crew_run(struct vk_crew *c, struct vk_job *jobs, uint32_t n)
{
    uint32_t gen = c->gen + 1;

    c->jobs = jobs;
    c->njobs = n;
    __atomic_store_n(&c->next, 0, __ATOMIC_RELEASE);
    vk_store_wake(&c->gen, gen);
    vk_crew_drain(c);
    vk_crew_wait_all(c, gen);
}

/* Stop the workers and free the crew. */
__attribute__((visibility("default"))) void
vk_crew_free(struct vk_crew *c)
{
    uint32_t gen;

    if (!c)
        return;
    __atomic_store_n(&c->quit, 1, __ATOMIC_RELEASE);
    gen = c->gen + 1;
    vk_store_wake(&c->gen, gen);
    vk_crew_wait_all(c, gen);
    free(c);
}
