# Two commands: `make up` (install, migrate, seed, serve web + worker) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.12+ is required (Django 6.1). pyenv shims answer "command not found" for versions
# that are installed but not selected, so every candidate is asked to run, not just found.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.14 $$(ls -d /root/.pyenv/versions/3.1[2-9]*/bin/python3 $$HOME/.pyenv/versions/3.1[2-9]*/bin/python3 2>/dev/null) python3; do \
	  $$p -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1 && { command -v $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help up test install install-dev migrate seed serve worker prod screenshots bench clean-data check-python

help:
	@echo "make up          install into .venv, migrate, seed the demo tenant, serve web + worker on $(HOST):$(PORT)"
	@echo "make test        install dev requirements into .venv and run the test suite"
	@echo "make prod        production layout: gunicorn (HTTP) + daphne (/ws/) + worker"
	@echo "make bench       run the benchmarks in bench/ (results: bench/README.md)"
	@echo "make screenshots write docs/screenshots/*.png (headless chromium on a seeded demo tenant)"

check-python:
	@if [ -z "$(PYTHON)" ]; then \
	  echo "ERROR: Python 3.12 or newer is required (Django 6.1). Install python3.12 or python3.13, or run 'make PYTHON=/path/to/python3.12 ...'." >&2; \
	  exit 1; fi

$(VENV)/bin/python: | check-python
	@echo "Creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt $(VENV)/bin/python
	$(PIP) install --quiet -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/bin/python
	$(PIP) install --quiet -r requirements-dev.txt
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(PY) manage.py migrate --noinput

seed: migrate
	$(PY) manage.py seed_demo

up: seed
	$(PY) manage.py collectstatic --noinput --verbosity 0
	DEBUG=$${DEBUG:-true} HOST=$(HOST) PORT=$(PORT) $(PY) -m platform_ai.run_local

worker: install
	$(PY) manage.py run_worker

prod: migrate
	$(PY) manage.py collectstatic --noinput --verbosity 0
	HOST=$(HOST) PORT=$(PORT) $(PY) -m platform_ai.run_production

test: install-dev
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install-dev
	$(PY) bench/run_all.py

screenshots: install-dev
	$(PY) -m pytest tests/browser/test_screenshots.py -p no:randomly -q --screenshots

clean-data:
	rm -rf .data
