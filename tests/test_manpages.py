"""The manual pages in manpages/: complete for the command line, lint-clean, rendered by man,
true to the code (vkckpt-abi(7) generated, vkckpt-image(5) checked by an independent reader),
and their EXAMPLES run.

Conventions the examples follow (so this file can run them):
  * in an .EX block of EXAMPLES, a line "$ CMD" is a shell command, run in order in a scratch
    directory holding `root/`, a guest root with the bundled guests; "CMD  # exit status N"
    documents its status (default 0; none is checked for "CMD &"); a command ending in a
    backslash continues on the next line;
  * the lines after a command are (some of) its output, stdout and stderr together; "..."
    in such a line stands for any text;
  * an .EX block right after the comment line `.\\" file: NAME` is saved as NAME first, one
    right after `.\\" no-run` is not run;
  * `vkckpt`, `python3` and `zig` run this Python's vkckpt, interpreter and ziglang.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tomllib
import zlib
from pathlib import Path

import msgpack
import pytest

import vkckpt
from vkckpt import KernelConfig, ProcessSpec, boot
from vkckpt import image as fmt
from vkckpt.ckpt.chain import ImageChain
from vkckpt.ckpt.freeze import FreezePlan, drive
from vkckpt.ckpt.snapshot import RECORD_VERSIONS, write_image
from vkckpt.cli import build_parser
from vkckpt.engine import regs as R
from vkckpt.guests.build import guest_path
from vkckpt.image import limits
from vkckpt.image.header import _HEADER
from vkckpt.manpages import DATE, abi_page
from vkckpt.syscalls.table import ENTRIES

MANDIR = Path(__file__).resolve().parents[1] / "manpages"
PAGES = ["vkckpt.1", "vkckpt-run.1", "vkckpt-thaw.1", "vkckpt-freeze.1", "vkckpt-inspect.1",
         "vkckpt-receive.1", "vkckpt-verify.1", "vkckpt-regress.1", "vkckpt-check.1",
         "vkckpt-completion.1", "vkckpt-diff.1", "vkckpt-merge.1", "vkckpt-decode.1",
         "vkckpt-encode.1", "vkckpt-rebase.1",
         "vkckpt-export.1", "vkckpt-fanout.1", "checkpoint.2", "vkckpt.3",
         "vkckpt-image.5", "vkckpt.yaml.5", "vkckpt-abi.7", "vkckpt-security.7"]
#: The page documenting each subcommand of `vkckpt`.
COMMAND_PAGES = {"run": "vkckpt-run.1", "thaw": "vkckpt-thaw.1", "freeze": "vkckpt-freeze.1",
                 "receive": "vkckpt-receive.1",
                 "inspect": "vkckpt-inspect.1", "verify": "vkckpt-verify.1",
                 "regress": "vkckpt-regress.1", "check": "vkckpt-check.1", "diff": "vkckpt-diff.1",
                 "merge": "vkckpt-merge.1", "rebase": "vkckpt-rebase.1",
                 "fanout": "vkckpt-fanout.1",
                 "decode": "vkckpt-decode.1", "encode": "vkckpt-encode.1",
                 "completion": "vkckpt-completion.1", "export": "vkckpt-export.1",
                 "demo": "vkckpt.1"}
#: Pages whose EXAMPLES are run (vkckpt-abi(7) has none).
RUNNABLE = [p for p in PAGES if p != "vkckpt-abi.7"]
#: Guests the examples expect in root/.
GUESTS = ["hello", "pthreads", "segfault", "forkpipe", "ckpt_signals", "ckpt_self", "compute"]
NOT_IMPLEMENTED = "not yet implemented in this version"
WIDTH = 80

_ESCAPES = {"\\-": "-", "\\e": "\\", "\\&": "", "\\(aq": "'", "\\(dq": '"', "\\(ga": "`",
            "\\(ti": "~", "\\(ha": "^", "\\ ": " ", "\\(em": "\u2014", "\\(en": "\u2013",
            "\\(mu": "\u00d7", "\\(lq": "\u201c", "\\(rq": "\u201d", "\\(bu": "\u2022",
            "\\c": "", "\\fB": "", "\\fI": "", "\\fR": "", "\\fP": ""}


def unroff(text: str) -> str:
    """Text with the roff escapes these pages use replaced by what they render as."""
    def sub(m: re.Match) -> str:
        if m.group(0) not in _ESCAPES:
            raise ValueError(f"unexpected roff escape {m.group(0)!r}")
        return _ESCAPES[m.group(0)]
    return re.sub(r"\\\(..|\\f.|\\.", sub, text)


def source(page: str) -> str:
    return (MANDIR / page).read_text()


def sections(page: str) -> dict[str, str]:
    """Section name -> its roff source."""
    parts = re.split(r'^\.SH "?([^"\n]*)"?\n', source(page), flags=re.M)
    return {name: body for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def words(roff: str) -> str:
    """Roff source as plain text, one space between words (macro names dropped)."""
    lines = [re.sub(r"^\.[A-Z]{1,2}\b ?", "", ln) for ln in roff.splitlines()
             if not ln.startswith('.\\"')]
    return " ".join(unroff(" ".join(lines)).replace('"', " ").split())


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._subparsers._group_actions:  # noqa: SLF001 - argparse has no API
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("vkckpt has no subcommands")


# -- the pages exist and cover the command line --------------------------------------------


def test_every_page_exists_and_nothing_else() -> None:
    assert sorted(p.name for p in MANDIR.iterdir()) == sorted(PAGES)


def test_pages_are_installed_with_the_package() -> None:
    conf = tomllib.loads((MANDIR.parent / "pyproject.toml").read_text())
    data_files = conf.get("tool", {}).get("setuptools", {}).get("data-files", {})
    for page in PAGES:
        where = f"share/man/man{page.rsplit('.', 1)[1]}"
        assert any(fnmatch.fnmatchcase(f"manpages/{page}", pattern)
                   for pattern in data_files.get(where, [])), \
            f"pyproject.toml: [tool.setuptools.data-files] {where!r} must install {page}"


def test_every_subcommand_has_a_page() -> None:
    help_text = subprocess.run([sys.executable, "-m", "vkckpt", "--help"], capture_output=True,
                               text=True, check=True).stdout
    for name in subcommands():
        assert name in help_text
        assert name in COMMAND_PAGES, f"no manual page for `vkckpt {name}`"
        synopsis = words(sections(COMMAND_PAGES[name])["SYNOPSIS"])
        assert f"vkckpt {name}" in synopsis


@pytest.mark.parametrize("name", sorted(COMMAND_PAGES))
def test_every_option_is_documented(name: str) -> None:
    parsers = subcommands()
    if name not in parsers:
        pytest.skip(f"`vkckpt {name}` is not implemented")
    secs = sections(COMMAND_PAGES[name])
    options, synopsis = words(secs["OPTIONS"]), words(secs["SYNOPSIS"])
    for action in parsers[name]._actions:  # noqa: SLF001
        if not action.option_strings:
            continue
        for opt in action.option_strings:
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", options), \
                f"{opt} of `vkckpt {name}` is not in OPTIONS of {COMMAND_PAGES[name]}"
        if "-h" not in action.option_strings:
            assert any(opt in synopsis for opt in action.option_strings), \
                f"{action.option_strings} of `vkckpt {name}` is not in the SYNOPSIS"
        default = action.default
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            shown = str(int(default)) if float(default).is_integer() else str(default)
            assert shown in options, f"the default {shown} of {action.option_strings}"
        for choice in action.choices or ():
            assert choice in options


def test_top_level_options_are_documented() -> None:
    text = words(sections("vkckpt.1")["OPTIONS"])
    for action in build_parser()._actions:  # noqa: SLF001
        for opt in action.option_strings:
            assert opt in text


def test_regress_page_says_whether_it_is_implemented() -> None:
    implemented = "regress" in subcommands()
    text = words(source("vkckpt-regress.1"))
    assert (NOT_IMPLEMENTED in text) == (not implemented), \
        "update the BUGS section of vkckpt-regress.1: `vkckpt regress` " + \
        ("now exists" if implemented else "does not exist")


@pytest.mark.parametrize("page", PAGES)
def test_page_structure(page: str) -> None:
    name, section = page.rsplit(".", 1)
    head = source(page).splitlines()
    th = next(ln for ln in head if ln.startswith(".TH"))
    assert shlex.split(th) == [".TH", name.upper(), section, DATE,
                               f"vkckpt {vkckpt.__version__}", "vkckpt manual"]
    secs = sections(page)
    assert words(secs["NAME"]).startswith(f"{name} - ")
    required = {"DESCRIPTION", "SEE ALSO"}
    if page != "vkckpt-abi.7":
        required |= {"SYNOPSIS", "ENVIRONMENT", "FILES", "EXAMPLES"}
    if section == "1":
        required |= {"OPTIONS", "EXIT STATUS"}
    if section == "2":
        required |= {"RETURN VALUE", "ERRORS"}
    assert required <= set(secs), f"{page} lacks {sorted(required - set(secs))}"
    if "ENVIRONMENT" in secs:
        assert {"VKCKPT_CACHE_DIR", "VKCKPT_CONTROL_DIR"} <= set(words(secs["ENVIRONMENT"])
                                                                 .replace(",", " ").split())


def test_cross_references_resolve() -> None:
    for page in PAGES:
        for ref, sec in re.findall(r"^\.BR ((?:vkckpt|checkpoint)[\w.\\-]*) \((\d)\)",
                                   source(page), flags=re.M):
            target = f"{unroff(ref)}.{sec}"
            assert target in PAGES, f"{page} refers to {target}, which does not exist"


def test_exit_statuses_match_the_cli() -> None:
    from vkckpt.cli import EXIT_FAILURE, EXIT_USAGE
    from vkckpt.runner import EXIT_CANNOT_EXEC, EXIT_NOT_FOUND, EXIT_VKERNEL_ERROR
    def codes(page: str) -> set[int]:
        return {int(n) for n in re.findall(r"\b\d+\b", words(sections(page)["EXIT STATUS"]))}
    assert {EXIT_VKERNEL_ERROR, EXIT_CANNOT_EXEC, EXIT_NOT_FOUND, 0, 128} <= codes("vkckpt-run.1")
    assert EXIT_VKERNEL_ERROR in codes("vkckpt-thaw.1")
    for page in ("vkckpt-inspect.1", "vkckpt-verify.1", "vkckpt-freeze.1", "vkckpt-regress.1",
                 "vkckpt-check.1", "vkckpt-completion.1", "vkckpt-diff.1",
                 "vkckpt-merge.1", "vkckpt-decode.1", "vkckpt-encode.1", "vkckpt-rebase.1",
                 "vkckpt-export.1"):
        assert {0, EXIT_FAILURE, EXIT_USAGE} <= codes(page)


def test_abi_page_is_generated_from_the_syscall_table() -> None:
    assert source("vkckpt-abi.7") == abi_page(), \
        "regenerate: python -m vkckpt.manpages manpages/vkckpt-abi.7"
    text = words(source("vkckpt-abi.7"))
    for e in ENTRIES:
        assert e.name in text and (not e.note or " ".join(e.note.split()) in text)
    assert "ENOSYS" in text


# -- lint and rendering --------------------------------------------------------------------


def _apt_install(package: str) -> str:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", package]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if r.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env,
                           timeout=600)
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return r.stderr[-2000:]


@pytest.fixture(scope="session")
def linters() -> list[list[str]]:
    """Every available man page linter; mandoc is installed when neither it nor groff is."""
    if not (shutil.which("mandoc") or shutil.which("groff")):
        problem = _apt_install("mandoc")
        if not shutil.which("mandoc"):
            pytest.fail(f"neither mandoc nor groff is installed, and installing mandoc with "
                        f"apt-get failed: {problem}")
    out = []
    if shutil.which("mandoc"):
        out.append(["mandoc", "-T", "lint", "-W", "warning"])
    if shutil.which("groff"):
        out.append(["groff", "-man", "-ww", "-z"])
    return out


@pytest.fixture(scope="session")
def renderer(linters: list[list[str]]) -> list[str]:
    """`man -l` (man-db), else mandoc, else groff: a command that renders a page as text."""
    if shutil.which("man") and shutil.which("groff"):
        return ["man", "-l"]
    if shutil.which("mandoc"):
        return ["mandoc", "-T", "ascii", "-O", f"width={WIDTH}"]
    return ["groff", "-man", "-T", "ascii", "-r", f"LL={WIDTH - 2}n"]


@pytest.mark.parametrize("page", PAGES)
def test_page_lints_clean(page: str, linters: list[list[str]]) -> None:
    for linter in linters:
        r = subprocess.run([*linter, str(MANDIR / page)], capture_output=True, text=True)
        assert r.returncode == 0 and not r.stdout and not r.stderr, \
            f"{' '.join(linter)} {page}:\n{r.stdout}{r.stderr}"


@pytest.mark.parametrize("page", PAGES)
def test_page_renders(page: str, renderer: list[str]) -> None:
    env = {**os.environ, "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": str(WIDTH),
           "LC_ALL": "C"}
    r = subprocess.run([*renderer, str(MANDIR / page)], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and not r.stderr, r.stderr
    text = re.sub(".\b", "", r.stdout)
    name = page.rsplit(".", 1)[0]
    assert "NAME" in text and "SEE ALSO" in text
    assert re.search(rf"^ +{re.escape(name)} +- ", text, re.M), "no NAME line"
    wide = [ln for ln in text.splitlines() if len(ln) > WIDTH]
    assert not wide, f"lines wider than {WIDTH} columns: {wide}"


# -- vkckpt-image(5) against the writer, through an independent reader ---------------------


def _table(page: str, name: str) -> list[tuple[int, int, str]]:
    """Rows (offset, size, field) of the table marked `.\\" table: NAME`."""
    m = re.search(rf'^\.\\" table: {name}\n\.EX\n(.*?)^\.EE$', source(page), re.M | re.S)
    assert m, f"no table {name} in {page}"
    rows = [unroff(ln).split()[:3] for ln in m.group(1).splitlines()[1:]]
    return [(int(o), int(s) if s.isdigit() else -1, f) for o, s, f in rows]


def _documented_records() -> dict[str, tuple[int, bool, set[str]]]:
    """Record type -> (version, critical, documented field names) from vkckpt-image(5).
    A field whose entry says "written only when" may be absent (_sometimes_written)."""
    body = sections("vkckpt-image.5")["RECORD TYPES"]
    out = {}
    for m in re.finditer(r'^\.SS "Record (\w+) \(version (\d+), (critical|optional)\)"\n'
                         r"(.*?)(?=^\.SS|\Z)", body, re.M | re.S):
        fields = set(re.findall(r"^\.TP\n\.B ([\w.]+)$", m.group(4), re.M))
        out[m.group(1)] = (int(m.group(2)), m.group(3) == "critical", fields)
    return out


def _sometimes_written(rtype: str) -> set[str]:
    """The fields of record rtype that vkckpt-image(5) says are written only when needed."""
    body = sections("vkckpt-image.5")["RECORD TYPES"]
    m = re.search(rf'^\.SS "Record {rtype} \(.*?(?=^\.SS|\Z)', body, re.M | re.S)
    entries = re.findall(r"^\.TP\n\.B ([\w.]+)\n(.*?)(?=^\.TP|\Z)", m.group(0), re.M | re.S)
    return {name for name, text in entries if "written only when" in text}


def test_image_tables_match_the_format() -> None:
    header = _table("vkckpt-image.5", "header")
    sizes = [struct.calcsize("<" + f) for f in re.findall(r"\d*[a-zA-Z]", _HEADER.format[1:])]
    assert [s for _, s, _ in header] == [*sizes, 4]
    assert [o for o, _, _ in header] == [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    assert header[-1][0] + header[-1][1] == fmt.HEADER_SIZE == 100
    trailer = _table("vkckpt-image.5", "trailer")
    assert [s for _, s, _ in trailer] == [8, 8, 32] and fmt.TRAILER_SIZE == 48
    assert [f for _, _, f in _table("vkckpt-image.5", "frame")] == ["length", "payload"]
    text = words(source("vkckpt-image.5"))
    for n in (limits.MAX_RECORD, limits.MAX_STR, limits.MAX_BIN, limits.MAX_ARRAY,
              limits.MAX_MAP, limits.MAX_RECORDS, limits.MAX_DEPTH, fmt.MAX_CHUNK_PAGES):
        assert str(n) in text
    assert "VKCKPT\\x89\\n" in text and "VKCKEND\\n" in text


def test_record_types_match_the_writer() -> None:
    doc = _documented_records()
    assert {t: v for t, (v, _, _) in doc.items()} == RECORD_VERSIONS
    assert [t for t, (_, crit, _) in doc.items() if not crit] == ["meta", "cpu"]


class _Reader:
    """A reader written from vkckpt-image(5) alone (offsets from its header table)."""

    def __init__(self, path: Path) -> None:
        self.data = data = path.read_bytes()
        head = {f: data[o:o + s] for o, s, f in _table("vkckpt-image.5", "header")}
        assert head["magic"] == b"VKCKPT\x89\n"
        assert struct.unpack("<H", head["major"]) == (1,)
        assert struct.unpack("<I", head["crc"])[0] == zlib.crc32(data[:96])
        self.flags = struct.unpack("<I", head["flags"])[0]
        self.image_id, self.parent_id = head["image_id"], head["parent_id"]
        self.vkernel_id = head["vkernel_id"]
        assert head["producer"].rstrip(b"\0") == f"vkckpt {vkckpt.__version__}".encode()
        trailer = data[-48:]
        assert trailer[:8] == b"VKCKEND\n"
        records_sha256 = hashlib.sha256(data[100:-48]).digest()
        if struct.unpack("<H", head["minor"])[0] >= 1:
            assert trailer[16:] == hashlib.sha256(data[:100] + records_sha256).digest()
        else:
            assert trailer[16:] == hashlib.sha256(data[:-48]).digest()
        assert self.image_id == records_sha256[:16]
        self.records, off = [], 100
        while off < len(data) - 48:
            (n,) = struct.unpack_from("<I", data, off)
            assert 1 <= n <= limits.MAX_RECORD
            rec = msgpack.unpackb(data[off + 4:off + 4 + n], raw=False)
            assert isinstance(rec, list) and len(rec) == 4
            self.records.append(rec)
            off += 4 + n
        assert off == len(data) - 48
        assert struct.unpack("<Q", trailer[8:16])[0] == len(self.records)


def _check_record(rtype: str, version: int, critical: bool, fields: dict,
                  doc: dict[str, tuple[int, bool, set[str]]]) -> None:
    assert rtype in doc, f"record type {rtype} is not documented"
    dversion, dcritical, dfields = doc[rtype]
    assert (version, critical) == (dversion, dcritical), rtype
    top = {f for f in dfields if "." not in f}
    if rtype == "file":  # host/dir, console and pipe files have different fields
        assert set(fields) <= top and {"id", "kind", "flags"} <= set(fields)
    else:
        missing = top - set(fields) - _sometimes_written(rtype)
        assert set(fields) <= top and not missing, \
            f"{rtype}: undocumented {set(fields) - top}, not written {missing}"
    for name, value in fields.items():
        nested = {f.split(".", 1)[1] for f in dfields if f.startswith(name + ".")}
        if nested and value is not None:
            assert set(value) == nested, f"{rtype}.{name}"
    if rtype == "thread":
        regs = fields["regs"]
        assert list(regs) == sorted(R.ALL_REGS)
        text = words(sections("vkckpt-image.5")["RECORD TYPES"])
        for reg, v in regs.items():
            assert re.search(rf"\b{reg}\b", text)
            assert len(v) == R.WIDTH[reg] if reg in R.WIDTH else isinstance(v, int)
    if rtype == "waitq":
        kind = fields["key"][0]
        text = words(sections("vkckpt-image.5")["RECORD TYPES"])
        assert re.search(rf"(?<![\w-]){re.escape(kind)}(?![\w-])", text), kind
    if rtype == "pages":
        data = fields["data"]
        if fields["codec"] == 1:
            import zstandard
            data = zstandard.ZstdDecompressor().decompress(data)
        assert len(data) == fields["count"] * 4096 and 1 <= fields["count"] <= 256
        assert zlib.crc32(data) == fields["crc"]


def test_images_read_with_the_documented_format(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "work").mkdir(parents=True)
    workloads = [("files", ["/work"], 3000), ("forkpipe", [], 5000), ("signals", [], 3000),
                 ("pthreads", [], 300_000), ("reclocks", ["/work"], 2000),
                 ("shmfile", ["/work"], 5000), ("unixpair", [], 2000), ("ghosts", ["/work"], 300),
                 ("tcploop", [], 2000)]
    images: list[Path] = []
    for name, args, every in workloads:
        shutil.copy2(guest_path(name), root / name)
        k = boot(KernelConfig(root=str(root), quantum=997, stdout=lambda b: None,
                              stderr=lambda b: None, log=lambda s: None,
                              processes=[ProcessSpec(f"/{name}", [name, *args])]))
        plan = FreezePlan(output=str(tmp_path / f"{name}.img"), every=every, incremental=True,
                          codec="zstd")
        assert drive(k, plan) == 0
        images += [Path(r.path) for r in plan.results]
        k.shutdown()
    # an overlay run with its lower layer embedded (overlay, ovl_entry, ovl_data)
    k = boot(KernelConfig(root=str(root), quantum=997, stdout=lambda b: None,
                          stderr=lambda b: None, log=lambda s: None, fs="overlay",
                          embed_root=True, processes=[ProcessSpec("/files", ["files", "/work"])]))
    plan = FreezePlan(output=str(tmp_path / "ovl.img"), every=3000, incremental=True)
    assert drive(k, plan) == 0
    images += [Path(r.path) for r in plan.results]
    k.shutdown()
    # an incremental image that clears a page (zero_pages)
    k = boot(KernelConfig(root=str(root), stdout=lambda b: None, log=lambda s: None,
                          processes=[ProcessSpec("/pthreads", ["pthreads"])]))
    assert k.run(until_ticks=200_000) is None
    chain = ImageChain()
    write_image(k, str(tmp_path / "z1.img"), chain=chain)
    buf = next(iter(k.procs[1].vm.vmas)).buf
    page = next(i for i in range(buf.size // 4096) if any(buf.view[i * 4096:(i + 1) * 4096]))
    buf.view[page * 4096:(page + 1) * 4096] = bytes(4096)
    write_image(k, str(tmp_path / "z2.img"), chain=chain, incremental=True)
    images += [tmp_path / "z1.img", tmp_path / "z2.img"]
    k.shutdown()

    doc = _documented_records()
    seen: set[str] = set()
    by_id = {}
    for path in images:
        r = _Reader(path)
        by_id[r.image_id] = r
        assert r.records[0][0] == "meta"
        for rtype, version, critical, fields in r.records:
            _check_record(rtype, version, critical, fields, doc)
            seen |= {rtype, f"{rtype}:{fields.get('kind')}"}
        if r.flags & 1:  # incremental: the parent is named by id and by path
            parent = by_id[r.parent_id]
            assert parent.vkernel_id == r.vkernel_id
            assert Path(r.records[0][3]["parent_path"]).name in {p.name for p in images}
        else:
            assert r.parent_id == bytes(16)
    assert {"pipe", "waitq", "zero_pages", "file:host", "file:pipe", "file:console",
            "file:unix"} <= seen
    assert set(RECORD_VERSIONS) <= seen


# -- the examples run ----------------------------------------------------------------------


def _examples(page: str) -> tuple[dict[str, str], list[tuple[str, int | None, list[str]]]]:
    """(files to write, [(command, expected status or None, expected output lines)])."""
    files: dict[str, str] = {}
    commands: list[tuple[str, int | None, list[str]]] = []
    pending_file = None
    block: list[str] | None = None
    for line in sections(page)["EXAMPLES"].splitlines():
        if block is None:
            m = re.match(r'^\.\\" (file: (\S+)|no-run)$', line)
            if m:
                pending_file = m.group(2) or ""
            elif line == ".EX":
                block = []
            continue
        if line != ".EE":
            assert not line.startswith(".") or line.startswith('.\\"'), line
            block.append(unroff(line))
            continue
        if pending_file:
            files[pending_file] = "\n".join(block) + "\n"
        elif pending_file is None:
            lines = iter(block)
            for ln in lines:
                if ln.startswith("$ "):
                    cmd = ln[2:]
                    while cmd.endswith("\\"):
                        cmd += "\n" + next(lines)
                    m = re.match(r"(?s)(.*?)(?:\s+# exit status (\d+))?$", cmd)
                    cmd, code = m.group(1), m.group(2)
                    background = cmd.endswith("&")
                    commands.append((cmd, None if background else int(code or 0), []))
                elif commands:
                    commands[-1][2].append(ln)
        block, pending_file = None, None
    return files, commands


@pytest.fixture(scope="session")
def guests() -> dict[str, Path]:
    return {name: guest_path(name) for name in GUESTS}


def _run_script(script: str, cwd: Path, env: dict[str, str], timeout: float) -> str:
    p = subprocess.Popen(["bash", "-c", script], cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # bash and whatever it started in the background
        out, _ = p.communicate()
        raise AssertionError(f"the examples did not finish in {timeout} s:\n"
                             f"{out.decode(errors='replace')[-3000:]}") from None
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return out.decode(errors="replace")


@pytest.mark.parametrize("page", RUNNABLE)
def test_examples_run(page: str, tmp_path: Path, guests: dict[str, Path]) -> None:
    if page == "vkckpt-regress.1" and "regress" not in subcommands():
        pytest.skip("`vkckpt regress` is not implemented")
    files, commands = _examples(page)
    assert commands, f"{page} has no runnable example"
    work = tmp_path / "work"
    (work / "root").mkdir(parents=True)
    for name, path in guests.items():
        shutil.copy2(path, work / "root" / name)
    for name, text in files.items():
        (work / name).write_text(text)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = shlex.quote(sys.executable)
    for tool, cmd in (("vkckpt", f"{exe} -m vkckpt"), ("python3", exe),
                      ("zig", f"{exe} -m ziglang")):
        (bindir / tool).write_text(f'#!/bin/sh\nexec {cmd} "$@"\n')
        (bindir / tool).chmod(0o755)
    (tmp_path / "ctl").mkdir(mode=0o700)  # a control directory must be private
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
           "VKCKPT_CONTROL_DIR": str(tmp_path / "ctl"), "LC_ALL": "C"}
    script = []
    for i, (cmd, _, _) in enumerate(commands):
        script += [f"printf '\\n@@begin {i}\\n'", cmd, f"printf '\\n@@end {i} %d\\n' $?"]
    out = _run_script("\n".join([*script, "wait"]) + "\n", work, env, timeout=180)
    for i, (cmd, code, expected) in enumerate(commands):
        m = re.search(rf"^@@begin {i}\n(.*?)\n@@end {i} (\d+)$", out, re.M | re.S)
        assert m, f"{page}: `{cmd}` did not run:\n{out[-3000:]}"
        got = [" ".join(ln.split()) for ln in m.group(1).splitlines()]
        where = f"{page}: `{cmd}`\n--- its output:\n{m.group(1)[-3000:]}"
        if code is not None:
            assert int(m.group(2)) == code, f"exit status {m.group(2)}, not {code}, of {where}"
        for want in expected:
            pattern = ".*".join(re.escape(" ".join(part.split()))
                                for part in want.split("..."))
            assert any(re.fullmatch(pattern, ln) for ln in got), f"no line {want!r} from {where}"
