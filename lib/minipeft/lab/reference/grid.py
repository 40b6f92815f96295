"""A chapter's reference grid: its configurations × seeds, each (configuration, seed) one independent job.

    grid = GRIDS["02_lora"]
    grid.jobs()                        # [Job(config=Config(name="qv r=1", ...), seed=0), ...]
    job.id, job.key                    # "qv r=1/seed=0", a 12-hex fingerprint of everything that sets its numbers

A job's key hashes the chapter, the grid's revision, the data protocol, the method, the training settings, the
analyses run after training and the seed: change any of them and the stored record no longer matches (it is stale).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

# Every reference run trains on the WHOLE Rotten Tomatoes training split (10,201 snippets) for one epoch unless a
# config says otherwise, and is scored on the WHOLE test split (1,276 snippets): one standard error ≈ 0.011.
TRAIN_DEFAULTS = dict(epochs=1.0, batch_size=32, max_length=64, lr=5e-4, warmup_ratio=0.06, weight_decay=0.01,
                      grad_clip=1.0, eval_batch_size=128)
BASELINES = ("head", "layernorm", "full", "top", "probe")  # methods that are not a minipeft config (see jobs.build_method)


@dataclass(frozen=True)
class Config:
    """One configuration of a chapter's grid."""
    experiment: str                      # the experiment it belongs to ("rank", "budget", ...): a section of the chapter
    name: str                            # unique within the chapter, e.g. "qv r=4"
    method: dict                         # {"method": "lora", "r": 4, ...} (a minipeft config as a dict) or a baseline
    train: dict = field(default_factory=dict)  # TrainConfig fields that differ from TRAIN_DEFAULTS
    after: tuple[str, ...] = ()          # analyses of the trained model (jobs.ANALYSES), stored with the run
    seeds: tuple[int, ...] | None = None  # None: the grid's seeds; 5 where the effect is small
    train_rows: int | None = None        # train on a seeded random subset of this many snippets (seed = the run's
                                         # seed: each seed draws its own subset); None: the whole training split

    def __post_init__(self):
        if "method" not in self.method:
            raise ValueError(f"config {self.name!r}: method needs a 'method' entry, e.g. {{'method': 'lora', 'r': 8}}.")
        if self.train_rows is not None and (isinstance(self.train_rows, bool) or not isinstance(self.train_rows, int)
                                            or self.train_rows < 1):
            raise ValueError(f"config {self.name!r}: train_rows must be a positive number of snippets, e.g. 100, "
                             f"or None for the whole training split; got {self.train_rows!r}.")
        unknown = set(self.train) - set(TRAIN_DEFAULTS)
        if unknown:
            raise ValueError(f"config {self.name!r}: unknown training settings {sorted(unknown)}; "
                             f"known: {sorted(TRAIN_DEFAULTS)}.")

    def settings(self) -> dict:
        return {**TRAIN_DEFAULTS, **self.train}

    def as_dict(self) -> dict:
        out = dict(method=self.method, train=self.settings(), after=list(self.after))
        if self.train_rows is not None:              # (absent otherwise: the stored runs' keys stay as they were)
            out["train_rows"] = self.train_rows
        return out


@dataclass(frozen=True)
class Job:
    chapter: str
    revision: int
    data: str
    config: Config
    seed: int

    @property
    def id(self) -> str:
        return f"{self.config.name}/seed={self.seed}"

    @property
    def key(self) -> str:
        spec = dict(chapter=self.chapter, revision=self.revision, data=self.data, seed=self.seed,
                    **self.config.as_dict())
        return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Grid:
    chapter: str                         # the notebook's name, e.g. "02_lora"
    configs: tuple[Config, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    revision: int = 1                    # bump when the protocol changes but no config does (e.g. a data fix)
    data: str = "rotten_tomatoes: whole train split -> whole test split"
    note: str = ""                       # what the grid is for, shown by --list
    borrowed: tuple[tuple[str, str], ...] = ()   # (chapter, configuration) read from another chapter's results
                                         # instead of run twice, e.g. chapter 04's full fine-tuning is chapter 00's
    planned: bool = False                # the chapter is still being written: its reference runs come first
    notebook: str = ""                   # the notebook that reads the grid when its name is not the chapter's
                                         # (chapter 11 reads 11_serving and 11_instruct: two test sets, two grids)

    def __post_init__(self):
        names = [c.name for c in self.configs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"grid {self.chapter}: configuration names must be unique, repeated: {duplicates}.")

    def config(self, name: str) -> Config:
        for c in self.configs:
            if c.name == name:
                return c
        raise KeyError(f"{self.chapter} has no configuration {name!r}; it has {[c.name for c in self.configs]}.")

    def seeds_of(self, config: Config) -> tuple[int, ...]:
        return config.seeds or self.seeds

    def jobs(self) -> list[Job]:
        return [Job(self.chapter, self.revision, self.data, c, s) for c in self.configs for s in self.seeds_of(c)]

    def job(self, job_id: str) -> Job:
        for job in self.jobs():
            if job.id == job_id:
                return job
        raise KeyError(f"{self.chapter} has no job {job_id!r}; list them with "
                       f"python -m minipeft.lab.reference {self.chapter} --list")

    @property
    def experiments(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for c in self.configs:
            out.setdefault(c.experiment, []).append(c.name)
        return out
