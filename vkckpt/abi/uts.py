"""The machine a guest is told it runs on: uname(2), /proc/version, /proc/sys/kernel/*."""

SYSNAME = "Linux"
NODENAME = "vkckpt"
RELEASE = "6.1.0-vkckpt"
VERSION = "#1 SMP vkckpt"
MACHINE = "x86_64"
DOMAINNAME = "(none)"
PID_MAX = 4194304  # /proc/sys/kernel/pid_max: x86-64 Linux's default on big machines
