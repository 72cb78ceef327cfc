"""Fixed limits of the Linux x86-64 ABI that guests can observe."""

NOFILE = 1024          # RLIMIT_NOFILE's default and ceiling: descriptors are 0 .. NOFILE-1
UIO_MAXIOV = 1024      # most iovecs one readv/writev/sendmsg takes
MAX_RW_COUNT = 0x7FFF_F000  # most bytes one read/write moves (INT_MAX rounded down to a page)
POLL_MAX_FDS = NOFILE  # poll/ppoll refuse more descriptors than RLIMIT_NOFILE (EINVAL)
PIPE_BUF = 4096        # writes up to this size to a pipe are atomic (and POLLOUT promises room)

RLIM_INFINITY = (1 << 64) - 1
RLIMIT_STACK, RLIMIT_NPROC, RLIMIT_NOFILE = 3, 6, 7  # getrlimit(2) resources
#: (soft, hard) of the resource limits a process starts with that are not unlimited, by
#: number (the others are unlimited; only RLIMIT_NOFILE is enforced, vkckpt/rlimits.py).
RLIMITS = {RLIMIT_STACK: (8 << 20, RLIM_INFINITY), RLIMIT_NPROC: (4096, 4096),
           RLIMIT_NOFILE: (NOFILE, NOFILE)}
RLIMIT_NLIMITS = 16
NR_OPEN = NOFILE       # fs.nr_open: the highest RLIMIT_NOFILE anyone may set
