/*
 * Deterministic preemption for Unicorn: a UC_HOOK_BLOCK callback that counts
 * translated blocks down from a budget and stops the engine when it is spent.
 *
 * Built as the Python extension module vkckpt.engine._blockhook only so that
 * setuptools compiles and installs it; the module itself is empty. Python
 * loads this file with ctypes.CDLL(module.__file__) and passes the address of
 * vk_block_cb to uc_hook_add, with a pointer to a struct vk_block_state as the
 * hook's user data. No Unicorn header is needed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef int (*vk_emu_stop_fn)(void *uc);

/* Layout shared with BlockState in preempt.py. */
struct vk_block_state {
    uint64_t remaining; /* blocks still allowed before the engine stops */
    uint64_t total;     /* blocks executed so far (survives checkpoints) */
    uint64_t expired;   /* set to 1 when the budget ran out */
    vk_emu_stop_fn emu_stop;
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
