"""Results of `vkckpt regress`: a table on stdout, failure reports, JUnit XML."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from typing import TextIO

from vkckpt.regress.run import CaseResult

_STYLE = {"pass": "green", "fail": "bold red", "error": "bold magenta"}


def print_table(results: list[CaseResult], file: TextIO | None = None) -> None:
    """case, kind, points, result, seconds (rich; plain text when not a terminal)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    file = file or sys.stdout
    tty = file.isatty()
    console = Console(file=file, width=None if tty else 110, no_color=not tty,
                      highlight=False)
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("case", no_wrap=True)
    t.add_column("kind", no_wrap=True)
    t.add_column("points", justify="right")
    t.add_column("result", no_wrap=True)
    t.add_column("seconds", justify="right")
    for r in results:
        t.add_row(r.name, r.kind, str(r.points), f"[{_STYLE[r.result]}]{r.result}[/]",
                  f"{r.seconds:.1f}")
    console.print(t)
    failed = [r for r in results if not r.ok]
    total = sum(r.seconds for r in results)
    console.print(f"{len(results) - len(failed)} passed, {len(failed)} failed "
                  f"({total:.1f} s of case time)", highlight=False)


def failure_text(r: CaseResult) -> str:
    """Everything known about a failed case."""
    lines = [f"{r.result.upper()}: {r.name} ({r.kind})"]
    lines += [f"  {p}" for p in r.problems]
    if r.report:
        lines += ["  " + ln for ln in r.report.splitlines()]
    if r.workdir:
        lines.append(f"  files: {r.workdir}")
    return "\n".join(lines)


def print_failures(results: list[CaseResult], file: TextIO | None = None) -> None:
    """failure_text of every case that did not pass."""
    file = file or sys.stdout
    for r in results:
        if not r.ok:
            print(f"\n{failure_text(r)}", file=file)


def junit_xml(results: list[CaseResult], suite: str = "vkckpt-regress") -> str:
    """One testcase per case; failures carry the problems and the bisect report."""
    fails = sum(r.result == "fail" for r in results)
    errors = sum(r.result == "error" for r in results)
    ts = ET.Element("testsuite", name=suite, tests=str(len(results)), failures=str(fails),
                    errors=str(errors), skipped="0",
                    time=f"{sum(r.seconds for r in results):.3f}")
    for r in results:
        tc = ET.SubElement(ts, "testcase", classname=f"regress.{r.kind}", name=r.name,
                           time=f"{r.seconds:.3f}")
        if not r.ok:
            tag = "failure" if r.result == "fail" else "error"
            el = ET.SubElement(tc, tag, message=(r.problems[0] if r.problems else r.result)
                               .splitlines()[0][:500], type=r.kind)
            el.text = failure_text(r)
        props = ET.SubElement(tc, "system-out")
        props.text = f"points={r.points}"
    root = ET.Element("testsuites", name=suite, tests=str(len(results)),
                      failures=str(fails), errors=str(errors))
    root.append(ts)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
