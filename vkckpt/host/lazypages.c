/*
 * Lazy thaw: guest pages faulted in from the image, each chunk checked before it is seen.
 *
 * Python (vkckpt/host/lazypages.py) registers the host-buffer ranges an image fills with a
 * userfaultfd in MISSING mode and hands this module a table: host address -> image file
 * offset, length and CRC32 of each page chunk.  One host thread (no GIL, no Python) reads
 * the userfaultfd; on a fault it finds the chunk, preads it into a private buffer, checks
 * its CRC32 and only then installs the whole chunk with UFFDIO_COPY.  A chunk whose bytes
 * cannot be read or fail the check is never installed: the process writes one error line
 * and ends with status 125 (a corrupted image), the faulting thread still blocked.
 *
 * A chunk's state goes MISSING -> DONE once (copied, or forgotten because its pages were
 * discarded).  A fault on a DONE chunk (its page was discarded since) gets the zero page,
 * as discarded anonymous memory reads.  One mutex serialises the table and every copy.
 * The module's scan() (an image's frames walked in C) lives in framescan.c.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <zlib.h>

#define PAGE 4096u
#define MAX_CHUNK (256u * PAGE) /* MAX_CHUNK_PAGES of vkckpt/image/frames.py */
#define EXIT_CORRUPT 125        /* EXIT_VKERNEL_ERROR: vkckpt-thaw(1) */

enum { MISSING = 0, DONE = 1 };

/* One page chunk; the layout of ENTRY in lazypages.py (6 x uint64). */
struct entry {
    uint64_t addr, len, off, crc, bid, first;
};

struct chunk {
    struct entry e;
    int src; /* index into srcs */
    int state;
};

struct source {
    int fd;     /* our own duplicate of the image's descriptor */
    char *path; /* for the error line */
};

/* All guarded by mu. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct chunk *tab;
static size_t ntab, captab;
static struct source *srcs;
static size_t nsrc;
static size_t nmissing;
static uint64_t nfaults, ncopied, nzero;
static unsigned char *scratch; /* MAX_CHUNK bytes; used only with mu held */

static int uffd = -1;
static int wp_mode; /* copies install pages write-protected (range registered for WP too) */
static pthread_t thread;

static void die(const struct chunk *c, const char *problem, uint64_t at)
{
    char line[4352];
    const char *path = srcs[c->src].path;
    int n;
    if (at != UINT64_MAX)
        n = snprintf(line, sizeof line, "vkckpt: checkpoint image %s %s at offset %llu "
                     "(found while loading pages %llu..%llu of buffer %llu lazily)\n",
                     path, problem, (unsigned long long)at, (unsigned long long)c->e.first,
                     (unsigned long long)(c->e.first + c->e.len / PAGE - 1),
                     (unsigned long long)c->e.bid);
    else
        n = snprintf(line, sizeof line, "vkckpt: checkpoint image %s is corrupted: pages "
                     "%llu..%llu of buffer %llu %s\n", path, (unsigned long long)c->e.first,
                     (unsigned long long)(c->e.first + c->e.len / PAGE - 1),
                     (unsigned long long)c->e.bid, problem);
    if (n > 0 && write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1) < 0)
        n = 0;
    _exit(EXIT_CORRUPT);
}

/* Read and check c's bytes into scratch; never returns on a bad chunk. */
static void read_checked(const struct chunk *c)
{
    uint64_t got = 0;
    while (got < c->e.len) {
        ssize_t n = pread(srcs[c->src].fd, scratch + got, c->e.len - got, (off_t)(c->e.off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die(c, "could not be read", c->e.off + got);
        if (n == 0)
            die(c, "is truncated (was it being modified?)", c->e.off + got);
        got += (uint64_t)n;
    }
    if (crc32(0L, scratch, (uInt)c->e.len) != (uLong)c->e.crc)
        die(c, "fail their CRC check", UINT64_MAX);
}

/* UFFDIO_COPY of scratch[from..len) to c; pages already present are left as they are. */
static void install(struct chunk *c)
{
    uint64_t done = 0;
    while (done < c->e.len) {
        struct uffdio_copy cp = {.dst = c->e.addr + done, .src = (uint64_t)(uintptr_t)(scratch + done),
                                 .len = c->e.len - done,
                                 .mode = wp_mode ? UFFDIO_COPY_MODE_WP : 0};
        if (ioctl(uffd, UFFDIO_COPY, &cp) == 0) {
            done += (uint64_t)cp.copy;
            continue;
        }
        int err = errno;
        if (cp.copy > 0)
            done += (uint64_t)cp.copy;
        if (err == EAGAIN || err == EINTR)
            continue;
        if (err == EEXIST) {
            done += PAGE; /* already there: never overwrite a page */
            continue;
        }
        break; /* ENOENT, ESRCH...: the range is no longer ours (unmapped) */
    }
    c->state = DONE;
    nmissing--;
    ncopied++;
}

static struct chunk *find(uint64_t addr)
{
    size_t lo = 0, hi = ntab;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (tab[mid].e.addr + tab[mid].e.len <= addr)
            lo = mid + 1;
        else if (tab[mid].e.addr > addr)
            hi = mid;
        else
            return &tab[mid];
    }
    return NULL;
}

/* First chunk whose end lies above addr. */
static size_t lower(uint64_t addr)
{
    size_t lo = 0, hi = ntab;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (tab[mid].e.addr + tab[mid].e.len <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static const unsigned char zeros[PAGE];

/* Answer a fault on a page whose chunk is finished (the page was discarded since): zeros. */
static void zero_page(uint64_t addr)
{
    struct uffdio_zeropage z = {.range = {.start = addr, .len = PAGE}, .mode = 0};
    int rc;
    while ((rc = ioctl(uffd, UFFDIO_ZEROPAGE, &z)) != 0 && (errno == EAGAIN || errno == EINTR))
        ;
    if (rc != 0 && errno != EEXIST) { /* e.g. refused beside write protection: copy zeros */
        struct uffdio_copy cp = {.dst = addr, .src = (uint64_t)(uintptr_t)zeros, .len = PAGE,
                                 .mode = wp_mode ? UFFDIO_COPY_MODE_WP : 0};
        while ((rc = ioctl(uffd, UFFDIO_COPY, &cp)) != 0 && (errno == EAGAIN || errno == EINTR))
            ;
    }
    if (rc != 0) { /* raced with a copy, or not ours any more: just wake the faulting thread */
        struct uffdio_range r = {.start = addr, .len = PAGE};
        ioctl(uffd, UFFDIO_WAKE, &r);
    }
    nzero++;
}

static void serve(uint64_t addr)
{
    pthread_mutex_lock(&mu);
    nfaults++;
    struct chunk *c = find(addr);
    if (c != NULL && c->state == MISSING) {
        read_checked(c);
        install(c);
    } else {
        zero_page(addr);
    }
    pthread_mutex_unlock(&mu);
}

static void *run(void *arg)
{
    (void)arg;
    for (;;) {
        struct pollfd p = {.fd = uffd, .events = POLLIN};
        if (poll(&p, 1, -1) < 0)
            continue;
        struct uffd_msg msg;
        ssize_t n = read(uffd, &msg, sizeof msg);
        if (n != (ssize_t)sizeof msg)
            continue; /* EAGAIN: another reader took it, or a spurious wake-up */
        if (msg.event == UFFD_EVENT_PAGEFAULT)
            serve(msg.arg.pagefault.address & ~(uint64_t)(PAGE - 1));
    }
    return NULL;
}

static int cmp_chunk(const void *a, const void *b)
{
    uint64_t x = ((const struct chunk *)a)->e.addr, y = ((const struct chunk *)b)->e.addr;
    return x < y ? -1 : x > y;
}

PyDoc_STRVAR(start_doc, "start(uffd, wp)\n--\n\nServe faults of userfaultfd uffd on a host "
             "thread (once per process); wp: copies install write-protected pages.");

static PyObject *lp_start(PyObject *self, PyObject *args)
{
    int fd, wp;
    (void)self;
    if (!PyArg_ParseTuple(args, "ip", &fd, &wp))
        return NULL;
    if (uffd >= 0) {
        if (fd != uffd || wp != wp_mode) {
            PyErr_SetString(PyExc_ValueError, "lazy pages already served from another userfaultfd");
            return NULL;
        }
        Py_RETURN_NONE;
    }
    scratch = malloc(MAX_CHUNK);
    if (scratch == NULL)
        return PyErr_NoMemory();
    uffd = fd;
    wp_mode = wp;
    int err = pthread_create(&thread, NULL, run, NULL);
    if (err != 0) {
        uffd = -1;
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    pthread_detach(thread);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(add_doc, "add(entries, fd, path)\n--\n\nAdd page chunks (packed ENTRY records, "
             "disjoint from every chunk already held) read from image fd (duplicated here).");

static PyObject *lp_add(PyObject *self, PyObject *args)
{
    Py_buffer b;
    int fd;
    const char *path;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*is", &b, &fd, &path))
        return NULL;
    size_t n = (size_t)b.len / sizeof(struct entry);
    PyObject *ret = NULL;
    if ((size_t)b.len % sizeof(struct entry) != 0) {
        PyErr_SetString(PyExc_ValueError, "entries are not whole records");
        goto out;
    }
    const struct entry *es = b.buf;
    if (n == 0) {
        ret = Py_None;
        Py_INCREF(ret);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (es[i].len == 0 || es[i].len > MAX_CHUNK || es[i].len % PAGE || es[i].addr % PAGE ||
            es[i].crc > 0xffffffffu) {
            PyErr_SetString(PyExc_ValueError, "invalid chunk entry");
            goto out;
        }
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto out;
    }
    pthread_mutex_lock(&mu);
    struct source *ns = realloc(srcs, (nsrc + 1) * sizeof *srcs);
    struct chunk *nt = ntab + n > captab ? realloc(tab, (ntab + n) * sizeof *tab) : tab;
    char *p = strdup(path);
    if (ns != NULL)
        srcs = ns;
    if (nt != NULL && nt != tab) {
        tab = nt;
        captab = ntab + n;
    }
    if (ns == NULL || nt == NULL || p == NULL) {
        pthread_mutex_unlock(&mu);
        free(p);
        close(dup);
        PyErr_NoMemory();
        goto out;
    }
    srcs[nsrc] = (struct source){.fd = dup, .path = p};
    for (size_t i = 0; i < n; i++)
        tab[ntab + i] = (struct chunk){.e = es[i], .src = (int)nsrc, .state = MISSING};
    nsrc++;
    ntab += n;
    nmissing += n;
    qsort(tab, ntab, sizeof *tab, cmp_chunk);
    pthread_mutex_unlock(&mu);
    ret = Py_None;
    Py_INCREF(ret);
out:
    PyBuffer_Release(&b);
    return ret;
}

/* Apply f to every chunk overlapping [addr, addr+len), mu held, the GIL released. */
static size_t each(uint64_t addr, uint64_t len, int (*f)(struct chunk *, uint64_t, uint64_t))
{
    size_t count = 0;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&mu);
    for (size_t i = lower(addr); i < ntab && tab[i].e.addr < addr + len;)
        if (f(&tab[i], addr, len)) {
            count++;
            i++;
        } else {
            memmove(&tab[i], &tab[i + 1], (ntab - i - 1) * sizeof *tab); /* dropped */
            ntab--;
            count++;
        }
    pthread_mutex_unlock(&mu);
    Py_END_ALLOW_THREADS
    return count;
}

static int do_materialise(struct chunk *c, uint64_t a, uint64_t n)
{
    (void)a, (void)n;
    if (c->state == MISSING) {
        read_checked(c);
        install(c);
    }
    return 1;
}

static int do_forget(struct chunk *c, uint64_t a, uint64_t n)
{
    if (c->state == MISSING) {
        if (c->e.addr >= a && c->e.addr + c->e.len <= a + n) {
            c->state = DONE; /* about to be discarded whole: never read it */
            nmissing--;
        } else {
            read_checked(c); /* partly discarded: the rest must keep its data */
            install(c);
        }
    }
    return 1;
}

static int do_drop(struct chunk *c, uint64_t a, uint64_t n)
{
    (void)a, (void)n;
    if (c->state == MISSING)
        nmissing--;
    return 0;
}

static PyObject *range_op(PyObject *args, int (*f)(struct chunk *, uint64_t, uint64_t))
{
    unsigned long long addr, len;
    if (!PyArg_ParseTuple(args, "KK", &addr, &len))
        return NULL;
    return PyLong_FromSize_t(each(addr, len, f));
}

PyDoc_STRVAR(materialise_doc, "materialise(addr, len)\n--\n\nCopy in (checked) every missing "
             "chunk overlapping [addr, addr+len); returns the chunks seen.");

static PyObject *lp_materialise(PyObject *self, PyObject *args)
{
    (void)self;
    return range_op(args, do_materialise);
}

PyDoc_STRVAR(forget_doc, "forget(addr, len)\n--\n\n[addr, addr+len) is about to be discarded: "
             "chunks inside it are never read, chunks partly inside are copied in first.");

static PyObject *lp_forget(PyObject *self, PyObject *args)
{
    (void)self;
    return range_op(args, do_forget);
}

PyDoc_STRVAR(drop_doc, "drop(addr, len)\n--\n\n[addr, addr+len) is about to be unmapped: "
             "forget its chunks.");

static PyObject *lp_drop(PyObject *self, PyObject *args)
{
    (void)self;
    return range_op(args, do_drop);
}

PyDoc_STRVAR(fail_doc, "fail(message)\n--\n\nEnd the process as a bad chunk does: the line "
             "'vkckpt: message', status 125 (one line, whichever thread fails first).");

static PyObject *lp_fail(PyObject *self, PyObject *args)
{
    const char *msg;
    (void)self;
    if (!PyArg_ParseTuple(args, "s", &msg))
        return NULL;
    char line[4352];
    int n = snprintf(line, sizeof line, "vkckpt: %s\n", msg);
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&mu); /* held for good: no other line can follow */
    if (n > 0 && write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1) < 0)
        n = 0;
    _exit(EXIT_CORRUPT);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyDoc_STRVAR(stats_doc, "stats()\n--\n\n(chunks, missing, faults, copied, zero pages).");

static PyObject *lp_stats(PyObject *self, PyObject *noargs)
{
    (void)self, (void)noargs;
    pthread_mutex_lock(&mu);
    PyObject *r = Py_BuildValue("(nnKKK)", (Py_ssize_t)ntab, (Py_ssize_t)nmissing,
                                (unsigned long long)nfaults, (unsigned long long)ncopied,
                                (unsigned long long)nzero);
    pthread_mutex_unlock(&mu);
    return r;
}

/* scan(): framescan.c */
extern const char lp_scan_doc[];
PyObject *lp_scan(PyObject *self, PyObject *args);

static PyMethodDef methods[] = {
    {"scan", lp_scan, METH_VARARGS, lp_scan_doc},
    {"start", lp_start, METH_VARARGS, start_doc},
    {"add", lp_add, METH_VARARGS, add_doc},
    {"materialise", lp_materialise, METH_VARARGS, materialise_doc},
    {"forget", lp_forget, METH_VARARGS, forget_doc},
    {"drop", lp_drop, METH_VARARGS, drop_doc},
    {"fail", lp_fail, METH_VARARGS, fail_doc},
    {"stats", lp_stats, METH_NOARGS, stats_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_lazypages",
                                    "Page chunks faulted in from an image, checked first.", -1,
                                    methods, NULL, NULL, NULL, NULL};

/* A forked child has no serving thread and its ranges are not registered (no
 * UFFD_FEATURE_EVENT_FORK): it starts again with nothing held. */
static void after_fork_child(void)
{
    pthread_mutex_init(&mu, NULL);
    uffd = -1;
    ntab = nmissing = 0;
    nsrc = 0;
    nfaults = ncopied = nzero = 0;
}

PyMODINIT_FUNC PyInit__lazypages(void)
{
    pthread_atfork(NULL, NULL, after_fork_child);
    return PyModule_Create(&module);
}
