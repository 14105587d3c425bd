# The README's commands. Everything goes through .venv, which `make setup` creates (idempotent).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
MICROEXP := $(VENV)/bin/microexp
export MICROEXP_TESTDATA ?= $(abspath ../shared/data)

ROS2_SRC ?= $(abspath ../shared/ros2-src)

.PHONY: setup demo test check lint format bench lock clean ros2-cli openeb

setup:
	@bash scripts/setup.sh

demo: setup
	$(MICROEXP) demo --out out/demo

# OpenEB (HAL + Python bindings) for evk4_node mode:=device, built from $(OPENEB_SRC) into a cache outside the
# tree (scripts/openeb.sh; seconds when cached). `make test` runs it when the source folder is there.
export OPENEB_SRC ?= $(abspath ../shared/openeb-src)
openeb: setup
	@bash scripts/openeb.sh --apt --src "$(OPENEB_SRC)" >/dev/null

# ruff (ruff.toml): lint and the formatter's check; `make format` rewrites the files.
lint: setup
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: setup
	@$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

# pytest exits 5 when it collected no test: that is reported, not treated as a failure of the suite.
test: setup lint
	@if [ -d "$(ROS2_SRC)" ]; then bash scripts/ros2_cli.sh --src "$(ROS2_SRC)"; \
	 else echo "ros2-cli: $(ROS2_SRC) is absent: the tests of the ros2 command line will skip"; fi
	@if [ -e "$(OPENEB_SRC)" ]; then bash scripts/openeb.sh --apt --src "$(OPENEB_SRC)" >/dev/null; \
	  else echo "make test: no OpenEB source at $(OPENEB_SRC): the tests that need OpenEB skip"; fi
	@bash scripts/chromium.sh
	@$(PY) -m pytest tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests were collected"; exit 0; fi; exit $$rc

# The quick tier: lint, then the tests that are neither slow nor heavy (heavy: they need Docker, OpenEB or the ros2
# command line, marked in tests/conftest.py). Nothing is built or started outside .venv; a few minutes on 2 cores.
CHECK_MARKERS := not slow and not heavy
check: setup lint
	@$(PY) -m pytest tests -m "$(CHECK_MARKERS)"; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests were collected"; exit 0; fi; exit $$rc

# The ROS 2 command line (ros2 launch/run/topic/...) for the pip install, from the jazzy sources in ROS2_SRC;
# built once into ~/.cache/microexp/ros2-cli-<hash>, then `. .venv/bin/activate` gives `ros2`.
ros2-cli: setup
	@bash scripts/ros2_cli.sh --src "$(ROS2_SRC)"

bench: setup
	$(MICROEXP) bench all

# Re-resolve the pins of requirements/*.txt and rewrite requirements/constraints.txt.
lock:
	@bash scripts/lock.sh

clean:
	rm -rf ros2_ws/build ros2_ws/install ros2_ws/log out
