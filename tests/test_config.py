"""load_config and parse_size: good files and every error path, with helpful messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from vkckpt.config import KernelConfig, ProcessSpec, load_config, parse_memory_limit, parse_size
from vkckpt.errors import ConfigError, VkError
from vkckpt.image.limits import MAX_GUEST_MEMORY


def write(tmp_path: Path, text: str, name: str = "vkckpt.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    return str(ei.value)


GOOD = """\
root: guestroot
quantum: 1000
memory_limit: 512M
seed: 0
processes:
  - program: /bin/server
    argv: [server, --port, "8080"]
    env: {MODE: test, LEVEL: 3}
    cwd: /work
  - program: /bin/client
"""


def test_good_config(tmp_path: Path):
    cfg = load_config(write(tmp_path, GOOD))
    assert isinstance(cfg, KernelConfig)
    assert Path(cfg.root) == tmp_path / "guestroot"  # relative to the file's directory
    assert cfg.quantum == 1000
    assert cfg.memory_limit == 512 << 20
    assert cfg.seed == 0
    assert cfg.processes == [
        ProcessSpec("/bin/server", ["server", "--port", "8080"], {"MODE": "test", "LEVEL": "3"},
                    "/work"),
        ProcessSpec("/bin/client", ["/bin/client"], {}, "/"),  # argv defaults to [program]
    ]


def test_relative_root_does_not_depend_on_the_cwd(tmp_path: Path, monkeypatch):
    sub = tmp_path / "conf"
    sub.mkdir()
    p = write(sub, "root: ../r\nprocesses: [{program: /p}]\n")
    monkeypatch.chdir(tmp_path)
    assert Path(load_config(p).root) == sub / ".." / "r"
    assert Path(load_config(Path("conf") / "vkckpt.yaml").root) == Path("conf") / ".." / "r"


def test_absolute_root_and_defaults(tmp_path: Path):
    cfg = load_config(write(tmp_path, "root: /srv/guest\nprocesses: [{program: /p}]\n"))
    assert cfg.root == "/srv/guest"
    defaults = KernelConfig()
    assert (cfg.quantum, cfg.memory_limit, cfg.seed) == (
        defaults.quantum, defaults.memory_limit, defaults.seed)


def test_root_defaults_to_the_files_directory(tmp_path: Path):
    cfg = load_config(write(tmp_path, "processes: [{program: /p}]\n"))
    assert Path(cfg.root) == tmp_path / "."


@pytest.mark.parametrize("text, size", [
    ("512M", 512 << 20), ("2g", 2 << 30), ("2G", 2 << 30), ("64k", 64 << 10),
    ("4096", 4096), (4096, 4096), ("1GiB", 1 << 30), ("16MB", 16 << 20), (" 8m ", 8 << 20),
])
def test_parse_size(text, size):
    assert parse_size(text, "memory_limit") == size


@pytest.mark.parametrize("bad", ["lots", "", "1.5G", "12T", "M", "-1M", "0", 0, -4096, None])
def test_parse_size_rejects(bad):
    with pytest.raises(ConfigError) as ei:
        parse_size(bad, "memory_limit")
    assert "memory_limit" in str(ei.value)


def test_memory_limit_from_yaml_integer(tmp_path: Path):
    cfg = load_config(write(tmp_path, "memory_limit: 1048576\nprocesses: [{program: /p}]\n"))
    assert cfg.memory_limit == 1 << 20


# -- error paths -----------------------------------------------------------------------------


def test_unknown_top_level_keys(tmp_path: Path):
    msg = config_error(write(tmp_path, "processes: [{program: /p}]\nqunatum: 5\nzeta: 1\n"))
    assert "unknown keys" in msg and "qunatum" in msg and "zeta" in msg
    assert "vkckpt.yaml" in msg  # the message names the file


def test_unknown_process_keys(tmp_path: Path):
    msg = config_error(write(tmp_path, "processes:\n  - {program: /p}\n  - {program: /q, "
                                       "args: [q]}\n"))
    assert "processes[1]" in msg and "unknown keys" in msg and "args" in msg


@pytest.mark.parametrize("text", [
    "root: /r\n",                       # missing
    "processes: []\n",                  # empty
    "processes: /bin/sh\n",             # not a list
    "processes:\n",                     # null
])
def test_missing_or_empty_processes(tmp_path: Path, text: str):
    assert "'processes' must be a non-empty list" in config_error(write(tmp_path, text))


def test_process_without_program(tmp_path: Path):
    msg = config_error(write(tmp_path, "processes:\n  - argv: [x]\n"))
    assert "processes[0]" in msg and "'program'" in msg
    msg = config_error(write(tmp_path, "processes: [/bin/sh]\n"))
    assert "processes[0]" in msg and "'program'" in msg


@pytest.mark.parametrize("argv", ["sh -c true", "[sh, 1]", "[sh, [x]]", "{a: b}"])
def test_bad_argv_type(tmp_path: Path, argv: str):
    msg = config_error(write(tmp_path, f"processes:\n  - program: /bin/sh\n    argv: {argv}\n"))
    assert "processes[0]" in msg and "argv must be a list of strings" in msg


def test_bad_env_type(tmp_path: Path):
    msg = config_error(write(tmp_path, "processes:\n  - {program: /p, env: [A=1]}\n"))
    assert "env must be a mapping" in msg


@pytest.mark.parametrize("value", ["lots", "1.5G", "-1M", "0"])
def test_bad_size(tmp_path: Path, value: str):
    msg = config_error(write(tmp_path, f"memory_limit: {value}\nprocesses: [{{program: /p}}]\n"))
    assert "memory_limit" in msg


@pytest.mark.parametrize("key, value, word", [
    ("quantum", "0", "positive"), ("quantum", "-5", "positive"), ("quantum", "fast", "positive"),
    ("quantum", "true", "positive"), ("quantum", "1.5", "positive"),
    ("seed", "-1", "non-negative"), ("seed", "abc", "non-negative"),
])
def test_bad_integers(tmp_path: Path, key: str, value: str, word: str):
    msg = config_error(write(tmp_path, f"{key}: {value}\nprocesses: [{{program: /p}}]\n"))
    assert key in msg and word in msg


@pytest.mark.parametrize("text", [
    "processes: [{program: /p}\n",          # unclosed flow sequence
    "root: a\n  bad: indent\n",
    "processes:\n\t- program: /p\n",        # tab indentation
    "key: [unclosed\n",
])
def test_invalid_yaml(tmp_path: Path, text: str):
    assert "invalid YAML" in config_error(write(tmp_path, text))


@pytest.mark.parametrize("text", ["- just\n- a list\n", "42\n", "", "just a string\n"])
def test_top_level_not_a_mapping(tmp_path: Path, text: str):
    assert "expected a mapping at the top level" in config_error(write(tmp_path, text))


def test_missing_file(tmp_path: Path):
    msg = config_error(tmp_path / "nope.yaml")
    assert "nope.yaml" in msg and "No such file" in msg


def test_config_error_is_a_vkerror():
    assert issubclass(ConfigError, VkError)


def test_memory_limit_rejects_booleans(tmp_path: Path):
    p = write(tmp_path, "memory_limit: yes\nprocesses: [{program: /p}]\n")
    try:
        cfg = load_config(p)
    except ConfigError as exc:
        assert "memory_limit" in str(exc)
        return
    assert cfg.memory_limit is not True and cfg.memory_limit > 1


def test_null_root_is_not_the_string_none(tmp_path: Path):
    try:
        cfg = load_config(write(tmp_path, "root:\nprocesses: [{program: /p}]\n"))
    except ConfigError:
        return
    assert Path(cfg.root).name != "None"


def test_memory_limit_is_at_most_what_an_image_may_record(tmp_path: Path):
    """A run's images must thaw: no memory limit above the reader's MAX_GUEST_MEMORY."""
    assert parse_memory_limit("256G", "--memory-limit") == MAX_GUEST_MEMORY
    with pytest.raises(ConfigError, match="at most 256G"):
        parse_memory_limit(MAX_GUEST_MEMORY + 1, "--memory-limit")
    with pytest.raises(ConfigError, match="memory_limit: at most"):
        load_config(write(tmp_path, "memory_limit: 257G\nprocesses: [{program: /p}]\n"))
