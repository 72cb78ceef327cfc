"""`vkckpt decode` and `vkckpt encode`: decode -> encode gives the same bytes, edits thaw,
hostile documents are refused in one line, and --pages none/ref behave as documented."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vkckpt.errors import ImageError
from vkckpt.guests.build import guest_path
from vkckpt.image import FORMAT_MINOR
from vkckpt.image.doctext import dump, load
from vkckpt.image.document import assemble, from_document, to_document
from vkckpt.image.reader import ImageReader

DATA = Path(__file__).parent / "data"


def vk(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vkckpt", *args], cwd=cwd,
                          capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sealed zstd incremental chain of pthreads, a plain full hello image, the fixtures."""
    w = tmp_path_factory.mktemp("codec")
    (w / "root").mkdir()
    for g in ("hello", "pthreads"):
        shutil.copy2(guest_path(g), w / "root" / g)
    (w / "key").write_bytes(b"decode test key, 32 secret bytes")
    (w / "key").chmod(0o600)
    r = vk("run", "--root", "root", "--freeze-every", "300000", "--incremental", "--compress",
           "zstd", "--key", "key", "-o", "s.img", "root/pthreads", cwd=w)
    assert r.returncode == 0, r.stderr
    r = vk("run", "--root", "root", "--quantum", "101", "--freeze-at", "500", "-o", "h.img",
           "root/hello", cwd=w)
    assert r.returncode == 0, r.stderr
    for f in DATA.glob("hello-v1.*.img"):
        shutil.copy2(f, w / f.name)
    return w


def images(w: Path) -> list[Path]:
    return sorted(w.glob("s.0*.img")) + [w / "h.img", *sorted(w.glob("hello-v1.*.img"))]


def test_decode_encode_is_byte_identical(work: Path) -> None:
    seen = set()
    for img in images(work):
        h = ImageReader(img).header
        seen.add((h.incremental, h.codec, h.minor))
        for fmt in ("yaml", "json"):
            text = dump(to_document(str(img)), fmt).encode()
            assert assemble(*from_document(load(text))) == img.read_bytes(), (img, fmt)
    now = FORMAT_MINOR
    assert {(True, "zstd", now), (False, "zstd", now), (False, "none", now)} <= seen
    assert {minor for _, _, minor in seen} == set(range(now + 1))  # every fixture's too


def test_cli_round_trip_with_and_without_key(work: Path) -> None:
    head = sorted(work.glob("s.0*.img"))[-1]
    for fmt in ("yaml", "json"):
        d = vk("decode", "--format", fmt, head.name, cwd=work)
        assert d.returncode == 0, d.stderr
        (work / f"doc.{fmt}").write_bytes(d.stdout)
        for extra in ((), ("--key", "key")):
            e = vk("encode", *extra, f"doc.{fmt}", "-o", "again.img", cwd=work)
            assert e.returncode == 0 and e.stdout.startswith(b"again.img: "), e.stderr
            assert (work / "again.img").read_bytes() == head.read_bytes()
    assert json.loads((work / "doc.json").read_text())["header"]["parent_id"] is not None
    # a plain image encoded with --key gains a seal that thaw --key accepts
    doc = vk("decode", "h.img", cwd=work).stdout
    (work / "h.yaml").write_bytes(doc)
    assert vk("encode", "--key", "key", "h.yaml", "-o", "hs.img", cwd=work).returncode == 0
    assert vk("verify", "-q", "--root", "root", "--key", "key", "hs.img", cwd=work
              ).returncode == 0
    assert vk("verify", "-q", "--root", "root", "--key", "key", "h.img", cwd=work
              ).returncode == 1


def _thread(doc: dict) -> dict:
    return next(r for r in doc["records"] if r["type"] == "thread")["fields"]


def test_an_edited_register_thaws(work: Path) -> None:
    doc = yaml.safe_load(vk("decode", "h.img", cwd=work).stdout)
    before = _thread(doc)["regs"]["rbx"]
    _thread(doc)["regs"]["rbx"] = before ^ 0x5A5A5A5A
    (work / "edit.yaml").write_text(yaml.safe_dump(doc))
    e = vk("encode", "edit.yaml", "-o", "edit.img", cwd=work)
    assert e.returncode == 0, e.stderr
    assert (work / "edit.img").read_bytes() != (work / "h.img").read_bytes()
    diff = vk("diff", "--no-memory", "h.img", "edit.img", cwd=work)
    assert diff.returncode == 1 and b"rbx" in diff.stdout, diff.stdout
    # thawed (in memory) and frozen again, the image holds the edited register
    assert vk("merge", "--root", "root", "edit.img", "-o", "m.img", cwd=work).returncode == 0
    again = yaml.safe_load(vk("decode", "--pages", "none", "m.img", cwd=work).stdout)
    assert _thread(again)["regs"]["rbx"] == before ^ 0x5A5A5A5A


def test_edited_pages_thaw_with_their_crcs_recomputed(work: Path) -> None:
    doc = to_document(str(work / "h.img"))  # codec none: the pages are stored as they are
    edited = 0
    for r in doc["records"]:
        if r["type"] == "pages" and b"argc=" in r["fields"]["data"]:
            r["fields"]["data"] = r["fields"]["data"].replace(b"argc=", b"ARGC=")
            edited += 1
    assert edited
    (work / "pages.yaml").write_text(dump(doc, "yaml"))
    assert vk("encode", "pages.yaml", "-o", "pages.img", cwd=work).returncode == 0
    plain = vk("thaw", "--root", "root", "--no-control", "h.img", cwd=work)
    thawed = vk("thaw", "--root", "root", "--no-control", "pages.img", cwd=work)
    assert plain.returncode == thawed.returncode == 0, thawed.stderr
    assert b"argc=1" in plain.stdout
    assert thawed.stdout == plain.stdout.replace(b"argc=1", b"ARGC=1")


def test_pages_none_and_ref(work: Path) -> None:
    img = work / "h.img"
    none = to_document(str(img), "none")
    assert none["pages"] == "none" and all(r["type"] != "pages" for r in none["records"])
    (work / "none.json").write_text(dump(none, "json"))
    e = vk("encode", "none.json", "-o", "nopages.img", cwd=work)
    assert e.returncode == 0 and b"0 pages (no page chunks" in e.stdout, e.stdout
    assert ImageReader(work / "nopages.img").verify()["chunks"] == 0
    ref = to_document(str(img), "ref")
    raw = img.read_bytes()
    chunks = [r["fields"] for r in ref["records"] if r["type"] == "pages"]
    assert chunks and all("data" not in f for f in chunks)
    for f in chunks:
        off, n = f["ref"]["offset"], f["ref"]["length"]
        assert int.from_bytes(raw[off:off + 4], "little") == n - 4
    (work / "ref.yaml").write_text(dump(ref, "yaml"))
    bad = vk("encode", "ref.yaml", "-o", "x.img", cwd=work)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert b"--pages ref" in bad.stderr and not (work / "x.img").exists()


def _doc(work: Path) -> dict:
    return to_document(str(work / "h.img"))


def _set(doc: dict, rtype: str, key: str, value: object) -> dict:
    next(r for r in doc["records"] if r["type"] == rtype)[key] = value
    return doc


def _bad_yaml_base64(doc: dict) -> bytes:
    """doc as YAML with one !!binary value spoilt by characters base64 does not have."""
    text = dump(doc, "yaml")
    at = text.index("!!binary") + len("!!binary")
    at = text.index("\n", at) + 1
    return (text[:at] + text[at:].replace("A", "@", 1)).encode()


def _hostile(work: Path) -> dict[str, bytes]:
    good = dump(_doc(work), "json")
    pages = next(r for r in _doc(work)["records"] if r["type"] == "pages")["fields"]
    short = _doc(work)  # a chunk one page short of its count: no CRC can be computed
    chunk = next(r for r in short["records"] if r["type"] == "pages")["fields"]
    chunk["count"] += 1
    big = _doc(work)
    next(r for r in big["records"] if r["type"] == "pages")["fields"]["data"] = bytes(3 << 20)
    return {
        "huge record count": b'{"records": [' + b"0," * 7_000_000 + b"0]}",
        "version not int": dump(_set(_doc(work), "kernel", "version", "one"), "json").encode(),
        "critical not bool": dump(_set(_doc(work), "thread", "critical", "yes"), "yaml").encode(),
        "fields a list": dump(_set(_doc(work), "process", "fields", [1, 2]), "json").encode(),
        "bad base64 json": good.replace(base64.b64encode(pages["data"]).decode()[:8],
                                        "@@@@@@@@", 1).encode(),
        "bad base64 yaml": _bad_yaml_base64(_doc(work)),
        "yaml aliases": b"a: &a [1, 2]\nb: [*a, *a, *a]\n",
        "deep nesting": b"[" * 100_000 + b"]" * 100_000,
        "not a document": b"- 1\n- 2\n",
        "bad header id": good.replace('"vkernel_id": "', '"vkernel_id": "zz', 1).encode(),
        "short chunk": dump(short, "json").encode(),
        "oversized bytes": dump(big, "yaml").encode(),
        "not yaml": b"{ this is: [not, json",
    }


#: What each hostile document's one line must say.
WHY = {"huge record count": "objects", "version not int": "version 'one'",
       "critical not bool": "critical 'yes'", "fields a list": "fields must be a map",
       "bad base64 json": "not valid base64", "bad base64 yaml": "not valid base64",
       "yaml aliases": "aliases", "deep nesting": "nesting", "not a document": "not a vkckpt",
       "bad header id": "vkernel_id", "short chunk": "hold 8192 bytes instead of 12288",
       "oversized bytes": "byte limit",
       "not yaml": "not valid JSON or YAML"}


def test_hostile_documents_are_refused_in_one_line(work: Path) -> None:
    hostile = _hostile(work)
    assert set(hostile) == set(WHY)
    for name, text in hostile.items():
        with pytest.raises(ImageError) as got:
            assemble(*from_document(load(text)))
            if name == "short chunk":  # the reader's own check, as encode runs it
                from vkckpt.image.document import check_bytes
                check_bytes(assemble(*from_document(load(text))))
        assert "\n" not in str(got.value) and WHY[name] in str(got.value), (name, got.value)
    (work / "hostile.yaml").write_bytes(_hostile(work)["short chunk"])
    r = vk("encode", "hostile.yaml", "-o", "hostile.img", cwd=work)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(b"vkckpt: hostile.yaml does not encode to a valid image: the "
                               b"encoded image is corrupted: pages 0..2"), r.stderr
    assert not (work / "hostile.img").exists()


def test_a_record_no_writer_writes_is_not_decoded(work: Path) -> None:
    import msgpack

    from vkckpt.testing.hostile_images import load_records, write_records
    recs = load_records(work / "h.img")
    meta = next(i for i, r in enumerate(recs) if r[0] == "meta")
    t, v, c, f = recs[meta]
    recs[meta] = msgpack.packb([t, v, c, dict(reversed(f.items()))])  # keys unsorted
    write_records(work / "odd.img", work / "h.img", recs)
    assert ImageReader(work / "odd.img").verify()["records"] == len(recs)
    r = vk("decode", "odd.img", cwd=work)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert b"canonical" in r.stderr
    missing = vk("decode", "nope.img", cwd=work)
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
