# Entry points for developers and CI. The venv is created on demand (idempotent, see
# scripts/setup_env.sh), so `make test` works on a fresh clone.
PYTHON := .venv/bin/python
PYTEST := $(PYTHON) -m pytest

# pytest exits with 5 when it collected nothing: a broken suite, never a pass.
define run_pytest
	$(PYTEST) $(1); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests (exit code 5): failing" >&2; exit 1; fi; \
	exit $$rc
endef

.PHONY: help setup lint test test-slow demo clean check-source-build check-source-build-full

help:
	@echo "make setup      create/update .venv (scripts/setup_env.sh)"
	@echo "make lint       ruff (pyflakes + import order, pyproject.toml) on the whole tree"
	@echo "make test       fast tests (pytest -m 'not slow')"
	@echo "make test-slow  slow tests only (pytest -m slow)"
	@echo "make demo       run scripts/demo.sh"
	@echo "make clean      remove caches and work_dirs/ (keeps .venv)"
	@echo "make check-source-build       fast check of the mmcv source-build path (no compile)"
	@echo "make check-source-build-full  compile mmcv from source into a temp cache and test its ops"

setup:
	bash scripts/setup_env.sh

lint: setup
	.venv/bin/ruff check .

# The fast suite spreads its test files over TEST_WORKERS processes (pytest-xdist; the tests of
# a file stay in one process, so that its module fixtures train once), one thread each unless
# OMP_NUM_THREADS says otherwise. TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
test: setup
	@OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=$${MKL_NUM_THREADS:-1} \
	$(call run_pytest,-m "not slow" -n $(TEST_WORKERS) --dist loadfile --durations=25 tests/)

# The slow tier is spread the same way; each test file that trains reports its own figures.
test-slow: setup
	@OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=$${MKL_NUM_THREADS:-1} \
	$(call run_pytest,-m slow -n $(TEST_WORKERS) --dist loadfile --durations=0 tests/)

demo: setup
	bash scripts/demo.sh

clean:
	rm -rf work_dirs .pytest_cache build dist
	find . -path ./.venv -prune -o -name __pycache__ -type d -exec rm -rf {} +

# The mmcv source-build path (what users without a wheelhouse take). The fast check fetches and
# patches the sdist and runs its metadata step; the full one compiles into a temp cache (~11-20 min).
check-source-build:
	bash scripts/setup_env.sh --check-source-build

check-source-build-full:
	bash scripts/setup_env.sh --full-source-build
