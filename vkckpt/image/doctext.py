"""An image document (document.py) as YAML or JSON text, and back, bounded.

YAML writes bytes as !!binary; JSON writes them as {"!!binary": "<base64>"}.  Reading
refuses what could exhaust memory before building it: a text over MAX_DOCUMENT bytes, more
separators than the reader's objects-per-pass limit allows, YAML aliases (the "billion
laughs"), and nesting deeper than the reader's limit.
"""

from __future__ import annotations

import base64
import binascii
import json

from vkckpt.errors import ImageError
from vkckpt.image.limits import DEFAULT_LIMITS, Limits

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORMATS = ("yaml", "json")
#: The largest document text encode reads.
MAX_DOCUMENT = 256 << 20
_BIN = "!!binary"
#: Levels a document adds above a record's fields (document, records list, record).
_DOC_LEVELS = 3


def _fail(problem: str) -> ImageError:
    return ImageError(f"document {problem}")


def _to_json(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return {_BIN: base64.b64encode(obj).decode("ascii")}
    if isinstance(obj, dict):
        if len(obj) == 1 and _BIN in obj:
            raise ImageError(f"a map keyed {_BIN!r} cannot be written as JSON; use yaml")
        if not all(isinstance(k, str) for k in obj):
            raise ImageError("a map with bytes keys cannot be written as JSON; use yaml")
        return {k: _to_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_json(v) for v in obj]
    return obj


def dump(doc: dict, fmt: str) -> str:
    """doc as text in fmt ("yaml" or "json")."""
    if fmt == "json":
        return json.dumps(_to_json(doc), indent=1) + "\n"
    import yaml
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(doc, Dumper=dumper, sort_keys=False, width=100, allow_unicode=False)


def _from_json(obj: Any, depth: int, lim: Limits) -> Any:
    if depth > lim.max_depth + _DOC_LEVELS:
        raise _fail(f"nests deeper than {lim.max_depth} levels")
    if isinstance(obj, dict):
        if len(obj) == 1 and _BIN in obj:
            text = obj[_BIN]
            if not isinstance(text, str):
                raise _fail(f"has a {_BIN} value that is not a string")
            try:
                return base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise _fail(f"has a {_BIN} value that is not valid base64") from None
        return {k: _from_json(v, depth + 1, lim) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_json(v, depth + 1, lim) for v in obj]
    return obj


def _depth_ok(obj: Any, limit: int) -> bool:
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return False
        if isinstance(o, (dict, list)):
            stack.extend((x, d + 1) for x in (o.values() if isinstance(o, dict) else o))
    return True


def load(text: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Any:
    """The document in text (JSON when it starts with "{", else YAML), bounded."""
    if len(text) > MAX_DOCUMENT:
        raise _fail(f"is {len(text)} bytes, over the {MAX_DOCUMENT} byte limit")
    separators = text.count(b",") + text.count(b"\n") + text.count(b":")
    if separators > 2 * limits.max_pass_objects:
        raise _fail(f"holds more than {limits.max_pass_objects} objects")
    try:
        if text.lstrip()[:1] == b"{":
            return _from_json(json.loads(text), 1, limits)
        return _load_yaml(text, limits)
    except RecursionError:
        raise _fail(f"nests deeper than {limits.max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise _fail(f"is not valid JSON or YAML: {str(e).splitlines()[0]}") from None


def _strict_binary(loader: Any, node: Any) -> bytes:
    """!!binary, refusing what is not base64 (PyYAML's own skips stray characters)."""
    text = "".join(loader.construct_scalar(node).split())
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _fail("has a !!binary value that is not valid base64") from None


def _loader() -> Any:
    import yaml
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = type("DocumentLoader", (base,), {})
    loader.add_constructor("tag:yaml.org,2002:binary", _strict_binary)
    return loader


def _load_yaml(text: bytes, limits: Limits) -> Any:
    import yaml
    loader = _loader()
    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.AliasEvent):
                raise _fail("uses YAML aliases, which no decoded image holds")
        obj = yaml.load(text, Loader=loader)
    except yaml.YAMLError as e:
        raise _fail(f"is not valid YAML: {' '.join(str(e).split())}") from None
    if not _depth_ok(obj, limits.max_depth + _DOC_LEVELS):
        raise _fail(f"nests deeper than {limits.max_depth} levels")
    return obj
