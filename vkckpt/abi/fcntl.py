"""open(2)/fcntl(2) flags, seek whences, file modes and ioctl numbers (Linux x86-64)."""

O_ACCMODE, O_RDONLY, O_WRONLY, O_RDWR = 3, 0, 1, 2
O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC, O_APPEND = 0o100, 0o200, 0o400, 0o1000, 0o2000
O_NONBLOCK, O_DSYNC, O_DIRECTORY, O_NOFOLLOW = 0o4000, 0o10000, 0o200000, 0o400000
O_CLOEXEC, O_PATH, O_LARGEFILE = 0o2000000, 0o10000000, 0o100000
O_DIRECT_PIPE = 0o40000  # O_DIRECT: packet mode for pipe2
#: Status flags F_SETFL may change.
SETFL_MASK = O_APPEND | O_NONBLOCK

F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL = 0, 1, 2, 3, 4
F_GETLK, F_SETLK, F_SETLKW = 5, 6, 7
F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2  # struct flock's l_type (a short at offset 0)
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38  # open file description locks
#: struct flock: l_type, l_whence (shorts), 4 pad, l_start, l_len (off_t), l_pid, 4 pad.
FLOCK_FORMAT, FLOCK_SIZE = "<hh4xqqi4x", 32
OFFSET_MAX = (1 << 63) - 1  # a lock "to end of file" ends here
LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN = 1, 2, 4, 8  # flock(2) operations
LOCK_MAND = 32  # Samba's old share modes: Linux ignores them (flock returns 0)
F_DUPFD_CLOEXEC = 1030
FD_CLOEXEC = 1
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR, AT_EMPTY_PATH = 0x100, 0x200, 0x1000
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2

S_IFMT, S_IFIFO, S_IFCHR, S_IFDIR, S_IFREG, S_IFLNK = 0o170000, 0o10000, 0o20000, 0o40000, \
    0o100000, 0o120000
S_IFSOCK = 0o140000
DT_UNKNOWN, DT_FIFO, DT_CHR, DT_DIR, DT_REG, DT_LNK, DT_SOCK = 0, 1, 2, 4, 8, 10, 12

TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO = 0x5401, 0x5413, 0x541B, 0x5421

# poll(2) events
POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLNVAL = 1, 2, 4, 8, 16, 32

S_IFBLK = 0o60000
# fallocate(2) modes
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x1, 0x2
# setxattr(2) flags and limits
XATTR_CREATE, XATTR_REPLACE = 0x1, 0x2
XATTR_NAME_MAX, XATTR_SIZE_MAX, XATTR_LIST_MAX = 255, 65536, 65536
