# Every target installs what it needs into .venv first: a clean clone needs only Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/importq demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint chromium compose-tools
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

.PHONY: flower chromium compose-tools

# The dashboard against the configured broker (basic auth from FLOWER_BASIC_AUTH).
flower: $(STAMP)
	$(BIN)/importq flower

# apt_install(command, package, what skips without it): installs a Debian package when the
# command is missing. Never fails the build: the tests that need it skip and say why.
define apt_install
	@if command -v $(1) >/dev/null 2>&1; then exit 0; fi; \
	log="$${TMPDIR:-/tmp}/importq-apt-$(2).log"; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "$(2): not installed and there is no apt-get here; $(3) will skip"; exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "$(2): not installed and apt-get needs root (sudo apt-get install $(2)); $(3) will skip"; \
		exit 0; fi; \
	echo "$(2): installing Debian's $(2) with apt-get (log: $$log)"; \
	if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq -o DPkg::Lock::Timeout=300 $(2)) \
		>"$$log" 2>&1; then \
		echo "$(2): apt-get could not install it (see $$log); $(3) will skip"; fi
endef

chromium:
	$(call apt_install,/usr/bin/chromium,chromium,the Flower screenshot and dashboard tests)

compose-tools:
	$(call apt_install,docker-compose,docker-compose,the docker-compose config test)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

.PHONY: chaos

# The chaos suite of issue 10 at full strength: 20 faults per scenario (`make test` runs 2).
chaos: $(STAMP)
	CHAOS_ROUNDS=20 CHAOS_OUTAGE_SECONDS=300 $(BIN)/pytest -q -m chaos tests/chaos
