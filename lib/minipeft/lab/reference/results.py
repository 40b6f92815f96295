"""Reading results/<chapter>.jsonl back: check it against the grid, then summarise and compare.

    ref = load("02_lora")                           # raises StaleReference (with the command to run) if it does not match
    ref.table()                                     # one row per configuration: mean accuracy and its 95 % interval
    ref.compare("qv r=16", "qv r=1", claim="similar", margin=0.01)   # a paired comparison and its verdict
    ref.compare("prefix n=10 MLP", "full fine-tuning", analysis_a=("ood_vader", "nyt"),
                analysis_b=("ood_vader", "nyt"))       # on another test set an analysis scored (chapter 09's VADER)
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import stats
from .grid import Grid, Job

RESULTS = Path(os.environ.get("MINIPEFT_RESULTS", Path(__file__).resolve().parents[4] / "results"))


class StaleReference(RuntimeError):
    """The reference file is missing, incomplete or belongs to another grid."""


def path(chapter: str) -> Path:
    return RESULTS / f"{chapter}.jsonl"


def command(chapter: str) -> str:
    return f"make reference CHAPTER={chapter}   (or: python -m minipeft.lab.reference {chapter})"


def read(chapter: str) -> list[dict]:
    file = path(chapter)
    if not file.is_file():
        return []
    records = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise StaleReference(f"{file}, line {number}: not JSON ({err}). A run was probably killed while "
                                     f"writing: delete that line and run {command(chapter)}") from err
    return records


def append(record: dict) -> None:
    """Add one record; a lock keeps parallel jobs from interleaving their lines."""
    file = path(record["chapter"])
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file, "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        fcntl.flock(f, fcntl.LOCK_UN)


def status(grid: Grid) -> tuple[dict[str, dict], list[Job], list[dict]]:
    """(done: job key -> record, missing jobs, foreign records that belong to no job of this grid)."""
    keys = {job.key for job in grid.jobs()}
    done, foreign = {}, []
    for record in read(grid.chapter):
        if record.get("key") in keys and "limit" not in record:
            done[record["key"]] = record
        else:
            foreign.append(record)
    return done, [job for job in grid.jobs() if job.key not in done], foreign


def check(grid: Grid) -> None:
    """Raise StaleReference unless every job of the grid has its record and nothing else is in the file."""
    done, missing, foreign = status(grid)
    file = path(grid.chapter)
    if not file.is_file():
        raise StaleReference(f"{grid.chapter}: no reference results ({file} is missing). Run:\n  {command(grid.chapter)}")
    problems = []
    if missing:
        problems.append(f"{len(missing)} of {len(grid.jobs())} runs missing (e.g. {missing[0].id})")
    if foreign:
        problems.append(f"{len(foreign)} record(s) from another grid (e.g. {foreign[0].get('job')}, "
                        f"key {foreign[0].get('key')})")
    if problems:
        raise StaleReference(f"{file} does not match the {grid.chapter} grid: {'; '.join(problems)}. Run:\n  "
                             f"{command(grid.chapter)}\n(it runs only what is missing and sets stale records aside)")


# --------------------------------------------------------------------------------------------- summaries
@dataclass
class Comparison:
    """A paired comparison of two configurations on the same seeds and test snippets, and the verdict words."""
    a: str
    b: str
    claim: str
    paired: stats.Paired
    words: str              # "reproduces" / "opposite" / "not significant at this scale" / "did not learn"
    why: str                # one sentence a student can read
    reason: str = ""        # why these words: what the interval does (stats.reason)

    def __str__(self) -> str:
        return f"{self.a} vs {self.b}: {self.words} ({self.why})"


def _right(predictions: str, labels: np.ndarray) -> np.ndarray:
    """Stored predictions (one digit per example, jobs.encode) against their labels: True where right."""
    return np.frombuffer(predictions.encode(), dtype=np.uint8) - ord("0") == labels


class Reference:
    def __init__(self, grid: Grid, records: dict[str, dict], labels):
        self.grid, self.labels = grid, np.asarray(labels)
        self.records = sorted(records.values(), key=lambda r: (r["name"], r["seed"]))
        for r in self.records:
            if r["test"]["examples"] != len(self.labels):
                raise StaleReference(f"{grid.chapter}: {r['job']} was scored on {r['test']['examples']} test "
                                     f"snippets, the test split has {len(self.labels)}. Run {command(grid.chapter)}")
        self.majority = float(np.bincount(self.labels).max() / len(self.labels))
        self.other_labels: dict[tuple[str, str], np.ndarray] = {}   # (analysis, key) -> labels of its own test set

    def runs(self, name: str) -> list[dict]:
        if name not in {n for _, n in self.grid.borrowed}:
            self.grid.config(name)  # a clear KeyError for a typo
        return [r for r in self.records if r["name"] == name]

    def accuracies(self, name: str, analysis: tuple[str, str] | None = None) -> np.ndarray:
        if analysis is None:
            return np.array([r["metrics"]["accuracy"] for r in self.runs(name)])
        return self.correct(name, analysis).mean(1)

    def labels_for(self, name: str, analysis: tuple[str, str] | None = None) -> np.ndarray:
        """The labels ``correct(name, analysis)`` is scored against: the test split's, or, for an analysis that scored
        another test set (its entry a dict with "predictions" and a "labels" fingerprint, as chapter 09's "ood_vader"
        per VADER domain), that set's own labels, checked against the fingerprint the run stored."""
        runs = self.runs(name)
        entry = runs[0]["metrics"][analysis[0]][analysis[1]] if analysis and runs else None
        if not isinstance(entry, dict):
            return self.labels
        key = (analysis[0], analysis[1])
        if key not in self.other_labels:
            from .jobs import ANALYSIS_LABELS
            if analysis[0] not in ANALYSIS_LABELS:
                raise KeyError(f"{analysis[0]!r} scored its own test set, but jobs.ANALYSIS_LABELS has no loader "
                               f"for its labels; it has {sorted(ANALYSIS_LABELS)}.")
            self.other_labels[key] = np.asarray(ANALYSIS_LABELS[analysis[0]](analysis[1]))
        labels = self.other_labels[key]
        from .jobs import labels_fingerprint
        stale = [r["job"] for r in runs if r["metrics"][analysis[0]][analysis[1]]["labels"] != labels_fingerprint(labels)]
        if stale:
            raise StaleReference(f"{self.grid.chapter}: {stale[0]} scored {key} on other labels than today's data: "
                                 f"the data changed. Run {command(self.grid.chapter)}")
        return labels

    def correct(self, name: str, analysis: tuple[str, str] | None = None) -> np.ndarray:
        """(seeds, examples) 0/1: which test snippets each seed's run got right (``analysis``: e.g.
        ("adapter_layer_ablation", "lowest 3 removed") reads the predictions stored by that analysis;
        ("ood_vader", "amazon") those on another test set, scored against its own labels: labels_for)."""
        labels = self.labels_for(name, analysis)
        rows = []
        for r in self.runs(name):
            entry = r["metrics"]["predictions"] if analysis is None else r["metrics"][analysis[0]][analysis[1]]
            rows.append(_right(entry["predictions"] if isinstance(entry, dict) else entry, labels))
        return np.array(rows, dtype=np.int8)

    # ----------------------------------------------------------------------------- chapter 12: tasks in turn
    def domain_labels(self, name: str) -> dict[str, np.ndarray]:
        """{domain: its test labels} for a domain job (chapter 12): the concatenated labels cut in the runs' order,
        each domain as long as its stored predictions."""
        metrics = self.runs(name)[0]["metrics"]
        if "stages" not in metrics:
            raise ValueError(f"{name!r} is not a domain job (chapter 12's sequence / per_task / multitask): no stages.")
        out, start = {}, 0
        for domain in metrics["order"]:
            n = len(metrics["stages"][0][domain]["predictions"])
            out[domain], start = self.labels[start:start + n], start + n
        if start != len(self.labels):
            raise StaleReference(f"{self.grid.chapter}: {name!r} stores {start} predictions per stage, the test "
                                 f"split has {len(self.labels)}. Run {command(self.grid.chapter)}")
        return out

    def stage_correct(self, name: str, stage: int, domain: str) -> np.ndarray:
        """(seeds, examples of the domain) 0/1: which of `domain`'s test rows each seed's model got right after
        training stage `stage` (-1: the last). Two stages of one configuration pair like two configurations."""
        labels = self.domain_labels(name)[domain]
        rows = [_right(r["metrics"]["stages"][stage][domain]["predictions"], labels) for r in self.runs(name)]
        return np.array(rows, dtype=np.int8)

    def system_correct(self, name: str, system: str, domain: str) -> np.ndarray:
        """(seeds, examples of the domain) 0/1 of a baseline a domain job stored beside its own model (the fusion
        job's "adapter", "head only", "best source + head": fusion_jobs.py), on the same rows as stage_correct."""
        labels = self.domain_labels(name)[domain]
        runs = self.runs(name)
        if any(system not in r["metrics"].get("systems", {}) for r in runs):
            known = sorted(runs[0]["metrics"].get("systems", {})) if runs else []
            raise KeyError(f"{name!r} stored no system {system!r}; it stored {known}.")
        return np.array([_right(r["metrics"]["systems"][system][domain]["predictions"], labels) for r in runs],
                        dtype=np.int8)

    def stage_accuracies(self, name: str) -> np.ndarray:
        """(seeds, stages, domains): the accuracy on every domain (columns in the runs' order) after every stage;
        one row per stage is the accuracy matrix R of continual learning (train.backward_transfer reads it)."""
        return np.array([[[stage[d]["accuracy"] for d in r["metrics"]["order"]] for stage in r["metrics"]["stages"]]
                         for r in self.runs(name)])

    def interval(self, name: str) -> tuple[float, float, float]:
        return stats.mean_interval(self.accuracies(name))

    def interval_text(self, name: str) -> str:
        """'0.816 [0.814, 0.819]': the mean test accuracy over seeds and its 95 % interval, as the chapters print it."""
        mean, low, high = self.interval(name)
        return f"{mean:.3f} [{low:.3f}, {high:.3f}]"

    def trainable(self, name: str) -> int:
        """How many parameters the configuration trains (the head included): the same for every seed."""
        counts = {r["metrics"]["trainable"] for r in self.runs(name)}
        if len(counts) != 1:
            raise StaleReference(f"{self.grid.chapter}: the runs of {name!r} train {sorted(counts)} parameters; "
                                 f"one configuration trains one number. Run {command(self.grid.chapter)}")
        return counts.pop()

    def learned(self, name: str) -> bool:
        # one seed (chapter 09's learning-rate sweep): the test set's own (Wilson) interval
        return stats.learned(self.accuracies(name), self.majority, examples=len(self.labels))

    def minutes(self, name: str | None = None) -> float:
        # None: this chapter's own runs (a borrowed configuration's minutes belong to its own chapter)
        runs = [r for r in self.records if r["chapter"] == self.grid.chapter] if name is None else self.runs(name)
        return sum(r["seconds"] for r in runs) / 60

    def table(self):
        import pandas as pd

        rows = []
        names = [(c.experiment, c.name) for c in self.grid.configs]
        names += [(f"from {chapter}", name) for chapter, name in self.grid.borrowed]
        for experiment, name in names:
            if not self.runs(name):         # load(partial=True): not run yet
                continue
            mean, low, high = self.interval(name)
            rows.append(dict(experiment=experiment, config=name, seeds=len(self.runs(name)), accuracy=mean,
                             ci_low=low, ci_high=high,
                             trainable=self.trainable(name) if "trainable" in self.runs(name)[0]["metrics"]
                             else None,   # chapter 12's domain jobs train several models: no one count
                             learned=self.learned(name), minutes=self.minutes(name)))
        return pd.DataFrame(rows).set_index("config")

    def compare(self, a: str, b: str, claim: str = "greater", margin: float = 0.01,
                analysis_a: tuple[str, str] | None = None, analysis_b: tuple[str, str] | None = None,
                check_learned: bool = True) -> Comparison:
        """A vs B, paired on seeds and test snippets; the verdict for the paper's claim (A > B, or A ≈ B)."""
        ca, cb = self.correct(a, analysis_a), self.correct(b, analysis_b)
        seeds_a = [r["seed"] for r in self.runs(a)]
        if seeds_a != [r["seed"] for r in self.runs(b)]:
            raise ValueError(f"{a} and {b} were not run with the same seeds: they cannot be paired.")
        paired = stats.paired_bootstrap(ca, cb)
        labels = self.labels_for(a, analysis_a)
        majority = float(np.bincount(labels).max() / len(labels))   # of the test set these predictions were scored on
        if check_learned:
            lazy = [n for n, c in ((a, ca), (b, cb)) if not stats.learned(c.mean(1), majority)]
            if lazy:
                why = (f"{' and '.join(lazy)} did not beat the majority class ({majority:.3f}) by more than its "
                       "interval: no verdict can rest on it")
                return Comparison(a, b, claim, paired, "did not learn", why, why)
        words = stats.verdict(paired.diff, paired.low, paired.high, claim, margin)
        band = f" (the paper's 'about equal' read as within ±{margin:.3f})" if claim == "similar" else ""
        return Comparison(a, b, claim, paired, words,
                          f"{a} − {b} = {paired}, {len(seeds_a)} seeds × {len(labels):,} test snippets{band}",
                          stats.reason(paired.diff, paired.low, paired.high, claim, margin))

    def errorbar(self, ax, names, x=None, **kwargs):
        """Mean accuracy with its 95 % interval over seeds, one point per configuration."""
        x = list(range(len(names))) if x is None else list(x)
        means, lows, highs = zip(*(self.interval(n) for n in names))
        yerr = np.array([[m - lo for m, lo in zip(means, lows)], [hi - m for m, hi in zip(means, highs)]])
        yerr[~np.isfinite(yerr)] = 0
        kwargs.setdefault("capsize", 3)
        kwargs.setdefault("fmt", "o")
        return ax.errorbar(x, means, yerr=yerr, **kwargs)


def load(chapter: str, partial: bool = False) -> Reference:
    """The chapter's reference results, checked against its grid (StaleReference with the command otherwise).

    partial=True: runs still missing are allowed (a grid being extended while its chapter is read: ``runs`` of a
    configuration without records is empty); records of another grid are still refused."""
    from .grids import GRIDS
    from .jobs import grid_labels, labels_fingerprint

    if chapter not in GRIDS:
        raise KeyError(f"No reference grid for {chapter!r}; grids: {sorted(GRIDS)}.")
    grid = GRIDS[chapter]
    done, _, foreign = status(grid)
    if not (partial and done and not foreign):
        check(grid)
    labels = grid_labels(grid)                  # Rotten Tomatoes' test split, or the domains' (chapter 12)
    fingerprint = labels_fingerprint(labels)
    stale = [r["job"] for r in done.values() if r["test"]["labels"] != fingerprint]
    if stale:
        raise StaleReference(f"{chapter}: {len(stale)} run(s) were scored on other test labels than today's split "
                             f"(e.g. {stale[0]}): the data changed. Run {command(chapter)}")
    for other, name in grid.borrowed:       # another chapter's runs of the same seeds, read (and checked) from its file
        done.update({r["key"]: r for r in load(other).runs(name)})
    return Reference(grid, done, labels)


def decoder_grid(grid: Grid) -> bool:
    """Is this a grid of SmolLM2 jobs (chapter 10's few-shot, chapter 11's serving and instruction tuning)?"""
    from .jobs import DECODER_JOBS

    return all(c.method["method"] in DECODER_JOBS for c in grid.configs)


def seed_spread(chapters: list[str] | None = None) -> list[dict]:
    """How much a configuration's accuracy moves with the seed alone (the instability the notes list among PEFT's
    challenges), over the committed reference runs: one row per configuration of every written chapter's grid
    (planned grids are still running): chapter, config, seeds, lowest, highest, range = highest − lowest."""
    from .grids import GRIDS

    rows = []
    # chapter 10's seed is the DRAW of its k training examples, not a training seed, and chapter 11's grids train the
    # decoder, whose "accuracy" is a share of generations or a zero-shot score: different questions (their own
    # chapters show those spreads), left out here
    for chapter in chapters or [c for c, g in GRIDS.items() if not g.planned and not decoder_grid(g)]:
        ref = load(chapter, partial=True)           # a grid being extended: the configurations it has
        for config in ref.grid.configs:
            if len(ref.grid.seeds_of(config)) < 2 or not ref.runs(config.name):   # one seed (chapter 09's learning-
                continue                                                         # rate runs): no spread to measure
            acc = ref.accuracies(config.name)
            rows.append(dict(chapter=chapter, config=config.name, seeds=len(acc), lowest=float(acc.min()),
                             highest=float(acc.max()), range=float(acc.max() - acc.min())))
    return rows
