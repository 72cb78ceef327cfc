"""The control protocol's messages: one line of JSON each way, checked field by field.

A message is one flat JSON object (no nesting), in strict UTF-8, at most MAX_LINE bytes,
without duplicate keys, NaN or infinities; every string is free of NUL and lone surrogates.
Requests and answers then have exactly the fields below, of exactly these types.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time

from vkckpt.errors import VkError

MAX_LINE = 16 << 10     # a request holds one path (PATH_MAX 4096 bytes, escaped at most x6)
MAX_DEPTH = 1           # one object of scalars
PATH_MAX = 4096
MAX_TARGET = 300        # a migration's HOST:PORT

#: Request fields: name -> (type, required).
REQUEST_FIELDS = {"op": (str, True), "output": (str, False), "stop": (bool, False),
                  "incremental": (bool, False), "to": (str, False)}
OK_FIELDS = {"ok": bool, "image": str, "ticks": int, "image_id": str, "pages": int}
FAILED_FIELDS = {"ok": bool, "error": str}
_HEX_ID = re.compile(r"[0-9a-f]{32}")


class WireError(VkError):
    """A message that breaks the protocol."""


def peer_uid(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a Unix socket (SO_PEERCRED)."""
    ucred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", ucred)
    return pid, uid


def read_line(sock: socket.socket, deadline: float, what: str) -> bytes:
    """The one message line (a `what`: request or answer) the peer sends, without its
    newline, by `deadline` (time.monotonic()).  TimeoutError when it is late; WireError
    when the connection ends first, the line is too long or another follows it."""
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(4096)
        if not chunk:
            raise WireError(f"the connection closed before the end of the {what} line")
        data += chunk
        if len(data) > MAX_LINE + 1:
            raise WireError(f"{what} longer than {MAX_LINE} bytes")
    line, _, rest = data.partition(b"\n")
    if rest:
        raise WireError(f"more than one {what} line")
    return line


def printable(obj: object, limit: int = 1000) -> str:
    """str(obj) as one line safe for a JSON string and a terminal: control characters and
    lone surrogates escaped, at most limit characters (then "...")."""
    text = str(obj).encode("utf-8", "backslashreplace").decode("utf-8")
    safe = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
    return safe if len(safe) <= limit else safe[:limit] + "..."


def decode(line: bytes) -> dict:
    """The object a message line holds (without its newline); WireError if it is not one."""
    if len(line) > MAX_LINE:
        raise WireError(f"longer than {MAX_LINE} bytes")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("not UTF-8") from None
    _check_depth(text)
    try:
        body = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise WireError(f"not JSON: {str(exc).splitlines()[0][:80]}") from None
    if not isinstance(body, dict):
        raise WireError("not a JSON object")
    for key, value in body.items():
        if isinstance(value, str):
            _check_string(key, value)
    return body


def _check_depth(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH before the parser recurses into it."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise WireError(f"nested deeper than {MAX_DEPTH}")
        elif ch in "]}":
            depth -= 1


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise WireError(f"field {key!r} given twice")
        out[key] = value
    return out


def _no_constant(name: str) -> None:
    raise WireError(f"{name} is not a number")


def _check_string(key: str, value: str) -> None:
    if "\0" in value:
        raise WireError(f"field {key!r} holds a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise WireError(f"field {key!r} holds a lone surrogate") from None


def _check_fields(body: dict, fields: dict[str, tuple[type, bool]]) -> None:
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise WireError(f"unknown field {unknown[0]!r}")
    for name, (kind, required) in fields.items():
        if name not in body:
            if required:
                raise WireError(f"field {name!r} is missing")
            continue
        value = body[name]
        # bool is an int in Python: compare the exact type
        if type(value) is not kind:
            raise WireError(f"field {name!r} must be a {kind.__name__}")


def check_request(body: dict) -> dict:
    """body, if it is a valid freeze request; WireError otherwise."""
    _check_fields(body, REQUEST_FIELDS)
    if body["op"] != "freeze":
        raise WireError(f"unknown operation {body['op'][:40]!r} (only 'freeze')")
    out = body.get("output")
    if out is not None:
        if not out.startswith("/"):
            raise WireError("field 'output' must be an absolute path")
        if len(out.encode()) >= PATH_MAX:
            raise WireError(f"field 'output' is longer than {PATH_MAX - 1} bytes")
    if len(body.get("to", "")) > MAX_TARGET:
        raise WireError(f"field 'to' is longer than {MAX_TARGET} characters")
    return body


def check_answer(body: dict) -> dict:
    """body, if it is a valid answer to a freeze request; WireError otherwise."""
    if type(body.get("ok")) is not bool:
        raise WireError("field 'ok' must be a bool")
    fields = OK_FIELDS if body["ok"] else FAILED_FIELDS
    _check_fields(body, {name: (kind, True) for name, kind in fields.items()})
    if body["ok"]:
        if not _HEX_ID.fullmatch(body["image_id"]):
            raise WireError("field 'image_id' must be 32 hexadecimal digits")
        if body["ticks"] < 0 or body["pages"] < 0:
            raise WireError("negative 'ticks' or 'pages'")
        if not body["image"].startswith(("/", "tcp:")):
            raise WireError("field 'image' must be an absolute path or tcp:HOST:PORT")
    return body


def encode(body: dict) -> bytes:
    """One message line (ASCII JSON and a newline)."""
    return json.dumps(body, ensure_ascii=True).encode() + b"\n"
