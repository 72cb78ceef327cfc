/*
 * Frame scan for vkckpt.host._lazypages (scan()): an image's record frames located, and its
 * page chunks parsed, in C -- what ImageReader._frame_heads and _page_chunk do in Python,
 * for the bytes ImageWriter writes.  Any doubt returns None and the Python walk (which says
 * what is wrong) runs instead.  Used by every thaw, lazy or not (vkckpt/image/reader.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define PAGE 4096u

struct frame {
    uint64_t off, n, kind; /* kind: 0 another record, 1 a page chunk, 2 "pages" but not exact */
    uint64_t buf, first, count, codec, crc, data_off, nbytes;
};

#define HEAD_MAX 85 /* _PAGE_HEAD_MAX of vkckpt/image/frames.py */
#define PREFETCH 32 /* frame heads read ahead */

/* A msgpack unsigned integer in its shortest form at b[*pos..lim): 0 unless well formed. */
static int read_uint(const unsigned char *b, size_t lim, size_t *pos, uint64_t *v)
{
    size_t p = *pos, w;
    uint64_t min;
    if (p >= lim)
        return 0;
    unsigned t = b[p];
    if (t < 0x80) {
        *v = t;
        *pos = p + 1;
        return 1;
    }
    switch (t) {
    case 0xcc: w = 1, min = 0x80; break;
    case 0xcd: w = 2, min = 0x100; break;
    case 0xce: w = 4, min = 0x10000; break;
    case 0xcf: w = 8, min = 0x100000000ull; break;
    default: return 0;
    }
    if (p + 1 + w > lim)
        return 0;
    uint64_t x = 0;
    for (size_t i = 0; i < w; i++)
        x = x << 8 | b[p + 1 + i];
    if (x < min)
        return 0;
    *v = x;
    *pos = p + 1 + w;
    return 1;
}

static int key(const unsigned char *b, size_t lim, size_t *pos, const char *k)
{
    size_t n = strlen(k);
    if (*pos + n > lim || memcmp(b + *pos, k, n) != 0)
        return 0;
    *pos += n;
    return 1;
}

static int pread_all(int fd, unsigned char *b, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, b + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        got += (size_t)r;
    }
    return 1;
}

/* Parse the "pages" record at f (its first bytes in head); 1 when byte-exact. */
static int parse_chunk(int fd, struct frame *f, const unsigned char *head, size_t hl,
                       size_t plen, uint64_t max_bin)
{
    size_t pos = plen;
    uint64_t *vals[4] = {&f->buf, &f->codec, &f->count, &f->crc};
    const char *keys[4] = {"\xa3" "buf", "\xa5" "codec", "\xa5" "count", "\xa3" "crc"};
    for (int i = 0; i < 4; i++)
        if (!key(head, hl, &pos, keys[i]) || !read_uint(head, hl, &pos, vals[i]))
            return 0;
    if (!key(head, hl, &pos, "\xa4" "data") || pos >= hl)
        return 0;
    size_t w = head[pos] == 0xc4 ? 1 : head[pos] == 0xc5 ? 2 : head[pos] == 0xc6 ? 4 : 0;
    if (w == 0 || pos + 1 + w > hl)
        return 0;
    uint64_t nb = 0;
    for (size_t i = 0; i < w; i++)
        nb = nb << 8 | head[pos + 1 + i];
    if ((w == 2 && nb < 0x100) || (w == 4 && nb < 0x10000) || nb > max_bin)
        return 0;
    pos += 1 + w;
    if (pos + nb + 7 > f->n || pos + nb + 15 < f->n)
        return 0;
    size_t tl = (size_t)(f->n - pos - nb), tp = 0;
    unsigned char tail[16];
    if (!pread_all(fd, tail, tl, f->off + 4 + pos + nb))
        return 0;
    if (!key(tail, tl, &tp, "\xa5" "first") || !read_uint(tail, tl, &tp, &f->first) || tp != tl)
        return 0;
    f->nbytes = nb;
    f->data_off = f->off + 4 + pos;
    return 1;
}

const char lp_scan_doc[] = "scan(fd, start, end, max_record, max_frames, max_bin, prefix)\n--\n\n"
    "The frames of fd's records in [start, end) as packed FRAME records (offset, "
    "length, kind, and a page chunk's fields), or None on any doubt.";

PyObject *lp_scan(PyObject *self, PyObject *args)
{
    int fd;
    unsigned long long start, end, max_record, max_frames, max_bin;
    Py_buffer pre;
    (void)self;
    if (!PyArg_ParseTuple(args, "iKKKKKy*", &fd, &start, &end, &max_record, &max_frames,
                          &max_bin, &pre))
        return NULL;
    struct frame *fs = NULL;
    size_t nf = 0, cap = 0;
    int ok = pre.len > 0 && pre.len < 64;
    Py_BEGIN_ALLOW_THREADS
    uint64_t off = start, ahead = 0;
    unsigned char head[4 + HEAD_MAX];
    while (ok && off < end) {
        if (end - off < 4 || nf >= max_frames) {
            ok = 0;
            break;
        }
        size_t want = (size_t)(end - off < sizeof head ? end - off : sizeof head);
        if (!pread_all(fd, head, want, off)) {
            ok = 0;
            break;
        }
        uint64_t n = (uint64_t)head[0] | (uint64_t)head[1] << 8 | (uint64_t)head[2] << 16 |
                     (uint64_t)head[3] << 24;
        if (n == 0 || n > max_record || n > end - off - 4) {
            ok = 0;
            break;
        }
        if (nf == cap) {
            size_t nc = cap ? cap * 2 : 256;
            struct frame *g = realloc(fs, nc * sizeof *fs);
            if (g == NULL) {
                ok = 0;
                break;
            }
            fs = g, cap = nc;
        }
        /* Frames of big records tend to repeat their size: ask the host to read the heads
         * where the next ones would lie, so a cold page cache serves them in parallel. */
        if (n >= PAGE) {
            for (uint64_t g = off + 4 + n; g < end && g <= off + PREFETCH * (4 + n); g += 4 + n)
                if (g > ahead) {
                    posix_fadvise(fd, (off_t)(g & ~(uint64_t)(PAGE - 1)), 2 * PAGE,
                                  POSIX_FADV_WILLNEED);
                    ahead = g;
                }
        }
        struct frame *f = &fs[nf++];
        memset(f, 0, sizeof *f);
        f->off = off;
        f->n = n;
        size_t hl = (size_t)(n < HEAD_MAX ? n : HEAD_MAX);
        if (n > (uint64_t)pre.len && want >= 4 + hl && memcmp(head + 4, pre.buf, pre.len) == 0)
            f->kind = parse_chunk(fd, f, head + 4, hl, (size_t)pre.len, max_bin) ? 1 : 2;
        off += 4 + n;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&pre);
    PyObject *r;
    if (ok)
        r = PyBytes_FromStringAndSize((const char *)fs, (Py_ssize_t)(nf * sizeof *fs));
    else {
        r = Py_None;
        Py_INCREF(r);
    }
    free(fs);
    return r;
}

