"""Reference runs: every chapter's experiment grid at full scale, several seeds, stored in results/<chapter>.jsonl,
read back by the chapter for its error bars and verdicts.

    make reference CHAPTER=02_lora [JOBS=2]              # run what is missing (resumable); docs/reference.md
    ref = minipeft.lab.reference.load("02_lora")         # in the chapter: checked against the grid, then
    ref.table(); ref.compare("qv r=16", "qv r=1", claim="similar")

    grid.py     Config, Job, Grid: what one run is and its fingerprint
    grids.py    GRIDS: every chapter's configurations
    jobs.py     run_job: one (configuration, seed) through minipeft.lab.chapter + fit, with its provenance
    results.py  read / append / check the JSON Lines file; Reference: table, intervals, paired comparisons
    __main__.py the command line (run, --jobs N, --list for a scheduler, --job ID, --check)
"""

from .grid import TRAIN_DEFAULTS, Config, Grid, Job
from .grids import GRIDS
from .results import Comparison, Reference, StaleReference, check, command, load, path, status

__all__ = ["TRAIN_DEFAULTS", "Config", "Grid", "Job", "GRIDS", "Comparison", "Reference", "StaleReference", "check",
           "command", "load", "path", "status"]
