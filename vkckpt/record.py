"""Plain record classes: what the runtime uses instead of dataclasses.

Importing ``dataclasses`` pulls in ``inspect`` (ast, dis, tokenize): ~12 ms of every start,
a quarter of the budget for thawing a small image (bench/thaw.py).  A record declares its
fields once, as ``__slots__``, and writes its ``__init__`` by hand (fast, explicit); these
bases add the rest.  Every ``__init__`` parameter is named like the field it sets, so
``replace`` can rebuild a record from its fields.
"""

from __future__ import annotations

_FIELDS_CACHE: dict[type, tuple[str, ...]] = {}


def field_names(cls: type) -> tuple[str, ...]:
    """Every field of a record class, base classes first."""
    names = _FIELDS_CACHE.get(cls)
    if names is None:
        seen: list[str] = []
        for klass in reversed(cls.__mro__):
            slots = klass.__dict__.get("__slots__", ())
            seen.extend((slots,) if isinstance(slots, str) else slots)
        names = _FIELDS_CACHE[cls] = tuple(n for n in seen if not n.startswith("__"))
    return names


class Record:
    """A mutable record compared by identity (like ``@dataclass(eq=False)``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n, '<unset>')!r}" for n in field_names(type(self)))
        return f"{type(self).__name__}({inner})"

    def replace(self, **changes: object) -> Record:
        """A copy with some fields changed (``dataclasses.replace``)."""
        kw = {n: getattr(self, n) for n in field_names(type(self))}
        kw.update(changes)
        return type(self)(**kw)


class Comparable(Record):
    """A mutable record compared by its fields, not hashable (like a plain ``@dataclass``)."""

    __slots__ = ()

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, n) for n in field_names(type(self)))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]


class Value(Comparable):
    """A record compared and hashed by its fields (like ``@dataclass(frozen=True)``).

    Nothing stops assignment, but values are treated as immutable: change one with replace.
    """

    __slots__ = ()

    def __hash__(self) -> int:
        return hash(self._key())
