# Two commands on a fresh machine: `make demo` (the main job on the local sandbox) and `make test`.
# Both install what they need: a .venv with the package, and for tests Azurite into node_modules.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean functionapp browser screenshots

SANDBOX := packages/dynamics-bridge-sandbox

$(STAMP): pyproject.toml $(SANDBOX)/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,functions,retention]' -e $(SANDBOX)
	touch $(STAMP)

node_modules/.bin/azurite: package.json
	npm install --no-audit --no-fund --no-package-lock --loglevel=error
	touch $@

demo: $(STAMP)
	$(VENV)/bin/dynamics-bridge demo

# The browser tests (tests/browser) drive Debian's chromium through its chromedriver; they fail,
# not skip, without them. Installed here when missing: as root, or through sudo.
CHROMIUM     := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
browser:
	@if [ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; \
	elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	else echo "make test needs $(CHROMIUM) and $(CHROMEDRIVER): run as root, or install sudo, or" \
	  "apt-get install chromium chromium-driver yourself (BRIDGE_SKIP_BROWSER=1 skips those tests)"; exit 1; fi; \
	$$SUDO apt-get install -y --no-install-recommends chromium chromium-driver || \
	{ $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends chromium chromium-driver; }

# Tests run after lint, so CI (which runs `make test`) gates on both.
test: lint node_modules/.bin/azurite browser
	$(PY) -m pytest

# PNGs of each console page (1280x900) over a seeded day, into docs/screenshots/.
screenshots: $(STAMP) node_modules/.bin/azurite browser
	$(PY) -m tests.browser.screenshots docs/screenshots

# ruff over all our Python; mypy over the runtime package, the sandbox, the function app's entry
# point and the benchmarks, checked together so each sees the others' types (tests: not yet clean).
LINTED := dynamics_bridge tests bench deploy packages
TYPED  := dynamics_bridge $(SANDBOX)/dynamics_bridge_sandbox deploy/azure-functions/function_app.py bench
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy $(TYPED)

bench: $(STAMP) node_modules/.bin/azurite
	for b in bench/*.py; do $(PY) $$b || exit 1; done

# The function app as `func azure functionapp publish` wants it: function_app.py, host.json,
# requirements.txt and .funcignore at the root, the package and the mappings beside them.
# SPAR's contract (the WSDL/XSD folder SPAR gives a union at onboarding, laid out as
# granssnitt/personsok/<version>/personsok.wsdl) is copied to spar/ when the folder
# $(SPAR_CONTRACT) exists; point BRIDGE_SPAR__WSDL_PATH (Bicep sparWsdlPath) into spar/.
FUNCTIONAPP := build/functionapp
SPAR_CONTRACT ?= spar
functionapp:
	rm -rf $(FUNCTIONAPP) && mkdir -p $(FUNCTIONAPP)
	cp deploy/azure-functions/function_app.py deploy/azure-functions/host.json \
	   deploy/azure-functions/requirements.txt deploy/azure-functions/.funcignore $(FUNCTIONAPP)/
	cp -r dynamics_bridge mappings $(FUNCTIONAPP)/
	if [ -d "$(SPAR_CONTRACT)" ]; then cp -r "$(SPAR_CONTRACT)" $(FUNCTIONAPP)/spar && \
	   echo "$(FUNCTIONAPP)/spar: SPAR's contract from $(SPAR_CONTRACT)"; \
	else echo "no $(SPAR_CONTRACT)/ folder: no SPAR contract packaged (lookups at SPAR are refused)"; fi
	find $(FUNCTIONAPP) -name __pycache__ -prune -exec rm -rf {} +
	@echo "$(FUNCTIONAPP): cd there and run func azure functionapp publish <app> --python"

clean:
	rm -rf $(VENV) node_modules .bridge .pytest_cache .ruff_cache .mypy_cache
