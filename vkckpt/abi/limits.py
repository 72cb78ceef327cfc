"""Fixed limits of the Linux x86-64 ABI that guests can observe."""

NOFILE = 1024          # RLIMIT_NOFILE (soft and hard): descriptors are 0 .. NOFILE-1
UIO_MAXIOV = 1024      # most iovecs one readv/writev/sendmsg takes
MAX_RW_COUNT = 0x7FFF_F000  # most bytes one read/write moves (INT_MAX rounded down to a page)
POLL_MAX_FDS = NOFILE  # poll/ppoll refuse more descriptors than RLIMIT_NOFILE (EINVAL)
PIPE_BUF = 4096        # writes up to this size to a pipe are atomic (and POLLOUT promises room)

# getrlimit(2) resources (asm-generic/resource.h) and their bounds
RLIMIT_STACK = 3
RLIMIT_NPROC = 6
RLIMIT_NOFILE = 7
RLIM_NLIMITS = 16
RLIM_INFINITY = (1 << 64) - 1
NR_OPEN = NOFILE       # fs.nr_open: the highest RLIMIT_NOFILE anyone may set
