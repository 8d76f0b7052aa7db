# The two commands a new user needs (see README.md):
#   make demo   set everything up, then run the main job on the built-in demo data
#   make test   set everything up, then run the test suite
# Both are idempotent: a second run reuses the environment.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test lint setup system-packages

demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/curate demo

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

setup: system-packages $(STAMP)

# ffmpeg/ffprobe probe and decode media; Chromium renders reports in the browser tests.
system-packages:
	@if ! command -v ffprobe >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg chromium >/dev/null; \
	  else \
	    echo "Please install ffmpeg and chromium (e.g. sudo apt-get install -y ffmpeg chromium)"; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,demo]'
	touch $(STAMP)
