"""Threads: register contexts, run states, futex wait queues."""

from vkckpt.threads.futex import FutexTable
from vkckpt.threads.thread import Thread, ThreadState
from vkckpt.threads.wait import Block, WaitQueue

__all__ = ["Block", "FutexTable", "Thread", "ThreadState", "WaitQueue"]
