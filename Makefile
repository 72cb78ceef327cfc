# vkckpt: two commands for a fresh machine.
#   make demo   set up a virtualenv and run the built-in demonstration
#   make test   set up a virtualenv and run the whole test suite
#   make debs   the Debian packages the tests run (busybox-static, bash-static, golang-go ...)
#   make compat the whole compatibility suite with 4 freeze points a case (tests run 2)
#   make bench  the benchmarks; Debian's qemu-user-static and busybox-static are installed if missing
#   make lint   ruff and the import-layer contract (pyproject.toml), also run by make test
#   make crashtest  1000 SIGKILLs of a freezing vkckpt (test_reliability runs 50)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench soak fuzz crashtest guests clean debs compat bytecode

#: What the tests run besides the guests they build: software nobody here wrote.
DEBS := busybox-static bash-static golang-go sqlite3 lua5.4 python3

$(STAMP): pyproject.toml setup.py vkckpt/engine/blockhook.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

guests: $(STAMP)
	$(PY) -m vkckpt.guests.build

# Every vkckpt command imports ~160 modules: compiled once here, a start takes half the time
# (compileall writes them even where PYTHONDONTWRITEBYTECODE is set; stale ones are redone).
bytecode: $(STAMP)
	$(PY) -m compileall -q -j 2 vkckpt bench > /dev/null

demo: $(STAMP) bytecode
	$(PY) -m vkckpt demo

lint: $(STAMP)
	$(PY) -m ruff check vkckpt tests bench
	$(VENV)/bin/lint-imports --no-cache

debs:
	@dpkg -s $(DEBS) > /dev/null 2>&1 || { apt-get install -y -q $(DEBS) > /dev/null 2>&1 \
		|| { apt-get update -q > /dev/null 2>&1 && apt-get install -y -q $(DEBS) > /dev/null; }; } \
		|| { echo "make debs: cannot install $(DEBS) (run as root, or install them)"; exit 1; }

compat: $(STAMP) debs
	$(PY) -m vkckpt.testing.compat --freeze 4

test: lint debs bytecode
	$(PY) -m vkckpt.guests.build -j 2 > /dev/null
	$(PY) -m pytest -q

bench: $(STAMP) bytecode
	@command -v qemu-x86_64-static > /dev/null || apt-get install -y -q qemu-user-static \
		> /dev/null 2>&1 || echo "make bench: qemu-user-static is missing; its peer rows are skipped"
	@test -x /bin/busybox || apt-get install -y -q busybox-static > /dev/null 2>&1 \
		|| echo "make bench: busybox-static is missing; its sha256sum/sort rows are skipped"
	$(PY) -m bench

fuzz: $(STAMP)
	VKCKPT_FUZZ_EXAMPLES=20000 $(PY) -m pytest -q tests/test_hostile_images.py -k fuzz

soak: $(STAMP)
	$(PY) -m vkckpt.testing.soak --iterations 1000

crashtest: $(STAMP)
	$(PY) -m vkckpt.guests.build -j 2 > /dev/null
	$(PY) -m vkckpt.testing.crash --kills 1000

clean:
	rm -rf $(VENV) build *.egg-info vkckpt/engine/_blockhook*.so
