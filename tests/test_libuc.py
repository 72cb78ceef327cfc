"""The raw ctypes layer over libunicorn: constants, library identity, errors, contexts.

That running a guest never imports the binding is checked by tests/test_startup.py."""

import os

import unicorn
from unicorn import unicorn_const as U
from unicorn import x86_const as X

from vkckpt.engine import libuc, quirks
from vkckpt.engine import ucconst as C
from vkckpt.engine.engine import Engine


def test_every_constant_matches_the_binding() -> None:
    for name, value in vars(C).items():
        if name.isupper() and isinstance(value, int):
            prefix = "UC_X86_INS_" if name.startswith("X86_INS_") else "UC_"
            mod = X if name.startswith("X86_") else U
            key = prefix + (name[len("X86_INS_"):] if name.startswith("X86_INS_") else name)
            assert getattr(mod, key) == value, name
    for reg, value in C.X86_REG.items():
        assert getattr(X, f"UC_X86_REG_{reg.upper()}") == value, reg


def test_loads_the_library_the_binding_ships() -> None:
    shipped = os.path.join(os.path.dirname(unicorn.__file__), "lib", libuc.LIB_NAME)
    assert os.path.samefile(libuc.lib._name, shipped)
    assert libuc.version()[0] == 2


def test_errors_carry_unicorn_message() -> None:
    eng = Engine(lambda: False)
    try:
        try:
            eng.protect(0x5000, 0x1000, 3)  # nothing is mapped there
        except libuc.UcError as e:
            assert e.errno == U.UC_ERR_NOMEM and "UC_ERR_NOMEM" in str(e)
        else:
            raise AssertionError("protecting unmapped memory succeeded")
    finally:
        eng.close()


def test_context_reg_write_and_close_are_safe() -> None:
    eng = Engine(lambda: False)
    ctx = eng.context_new()
    ctx.reg_write(C.X86_REG["rax"], 0x1234)
    eng.context_load(ctx)
    assert eng.reg("rax") == 0x1234
    eng.close()
    eng.close()  # idempotent
    assert eng.uch == 0


def test_both_context_quirks_are_found() -> None:
    """On the pinned Unicorn both blob fields are recognised (a new layout would fail here
    first, while the engine itself would keep working with the quirks unfixed)."""
    assert quirks.offset("old_exception") is not None
    assert quirks.offset("hflags") is not None
    eng = Engine(lambda: False)
    try:
        assert eng.user_mode
    finally:
        eng.close()


def test_libunicorn_path_names_a_file_or_a_directory(monkeypatch, tmp_path) -> None:
    lib_dir = os.path.dirname(libuc.lib._name)
    monkeypatch.setenv("LIBUNICORN_PATH", lib_dir)
    assert libuc._candidates()[0] == os.path.join(lib_dir, libuc.LIB_NAME)
    monkeypatch.setenv("LIBUNICORN_PATH", str(tmp_path / "custom.so"))
    assert libuc._candidates()[0] == str(tmp_path / "custom.so")


def test_a_missing_library_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setattr(libuc, "_candidates", lambda: ["/nonexistent/libunicorn.so.2"])
    try:
        libuc._load()
    except ImportError as e:
        assert "pip install unicorn" in str(e) and "/nonexistent/libunicorn.so.2" in str(e)
    else:
        raise AssertionError("loading a missing library succeeded")
