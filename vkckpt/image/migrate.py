"""Upgrades of old record versions to the versions this vkckpt understands.

A record carries ``(type, version)``.  When a reader asks for version N of a type and
the image holds an older version V, the reader applies ``MIGRATIONS[(type, V)]``, then
``MIGRATIONS[(type, V + 1)]`` and so on until it reaches N.  Each function takes the
fields of one version and returns the fields of the next; it must not mutate its input
in ways the caller could observe (copy first) and must treat the input as untrusted:
a malformed old record should raise KeyError/TypeError/ValueError, which the reader
turns into an ImageError naming the image.

To change a record's layout: bump the version its writer emits, add the reader's new
version to its ``known`` mapping, and register ``@migration("type", old_version)``.
"""

from __future__ import annotations

from collections.abc import Callable

Migration = Callable[[dict], dict]

MIGRATIONS: dict[tuple[str, int], Migration] = {}


def migration(rtype: str, from_version: int) -> Callable[[Migration], Migration]:
    """Register the decorated function as the upgrade of `rtype` from `from_version`."""

    def register(fn: Migration) -> Migration:
        key = (rtype, from_version)
        if key in MIGRATIONS:
            raise ValueError(f"a migration for record type {rtype!r} v{from_version} exists")
        MIGRATIONS[key] = fn
        return fn

    return register


class MigrationError(ValueError):
    """A record could not be upgraded; the reader rewraps it as an ImageError."""


def upgrade(rtype: str, version: int, fields: dict, target: int) -> dict:
    """Return `fields` of `rtype` upgraded from `version` to `target` via MIGRATIONS."""
    while version < target:
        fn = MIGRATIONS.get((rtype, version))
        if fn is None:
            raise MigrationError(
                f"record type {rtype!r} is at version {version} and this vkckpt has no "
                f"migration from it (it needs version {target})"
            )
        try:
            fields = fn(fields)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise MigrationError(
                f"record type {rtype!r} version {version} is malformed and could not be "
                f"upgraded ({type(e).__name__}: {e})"
            ) from e
        if not isinstance(fields, dict):
            raise MigrationError(f"migration of {rtype!r} from v{version} returned no fields")
        version += 1
    return fields


# --- Example -------------------------------------------------------------------------
# "example.counter" is a synthetic record type used by the test-suite to exercise the
# machinery.  Version 1 stored {"n": int}; version 2 renamed it and added a unit:
# {"count": int, "unit": str}.  Real record types register their migrations the same way.


@migration("example.counter", 1)
def _example_counter_v1_to_v2(fields: dict) -> dict:
    """example.counter v1 {"n"} -> v2 {"count", "unit"}."""
    n = fields["n"]
    if not isinstance(n, int):
        raise TypeError("field 'n' is not an integer")
    rest = {k: v for k, v in fields.items() if k != "n"}
    return {**rest, "count": n, "unit": "ticks"}
