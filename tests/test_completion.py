"""Shell completion: the scripts in completions/ (installed with the package) are what
`vkckpt completion` generates from today's parser, and bash completes commands and options
with them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vkckpt.cli import SHELLS, completion_script

DIR = Path(__file__).resolve().parents[1] / "completions"
FILES = {"bash": DIR / "vkckpt", "zsh": DIR / "_vkckpt"}


@pytest.mark.parametrize("shell", SHELLS)
def test_committed_script_is_the_generated_one(shell: str) -> None:
    p = subprocess.run([sys.executable, "-m", "vkckpt", "completion", shell],
                       capture_output=True, text=True, timeout=60, check=True)
    assert p.stdout == completion_script(shell)
    assert FILES[shell].read_text() == p.stdout, (
        f"regenerate: python -m vkckpt completion {shell} > {FILES[shell].relative_to(DIR.parent)}")


def _complete(*words: str) -> list[str]:
    """What bash offers for the last of words, with the installed script loaded."""
    cword = len(words)
    script = (f"source {FILES['bash']}; COMP_WORDS=(vkckpt {' '.join(words)}); "
              f"COMP_CWORD={cword}; _shtab_vkckpt vkckpt {words[-1]} "
              f"{words[-2] if cword > 1 else 'vkckpt'}; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    return out.split()


def test_bash_completes_commands_and_options() -> None:
    assert _complete("th") == ["thaw"]
    assert set(_complete("")) >= {"run", "thaw", "freeze", "inspect", "verify", "regress",
                                  "check", "completion", "demo"}
    assert _complete("thaw", "--no-s") == ["--no-sigthaw"]
    assert _complete("completion", "") == ["bash", "zsh"]


def test_zsh_script_defines_the_completion() -> None:
    text = FILES["zsh"].read_text()
    assert text.startswith("#compdef vkckpt")
    assert "--no-sigthaw" in text and "    check:'" in text
