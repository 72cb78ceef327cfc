"""Linux x86-64 ABI constants: syscall numbers, errno, signals, struct layouts."""
