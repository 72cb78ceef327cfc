"""The type grammar of saved-record fields, which each state module's schema piece uses.

A type is a name (`u64`, `i64`, `u32`, `i32`, `sig`, `bool`, `str`, `bytes`, `list`), a
name with a leading ``?`` (None allowed), a list ``[T]`` (each item T), a tuple of types (a
list of exactly that many items), a dict (a nested record) or ``Maybe(T)`` (None or T).
ckpt/schema.py collects the pieces and checks records against them before a thaw.
"""

from __future__ import annotations


class Maybe:
    """None, or a value of the wrapped type."""

    __slots__ = ("kind",)

    def __init__(self, kind: object) -> None:
        self.kind = kind
