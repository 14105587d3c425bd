# The README's commands. Everything goes through .venv, which `make setup` creates (idempotent).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
MICROEXP := $(VENV)/bin/microexp
export MICROEXP_TESTDATA ?= $(abspath ../shared/data)

.PHONY: setup demo test bench lock clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(MICROEXP) demo --out out/demo

# pytest exits 5 when it collected no test: that is reported, not treated as a failure of the suite.
test: setup
	@$(PY) -m pytest tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests were collected"; exit 0; fi; exit $$rc

bench: setup
	$(MICROEXP) bench all

# Re-resolve the pins of requirements/*.txt and rewrite requirements/constraints.txt.
lock:
	@bash scripts/lock.sh

clean:
	rm -rf ros2_ws/build ros2_ws/install ros2_ws/log out
