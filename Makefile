# iotfleet.aws — the two commands of the README (`make demo`, `make test`) bootstrap everything
# they need on first use: the pinned virtualenv and the collection link Ansible loads us from.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed
LINK := .collections/ansible_collections/iotfleet/aws
APPSYNC_MODULES := sandbox/appsync/node_modules/.package-lock.json
DASHBOARD_MODULES := files/dashboard/node_modules/.package-lock.json
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: bootstrap system-deps system-deps-test demo demo-stop test test-lint test-unit test-integration test-e2e test-molecule test-sanity \
        sandbox-up sandbox-down sandbox-status sandbox-summary clean

bootstrap: system-deps $(STAMP) $(LINK) $(APPSYNC_MODULES) $(DASHBOARD_MODULES)

# Debian packages, installed only when missing (apt as root, else through sudo): Mosquitto and the
# headers its sandbox plugin builds against for the data plane; Chromium for the browser tests.
DEMO_DEBS := mosquitto:/usr/sbin/mosquitto mosquitto-dev:/usr/include/mosquitto_broker.h \
             libssl-dev:/usr/include/openssl/ssl.h gcc:/usr/bin/gcc
TEST_DEBS := chromium:/usr/bin/chromium chromium-driver:/usr/bin/chromedriver

define apt_missing
	@missing=""; for pair in $(1); do test -e "$${pair#*:}" || missing="$$missing $${pair%%:*}"; done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing Debian packages:$$missing"; \
	  $$sudo apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	fi
endef

system-deps:
	$(call apt_missing,$(DEMO_DEBS))

system-deps-test: system-deps
	$(call apt_missing,$(TEST_DEBS))

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $@

$(LINK):
	@mkdir -p $(dir $@)
	@ln -sfn ../../.. $@

# The sandbox's GraphQL endpoint (the AWS Amplify AppSync simulator) runs on Node.
$(APPSYNC_MODULES): sandbox/appsync/package-lock.json
	@if command -v npm >/dev/null; then cd sandbox/appsync && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.package-lock.json; \
	 else echo "npm not found: the sandbox will run without its GraphQL endpoint (install Node 20)"; fi

# The dashboard's build tools (vite), so playbook runs in parallel never race on a first `npm ci`
# (the amplify role runs it itself when they are missing or older than the lockfile).
$(DASHBOARD_MODULES): files/dashboard/package-lock.json
	@if command -v npm >/dev/null; then cd files/dashboard && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.package-lock.json; \
	 else echo "npm not found: site.yml cannot build the dashboard (install Node 20)"; fi

sandbox-up: bootstrap
	$(BIN)/python -m sandbox up

sandbox-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m sandbox down; fi

sandbox-status: bootstrap
	@$(BIN)/python -m sandbox status

sandbox-summary: bootstrap
	@$(BIN)/python -m sandbox summary

# The virtual devices start after site.yml, which flashes the boards they run from; the summary ends
# with their latest readings through GraphQL (it waits up to 15 s for the first ones).
demo: sandbox-up
	$(BIN)/ansible-playbook site.yml
	$(BIN)/python -m sandbox devices up
	@$(BIN)/python -m sandbox summary
	@$(BIN)/python -c 'from sandbox.settings import load_settings; print(f"Dashboard: {load_settings().hosting_url}")'

demo-stop: sandbox-down

test: test-lint test-unit test-integration test-e2e test-molecule test-sanity

test-lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ansible-lint

# Two workers, one test file each at a time: the suites start their own servers on free ports.
test-unit: bootstrap
	$(BIN)/python -m pytest -n 2 --dist loadfile tests/unit
	cd files/dashboard && node --test test/

test-integration: bootstrap
	$(BIN)/python -m pytest -n 2 --dist loadfile tests/integration

# End to end: one private sandbox (free ports, own state dir), site.yml once, virtual devices running the firmware.
# The dashboard's browser tests (test_web_dashboard.py) drive Debian's Chromium through chromedriver.
test-e2e: bootstrap system-deps-test
	$(BIN)/python -m pytest tests/e2e

test-molecule: bootstrap
	tests/molecule/run.sh

test-sanity: bootstrap
	tests/sanity/run.sh

clean: sandbox-down
	rm -rf .collections tests/output .build sandbox/appsync/node_modules files/dashboard/node_modules
