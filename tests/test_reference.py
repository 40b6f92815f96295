"""Reference runs (minipeft.lab.reference): grid fingerprints, the results file, staleness, paired comparisons, and
one real job run twice on a slice, bit for bit."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from minipeft.lab import stats
from minipeft.lab.reference import GRIDS, Config, Grid, StaleReference, results
from minipeft.lab.reference.grid import TRAIN_DEFAULTS

ROOT = Path(__file__).resolve().parents[1]
TOY = Grid("toy", (Config("e", "a", {"method": "head"}), Config("e", "b", {"method": "lora", "r": 2})), seeds=(0, 1))


def _record(job, correct, labels):
    preds = "".join(str(y if c else 1 - y) for c, y in zip(correct, labels))
    return dict(chapter=job.chapter, experiment=job.config.experiment, name=job.config.name, seed=job.seed, job=job.id,
                key=job.key, metrics=dict(accuracy=float(np.mean(correct)), predictions=preds, trainable=10),
                seconds=60.0, test=dict(examples=len(labels), labels="x"))


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "RESULTS", tmp_path)
    return tmp_path


def test_a_job_key_changes_with_everything_that_sets_its_numbers():
    job = TOY.jobs()[0]
    same = Grid("toy", (Config("other experiment name", "a", {"method": "head"}),), seeds=(0,)).jobs()[0]
    assert job.key == same.key                                      # the experiment label is not a setting
    for other in [Grid("toy", (Config("e", "a", {"method": "head"}, {"lr": 1e-2}),), seeds=(0,)),
                  Grid("toy", (Config("e", "a", {"method": "full"}),), seeds=(0,)),
                  Grid("toy", (Config("e", "a", {"method": "head"}),), seeds=(0,), revision=2),
                  Grid("toy2", (Config("e", "a", {"method": "head"}),), seeds=(0,))]:
        assert other.jobs()[0].key != job.key
    assert TOY.jobs()[1].key != job.key                             # another seed


def test_grids_are_well_formed():
    for chapter, grid in GRIDS.items():   # a grid's chapter exists, or is being written (planned: runs come first)
        assert (ROOT / "course" / f"{grid.notebook or chapter}.ipynb").is_file() != grid.planned, (chapter, grid.planned)
        assert len({j.key for j in grid.jobs()}) == len(grid.jobs())
        for c in grid.configs:   # at least 3 seeds, except a sweep's off-default points (chapter 09's learning rates:
            # one seed each, a factor of ten judged against the seed spread, which the chapter states), and a model
            # used as it is (chapter 11's "as it is": nothing trained, nothing sampled: one run)
            assert len(grid.seeds_of(c)) >= 3 or (c.experiment == "learning rate" and c.seeds == (0,)) or (
                c.method.get("tuning") == "none" and c.seeds == (0,)), c.name
    with pytest.raises(ValueError, match="unique"):
        Grid("x", (Config("e", "a", {"method": "head"}), Config("e", "a", {"method": "full"})))
    with pytest.raises(ValueError, match="unknown training settings"):
        Config("e", "a", {"method": "head"}, {"learning_rate": 1e-3})
    for bad in (0, -5, 2.5, True, "100"):
        with pytest.raises(ValueError, match="train_rows must be a positive number of snippets"):
            Config("e", "a", {"method": "head"}, train_rows=bad)
    assert set(TRAIN_DEFAULTS) >= {"epochs", "lr", "batch_size"}


def test_missing_incomplete_and_foreign_files_fail_loudly_with_the_command(store):
    labels = [0, 1] * 10
    with pytest.raises(StaleReference, match="make reference CHAPTER=toy"):
        results.check(TOY)
    jobs = TOY.jobs()
    for job in jobs[:3]:
        results.append(_record(job, [1] * 20, labels))
    with pytest.raises(StaleReference, match="1 of 4 runs missing"):
        results.check(TOY)
    results.append(_record(jobs[3], [1] * 20, labels))
    results.check(TOY)                                              # complete
    old = Grid("toy", (Config("e", "a", {"method": "head"}, {"lr": 1.0}),), seeds=(0,)).jobs()[0]
    results.append(_record(old, [1] * 20, labels))
    with pytest.raises(StaleReference, match="another grid"):
        results.check(TOY)


def test_a_half_written_line_is_reported_not_swallowed(store):
    (store / "toy.jsonl").write_text('{"chapter": "toy", "key": \n')
    with pytest.raises(StaleReference, match="line 1: not JSON"):
        results.read("toy")


def test_set_aside_moves_foreign_records_and_keeps_the_rest(store):
    from minipeft.lab.reference.__main__ import set_aside

    labels = [0, 1] * 10
    for job in TOY.jobs():
        results.append(_record(job, [1] * 20, labels))
    old = Grid("toy", (Config("e", "a", {"method": "head"}, {"lr": 1.0}),), seeds=(0,)).jobs()[0]
    results.append(_record(old, [1] * 20, labels))
    set_aside(TOY)
    results.check(TOY)
    stale = [json.loads(line) for line in (store / "toy.stale.jsonl").read_text().splitlines()]
    assert [r["key"] for r in stale] == [old.key]                   # nothing lost


def test_reference_compares_paired_runs_and_refuses_a_verdict_on_runs_that_did_not_learn(store):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 1000)
    recs = {}
    for job in TOY.jobs():
        p = 0.55 if job.config.name == "a" else 0.85
        recs[job.key] = _record(job, (rng.random(1000) < p).astype(int), labels)
    ref = results.Reference(TOY, recs, labels)
    table = ref.table()
    assert table.loc["b", "accuracy"] > table.loc["a", "accuracy"] and table.loc["b", "seeds"] == 2
    assert ref.learned("b")
    mean, low, high = ref.interval("b")
    assert ref.interval_text("b") == f"{mean:.3f} [{low:.3f}, {high:.3f}]" and low < mean < high
    assert ref.trainable("b") == 10 == table.loc["b", "trainable"]
    better = ref.compare("b", "a", claim="greater", check_learned=False)
    assert better.words == "reproduces" and better.paired.low > 0
    assert ref.compare("a", "b").words in ("did not learn", "opposite")
    ref.majority = 0.6                                              # now "a" (≈ 0.55) is below the majority class
    lazy = ref.compare("b", "a")
    assert lazy.words == "did not learn" and "a did not beat the majority class" in lazy.why
    assert stats.bold(lazy.words) == "**no verdict**" and stats.bold(better.words) == "**reproduces**"
    with pytest.raises(KeyError, match="no configuration 'c'"):
        ref.accuracies("c")
    ref.runs("b")[0]["metrics"]["trainable"] = 11                   # two seeds of one configuration disagree
    with pytest.raises(StaleReference, match="train \\[10, 11\\] parameters"):
        ref.trainable("b")


def test_an_analysis_scored_on_its_own_test_set_is_paired_on_its_own_labels(store):
    """Chapter 09's "ood_vader": each run stores predictions on VADER domains; Reference reads them against that
    domain's labels (checked by fingerprint), and the did-not-learn floor is that domain's majority class."""
    from minipeft.lab.reference.jobs import labels_fingerprint

    rng = np.random.default_rng(1)
    labels, domain = rng.integers(0, 2, 400), np.array([1] * 270 + [0] * 130)      # the domain: majority 0.675
    recs = {}
    for job in TOY.jobs():
        p = 0.9 if job.config.name == "b" else 0.7
        rec = _record(job, (rng.random(400) < 0.8).astype(int), labels)
        right = rng.random(len(domain)) < p
        rec["metrics"]["ood"] = {"d": dict(predictions="".join(str(y if c else 1 - y) for c, y in zip(right, domain)),
                                           labels=labels_fingerprint(domain))}
        recs[job.key] = rec
    ref = results.Reference(TOY, recs, labels)
    ref.other_labels[("ood", "d")] = domain                       # what jobs.ANALYSIS_LABELS would load
    ood = ("ood", "d")
    assert ref.correct("b", ood).shape == (2, 270 + 130)
    assert ref.accuracies("b", ood).mean() == pytest.approx(0.9, abs=0.05)
    c = ref.compare("b", "a", analysis_a=ood, analysis_b=ood, check_learned=False)
    assert c.words == "reproduces" and "400 test snippets" in c.why
    lazy = ref.compare("a", "b", analysis_a=ood, analysis_b=ood)   # a ≈ 0.70: above 0.5, not above the domain's 0.675
    assert lazy.words == "did not learn" and "0.675" in lazy.why
    ref.other_labels[ood] = domain[::-1].copy()                   # the data changed since the runs
    with pytest.raises(StaleReference, match="other labels"):
        ref.correct("b", ood)


def test_a_partial_load_reads_the_runs_that_exist_and_still_refuses_foreign_ones(store, monkeypatch):
    from minipeft.lab.reference import grids, jobs

    labels = [0, 1] * 10
    monkeypatch.setitem(grids.GRIDS, "toy", TOY)
    monkeypatch.setattr(jobs, "grid_labels", lambda grid: labels)
    monkeypatch.setattr(jobs, "labels_fingerprint", lambda labels: "x")
    results.append(_record(TOY.jobs()[0], [1] * 20, labels))
    with pytest.raises(StaleReference, match="3 of 4 runs missing"):
        results.load("toy")
    ref = results.load("toy", partial=True)
    assert len(ref.runs("a")) == 1 and ref.runs("b") == [] and list(ref.table().index) == ["a"]
    results.append(dict(_record(TOY.jobs()[1], [1] * 20, labels), key="stale"))
    with pytest.raises(StaleReference, match="another grid"):
        results.load("toy", partial=True)


def test_a_borrowed_configuration_is_read_from_its_own_chapter_and_paired_on_the_same_seeds(store, monkeypatch):
    from minipeft.lab.reference import jobs

    labels = [0, 1] * 10
    lender = Grid("lender", (Config("e", "full", {"method": "full"}),), seeds=(0, 1))
    borrower = Grid("toy", TOY.configs, seeds=(0, 1), borrowed=(("lender", "full"),))
    monkeypatch.setitem(GRIDS, "lender", lender)
    monkeypatch.setitem(GRIDS, "toy", borrower)
    monkeypatch.setattr(jobs, "test_labels", lambda: tuple(labels))
    monkeypatch.setattr(jobs, "labels_fingerprint", lambda _: "x")
    for job in borrower.jobs():
        results.append(_record(job, [1] * 14 + [0] * 6, labels))
    with pytest.raises(StaleReference, match="CHAPTER=lender"):       # the lender's file is checked too
        results.load("toy")
    for job in lender.jobs():
        results.append(_record(job, [1] * 19 + [0], labels))
    ref = results.load("toy")
    assert list(ref.accuracies("full")) == [0.95, 0.95] and ref.minutes() == 4.0    # its own 4 runs of a minute
    assert ref.table().loc["full", "experiment"] == "from lender"
    assert ref.compare("full", "a").paired.diff == pytest.approx(0.25)
    with pytest.raises(KeyError, match="no configuration"):
        ref.runs("fulll")


def test_committed_results_match_their_grids_and_every_chapter_that_reads_one_has_it():
    """Stale results are a defect: no results/<chapter>.jsonl may hold a record of another grid, and every chapter
    that calls reference.load must find its file complete. (A grid still being run may be committed part-done: the
    runner resumes it, and no chapter reads it yet.)"""
    for file in sorted((ROOT / "results").glob("*.jsonl")):
        if file.name.endswith(".stale.jsonl"):
            continue
        assert file.stem in GRIDS, f"{file} has no grid"
        _, _, foreign = results.status(GRIDS[file.stem])
        assert not foreign, f"{file}: {len(foreign)} record(s) of another grid, e.g. {foreign[0].get('job')}"
    for notebook in sorted((ROOT / "course").glob("*.ipynb")):
        text = "".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"])
        for chapter in re.findall(r"reference\.load\(\"([^\"]+)\"", text):     # partial=True too
            results.check(GRIDS[chapter])


def test_a_small_data_run_trains_on_its_own_subset_and_keeps_the_other_keys():
    """train_rows: each seed draws its own subset of the training split; a config without it keeps its old key."""
    from minipeft.lab.reference.jobs import run_job

    plain = Config("e", "a", {"method": "head"})
    assert "train_rows" not in plain.as_dict()
    small = Grid("toy", (Config("e", "a", {"method": "head"}, {"epochs": 2.0, "batch_size": 8}, train_rows=24),),
                 seeds=(0, 1, 2))
    assert small.jobs()[0].key != Grid("toy", (Config("e", "a", {"method": "head"}, {"epochs": 2.0, "batch_size": 8}),),
                                       seeds=(0, 1, 2)).jobs()[0].key
    record = run_job(small.jobs()[0], limit=40, progress=False)
    assert record["metrics"]["examples"] == 48 and record["metrics"]["steps"] == 6     # 24 rows x 2 epochs, batch 8
    assert record["config"]["train_rows"] == 24


def test_single_layer_removal_and_the_layernorm_baseline():
    """Chapter 01's Houlsby additions: removing ONE layer's adapters at a time (an analysis of the trained model), and
    the LayerNorm-only baseline (every LayerNorm and the head train, nothing else)."""
    from minipeft.lab import chapter
    from minipeft.lab.backbones import tiny_encoder
    from minipeft.lab.reference.jobs import run_job

    grid = Grid("toy", (Config("e", "houlsby", {"method": "adapter", "kind": "houlsby", "bottleneck": 4},
                               {"lr": 1e-2}, after=("adapter_single_layer",)),), seeds=(0,))
    out = run_job(grid.jobs()[0], limit=32, progress=False)["metrics"]["adapter_single_layer"]
    assert sorted(out) == [f"layer {i} removed" for i in range(6)] and all(len(p) == 32 for p in out.values())
    model = chapter.classifier(tiny_encoder(), "layernorm")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    d, layers = model.encoder.config.hidden_size, model.encoder.config.num_hidden_layers
    assert all("LayerNorm" in n or n.startswith("head.") for n in trainable)
    assert sum(p.numel() for n, p in model.named_parameters() if n in trainable and "LayerNorm" in n) == \
        2 * d * (2 * layers + 1)                # two per layer (attention, FFN) and the embeddings', gain + bias


def test_one_reference_job_is_deterministic_bit_for_bit():
    """Same configuration, seed and hardware -> the same predictions, loss curve and accuracy (on a 48-snippet slice
    of the real data with the real encoder: two optimizer steps, ~5 s)."""
    from minipeft.lab.reference.jobs import run_job

    job = GRIDS["02_lora"].job("qv r=4/seed=1")
    first, second = (run_job(job, limit=48, progress=False) for _ in range(2))
    assert first["metrics"]["predictions"] == second["metrics"]["predictions"]
    assert first["metrics"]["loss_curve"] == second["metrics"]["loss_curve"]
    assert first["metrics"]["final_loss"] == second["metrics"]["final_loss"]
    assert first["limit"] == 48 and len(first["metrics"]["predictions"]) == 48
    assert first["hardware"]["threads"] >= 1 and "torch" in first["versions"]


def test_references_to_other_chapters_resolve():
    """'Chapter NN' names a chapter that exists, or says it is coming (and stops saying so once it lands)."""
    existing = {p.name[:2] for p in (ROOT / "course").glob("[0-9][0-9]_*.ipynb")}
    for notebook in sorted((ROOT / "course").glob("*.ipynb")):
        text = "".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"])
        for match in re.finditer(r"[Cc]hapters? (\d\d)\b", text):
            number, after = match.group(1), text[match.end():match.end() + 80]
            coming = "coming soon" in after
            where = f"{notebook.name}: ...{text[max(0, match.start() - 30):match.end() + 60]!r}"
            if number in existing:
                assert not coming, f"chapter {number} exists now: drop 'coming soon' in {where}"
            else:
                assert coming, f"chapter {number} does not exist yet: say '(coming soon)' in {where}"


def test_the_course_cites_the_notes_by_title_not_by_file():
    """The lecture notes are cited by their own titles: a student's clone has no shared/seeds folder."""
    pattern = re.compile(r"\bseed 00\d\b|seeds/\d{3}")
    for folder in ("course", "exercises", "solutions", "docs"):
        for file in sorted((ROOT / folder).glob("*.*")):
            if file.suffix in (".ipynb", ".md"):
                assert not pattern.search(file.read_text(encoding="utf-8")), f"{file} cites a notes file by name"


def test_an_adalora_job_trains_with_its_hooks_and_stores_its_rank_pattern():
    """Chapter 05's AdaLoRA job on a slice (2 optimizer steps): chapter.run stretches its 319-step schedule to the
    run, the allocator reaches the final budget, and the adalora_ranks analysis stores one rank per matrix."""
    from minipeft.lab.reference.jobs import run_job

    job = GRIDS["05_adalora"].job("adalora 12→8/seed=0")
    record = run_job(job, limit=64, progress=False)
    ranks = record["metrics"]["adalora_ranks"]
    assert record["metrics"]["steps"] == 2 and len(ranks) == 36
    assert sum(ranks.values()) == 8 * 36 and all(0 <= r <= 12 for r in ranks.values())
    assert "layer.5.intermediate.dense" in ranks and "layer.0.attention.self.query" in ranks


def test_chapter_06_grid_compares_its_methods_at_equal_parameters_on_minilm_shapes():
    """LoHa, LoKr and KronA each spend what LoRA r=16 (chapter 02's configuration) spends on W_q, W_v: within 0.1 %,
    counted on a BERT with MiniLM's shapes (d = 384, 6 layers, vocabulary cut to keep it small)."""
    import minipeft as mp
    from minipeft.core.params import trainable_parameters
    from minipeft.lab.backbones import tiny_encoder
    from minipeft.lab.reference.jobs import build_method

    grid = GRIDS["06_kronecker"]
    counts = {}
    configs = {name: grid.config(name).method for name in ("loha r=8", "lokr f=3 r=48", "krona 3x4")}
    configs["qv r=16"] = grid.config("lora r=16").method
    assert configs["qv r=16"] == GRIDS["02_lora"].config("qv r=16").method
    for name, method in configs.items():
        model = tiny_encoder(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
        counts[name] = trainable_parameters(mp.inject(model, build_method(method, None)))[0]
    assert counts["qv r=16"] == 12 * 16 * 768
    for name, n in counts.items():
        assert abs(n - counts["qv r=16"]) / counts["qv r=16"] < 1e-3, counts
    assert grid.borrowed == (("02_lora", "head only"),)


def test_a_chapter_06_job_stores_the_spectrum_of_every_delta_w():
    """Chapter 06's KronA job on a slice (2 optimizer steps): the delta_spectra analysis stores one rank and one
    effective rank per adapted matrix (12) and the mean normalised spectrum (384 values, starting at 1)."""
    from minipeft.lab.reference.jobs import run_job

    record = run_job(GRIDS["06_kronecker"].job("krona 3x4/seed=0"), limit=64, progress=False)
    spectra = record["metrics"]["delta_spectra"]
    assert record["metrics"]["steps"] == 2 and len(spectra["rank"]) == 12 and len(spectra["erank"]) == 12
    assert len(spectra["sv"]) == 384 and spectra["sv"][0] == 1.0
    assert all(1 <= r <= 288 for r in spectra["rank"].values())


def test_chapter_07_grid_spends_the_tiniest_budgets_on_minilm_shapes():
    """IA3 (the paper's l_k, l_v, l_ff), BitFit on every bias and on §4's q + FFN-in subset, counted on a BERT with
    MiniLM's shapes, with and without the 770-number head; LoRA r = 1, 4, 16 and the head are chapter 02's."""
    import minipeft as mp
    from minipeft.core.params import trainable_parameters
    from minipeft.lab import chapter
    from minipeft.lab.backbones import tiny_encoder
    from minipeft.lab.reference.jobs import build_method

    def minilm_shapes():
        return tiny_encoder(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)

    grid = GRIDS["07_scaling"]
    expected = {"ia3 k,v,ff": 6 * (384 + 384 + 1536), "bitfit all": 6 * (7 * 384 + 1536) + 384 + 384,
                "bitfit q+ffn-in": 6 * (384 + 1536)}
    assert expected == {"ia3 k,v,ff": 13_824, "bitfit all": 26_112, "bitfit q+ffn-in": 11_520}
    for name, n in expected.items():
        method = build_method(grid.config(name).method, None)
        assert trainable_parameters(mp.inject(minilm_shapes(), method))[0] == n, name
        assert trainable_parameters(chapter.classifier(minilm_shapes(), method))[0] == n + 2 * 384 + 2, name
    lora_r1 = build_method(GRIDS["02_lora"].config("qv r=1").method, None)
    assert trainable_parameters(mp.inject(minilm_shapes(), lora_r1))[0] == 12 * 768
    assert grid.borrowed == (("02_lora", "head only"), ("02_lora", "qv r=1"), ("02_lora", "qv r=4"),
                             ("02_lora", "qv r=16"))
    for chapter_, name in grid.borrowed:
        GRIDS[chapter_].config(name)                      # borrowed configurations exist in their own grid


def test_chapter_07_jobs_store_how_far_their_vectors_moved():
    """Each 07 job on a slice (2 optimizer steps) stores its analysis: 18 IA3 vectors (l_k, l_v, l_ff of 6 blocks) with
    their shift from 1; the mean |b - b0| of all 50 biases for BitFit (the pooler's exactly 0: mean pooling never
    reaches it) or of the subset's 12; the key biases barely move (softmax ignores them: zero gradient)."""
    from minipeft.lab.reference.jobs import run_job

    grid = GRIDS["07_scaling"]
    ia3 = run_job(grid.job("ia3 k,v,ff/seed=0"), limit=64, progress=False)["metrics"]
    scales = ia3["ia3_scales"]
    assert ia3["steps"] == 2 and len(scales) == 18
    assert {k.rsplit(".", 1)[-1] for k in scales} == {"key", "value", "dense"}
    assert all(set(v) == {"shift", "mean", "min", "max"} and v["shift"] > 0 for v in scales.values())
    assert not any(".attention.output." in k for k in scales)    # the paper's recipe, not peft's default

    every = run_job(grid.job("bitfit all/seed=0"), limit=64, progress=False)["metrics"]["bias_shift"]
    assert len(every) == 50 and every["pooler.dense.bias"] == 0.0 and every["embeddings.LayerNorm.bias"] > 0
    for i in range(6):
        key, query = every[f"layer.{i}.attention.self.key.bias"], every[f"layer.{i}.attention.self.query.bias"]
        assert key < 0.05 * query, (i, key, query)
    subset = run_job(grid.job("bitfit q+ffn-in/seed=0"), limit=64, progress=False)["metrics"]["bias_shift"]
    assert sorted(subset) == sorted([f"layer.{i}.attention.self.query.bias" for i in range(6)]
                                    + [f"layer.{i}.intermediate.dense.bias" for i in range(6)])


def test_chapter_08_grid_spends_its_budgets_on_minilm_shapes():
    """LoRA on the attention (Wq, Wv, r = 20) and on the FFN (in and out, r = 8) spend the same 184,320 numbers; the
    scaled parallel adapter spends chapter 01's 297,600; MAM is exactly its two parts (chapter 03's MLP prefix and the
    scaled parallel adapter), each counted alone and added; every run adds the 770-number head. Counted on a BERT with
    MiniLM's shapes; the borrowed configurations are the ones their own chapters ran."""
    import minipeft as mp
    from minipeft.core.params import trainable_parameters
    from minipeft.lab import chapter
    from minipeft.lab.backbones import tiny_encoder
    from minipeft.lab.reference.jobs import build_method

    def minilm_shapes():
        return tiny_encoder(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)

    grid = GRIDS["08_unified"]
    mam = "mam (prefix n=10 MLP + parallel s=4)"
    prefix_mlp = 10 * 384 + (384 * 128 + 128) + (128 * 6 * 2 * 384 + 6 * 2 * 384)   # embedding + the 2-layer MLP
    expected = {"lora attn r=20": 6 * 2 * 20 * (384 + 384), "lora ffn r=8": 6 * 2 * 8 * (384 + 1536),
                "parallel m=64 s=4": 6 * (2 * 64 * 384 + 384 + 64)}
    expected[mam] = prefix_mlp + expected["parallel m=64 s=4"]
    assert expected["lora attn r=20"] == expected["lora ffn r=8"] == 184_320
    assert expected["parallel m=64 s=4"] == 297_600 and expected[mam] == 945_152
    for name, n in expected.items():
        method = build_method(grid.config(name).method, None)
        assert trainable_parameters(chapter.classifier(minilm_shapes(), method))[0] == n + 2 * 384 + 2, name
    parts = grid.config(mam).method["parts"]
    assert parts == [GRIDS["03_prefix"].config("prefix n=10 MLP").method, grid.config("parallel m=64 s=4").method]
    assert grid.config("parallel m=64 s=4").method == {**GRIDS["01_adapters"].config("parallel m=64").method,
                                                       "scaling": 4.0}
    alone = [trainable_parameters(mp.inject(minilm_shapes(), build_method(part, None)))[0] for part in parts]
    assert alone == [prefix_mlp, expected["parallel m=64 s=4"]] and sum(alone) == expected[mam]
    assert grid.borrowed == (("02_lora", "head only"), ("01_adapters", "pfeiffer m=64"),
                             ("01_adapters", "parallel m=64"), ("03_prefix", "prefix n=10 MLP"))
    for chapter_, name in grid.borrowed:
        GRIDS[chapter_].config(name)                      # borrowed configurations exist in their own grid


def test_a_chapter_09_job_scores_out_of_distribution_on_vader_s_other_domains():
    """The 09 grid repeats earlier chapters' configurations with the "ood_vader" analysis: on a slice (2 optimizer
    steps), predictions for the first 64 snippets of amazon, nyt and tweets, never movies (Rotten Tomatoes' source)."""
    from minipeft.lab.reference.jobs import run_job

    grid = GRIDS["09_choosing"]
    methods = [c for c in grid.configs if c.experiment == "methods"]
    assert all(c.after == ("ood_vader",) for c in methods) and sum(len(grid.seeds_of(c)) for c in methods) == 24
    for c in grid.configs:      # the learning-rate sweep: a method's own settings, its rate x0.1 or x10, seed 0
        if c.experiment == "learning rate":
            base, factor = c.name.rsplit(" lr x", 1)
            assert c.method == grid.config(base).method and c.seeds == (0,)
            assert c.settings()["lr"] == pytest.approx(grid.config(base).settings()["lr"] * float(factor))
    assert len(grid.jobs()) == 24 + 14
    for name, chapter in (("full fine-tuning", "00_adaptation"), ("prefix n=10 MLP", "03_prefix"),
                          ("prompt n=20 labels", "04_prompt"), ("ia3 k,v,ff", "07_scaling"), ("bitfit all", "07_scaling")):
        theirs, ours = GRIDS[chapter].config(name), grid.config(name)   # the earlier chapter's method and settings
        assert (theirs.method, theirs.settings()) == (ours.method, ours.settings()), name
    ood = run_job(grid.job("lora qv r=8/seed=0"), limit=64, progress=False)["metrics"]["ood_vader"]
    assert sorted(ood) == ["amazon", "nyt", "tweets"]
    assert all(len(v["predictions"]) == 64 and 0 <= v["accuracy"] <= 1 and len(v["labels"]) == 12
               for v in ood.values())


@pytest.mark.parametrize("name", ["full, in turn", "lora per domain", "full, multi-task"])
def test_a_chapter_12_job_scores_every_domain_after_every_stage(name):
    """The 12 grid's domain jobs on a slice (32 rows per domain, one step per stage): the final predictions cover the
    three test splits in order, and every stage has every domain's accuracy and predictions."""
    from minipeft.lab.reference.jobs import run_job

    record = run_job(GRIDS["12_forgetting"].job(f"{name}/seed=0"), limit=32, progress=False)
    metrics, stages = record["metrics"], record["metrics"]["stages"]
    assert metrics["order"] == ["amazon", "nyt", "tweets"] and len(metrics["predictions"]) == 96
    assert len(stages) == (1 if "multi" in name else 3) and record["test"]["examples"] == 96
    assert all(sorted(s) == ["amazon", "nyt", "tweets"] and all(len(v["predictions"]) == 32 for v in s.values())
               for s in stages)
    if name == "lora per domain":     # amazon's own adapter is untouched by the later stages: same predictions
        assert stages[0]["amazon"] == stages[1]["amazon"] == stages[2]["amazon"]


def test_the_chapter_12_fusion_job_holds_out_each_domain_and_stores_its_baselines_and_weights(monkeypatch):
    """The leave-one-out AdapterFusion job, its grid config on the tiny encoder and toy domains (MiniLM would take
    minutes for its 18 small runs): the fusion's predictions cover the three test splits in order (one stage), each
    baseline's too; per target, the attention of every layer over the two OTHER domains sums to 1, and the chosen
    source is the one whose head reached the lower training loss."""
    import torch
    from datasets import Dataset

    import minipeft as mp
    from minipeft.lab.reference import jobs
    from minipeft.lab.reference.fusion_jobs import SYSTEMS

    class Tok:
        pad_token_id = 0

    def toy(n, seed):
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(0, 2, (n,), generator=g).tolist()
        return Dataset.from_dict({"input_ids": [[1] + (torch.randint(0, 40, (6,), generator=g) + 3 + 60 * c).tolist()
                                                for c in y], "label": y})

    order = ["amazon", "nyt", "tweets"]
    # d = 96: the grid's Pfeiffer adapter has m = 64, which must be smaller than d
    monkeypatch.setattr(jobs, "encoder_and_tokenizer", lambda: (mp.tiny_encoder(seed=0, hidden_size=96), Tok()))
    monkeypatch.setattr(jobs, "domain_splits", lambda max_length: {d: (toy(40, i), toy(12, 10 + i))
                                                                   for i, d in enumerate(order)})
    record = jobs.run_job(GRIDS["12_forgetting"].job("adapterfusion, leave one out/seed=0"), progress=False)
    m = record["metrics"]
    assert m["order"] == order and len(m["predictions"]) == 36 and len(m["stages"]) == 1
    assert sorted(m["systems"]) == sorted(SYSTEMS)
    assert all(len(v[d]["predictions"]) == 12 for v in [m["stages"][0], *m["systems"].values()] for d in order)
    for t, att in m["attention"].items():
        assert att["sources"] == [d for d in order if d != t] and len(att["layers"]) == 2
        assert all(abs(sum(w) - 1) < 1e-3 and len(w) == 2 for w in att["layers"])
        heads = m["source_heads"][t]
        assert m["chosen_source"][t] == min(heads, key=lambda s: heads[s]["train_loss"])
    assert m["fusion_trainable"] == 2 * (3 * 96 * 96 + 2 * 96) + 96 * 2 + 2
    assert m["accuracy"] > 0.6             # the toy's two classes use disjoint tokens: the fusion learns them


def test_a_grid_s_labels_are_its_own_test_set():
    """Chapter 12's runs are scored on the three domains' test splits (in the configs' order), every other grid on
    Rotten Tomatoes' test split; a grid that would mix the two is refused."""
    from minipeft.lab import data
    from minipeft.lab.reference.jobs import grid_labels, test_labels

    parts = data.domain_splits()
    assert grid_labels(GRIDS["12_forgetting"]) == tuple(y for d in ("amazon", "nyt", "tweets")
                                                         for y in parts[d]["test"]["label"])
    assert len(grid_labels(GRIDS["12_forgetting"])) == 589 + 558 + 673
    assert grid_labels(GRIDS["02_lora"]) == test_labels()
    mixed = Grid("mixed", (GRIDS["12_forgetting"].configs[0], Config("e", "head", {"method": "head"})))
    with pytest.raises(ValueError, match="one grid, one test set"):
        grid_labels(mixed)
    serve = GRIDS["11_serving"].configs[0]
    assert grid_labels(GRIDS["11_serving"]) == (1,) * serve.method["rows"]      # one "label" per generation
    other_rows = Config("e", "more rows", {**serve.method, "rows": serve.method["rows"] + 1})
    for configs in ((serve, Config("e", "head", {"method": "head"})), (serve, other_rows)):
        with pytest.raises(ValueError, match="one grid, one test set"):
            grid_labels(Grid("mixed", configs))


def test_seed_spread_over_the_committed_reference_runs():
    """One row per configuration of every written chapter's grid; the range is what the seed alone moves."""
    from minipeft.lab.reference.results import decoder_grid, seed_spread

    rows = seed_spread()
    # 10: the seed draws the data; 11: a share of generations, a zero-shot score
    written = [c for c, g in GRIDS.items() if not g.planned and not decoder_grid(g)]
    assert {c for c, g in GRIDS.items() if decoder_grid(g)} == {"10_fewshot", "11_serving", "11_instruct"}
    assert len(rows) == sum(len(GRIDS[c].seeds_of(k)) > 1 for c in written for k in GRIDS[c].configs)
    assert all(r["seeds"] >= 3 and 0 <= r["range"] == r["highest"] - r["lowest"] < 0.1 for r in rows)
    assert any(r["range"] > 0 for r in rows)          # the seed does move some: not every run is identical


def test_a_domain_job_s_stages_are_read_per_domain_and_paired_across_stages():
    """Reference.domain_labels / stage_correct / stage_accuracies on two hand-made runs of a 2-domain job: the labels
    are cut in the runs' order, each stage's predictions scored against its own domain's rows."""
    import numpy as np

    from minipeft.lab.reference.results import Reference

    grid = Grid("toy", (Config("seq", "full, in turn", {"method": "sequence", "order": ["a", "b"],
                                                          "inner": {"method": "full"}}),))
    labels = [1, 0, 1, 1, 0]                       # a: 1 0 1 | b: 1 0

    def run(seed, stages):
        return {"name": "full, in turn", "seed": seed, "test": {"examples": 5},
                "metrics": {"order": ["a", "b"], "stages": [
                    {d: {"predictions": p, "accuracy": float(np.mean([int(c) == y for c, y in
                                                                      zip(p, labels[:3] if d == "a" else labels[3:])]))}
                     for d, p in zip("ab", s)} for s in stages]}}

    ref = Reference(grid, {"x": run(0, [("101", "00"), ("001", "10")]), "y": run(1, [("100", "11"), ("111", "10")])},
                    labels)
    assert {d: v.tolist() for d, v in ref.domain_labels("full, in turn").items()} == {"a": [1, 0, 1], "b": [1, 0]}
    assert ref.stage_correct("full, in turn", 0, "a").tolist() == [[1, 1, 1], [1, 1, 0]]
    assert ref.stage_correct("full, in turn", -1, "a").tolist() == [[0, 1, 1], [1, 0, 1]]
    assert ref.stage_correct("full, in turn", 1, "b").tolist() == [[1, 1], [1, 1]]
    acc = ref.stage_accuracies("full, in turn")
    assert acc.shape == (2, 2, 2) and acc[0].tolist() == [[1.0, 0.5], [2 / 3, 1.0]]
    for r, preds in zip(ref.runs("full, in turn"), ("001", "110")):     # a baseline stored beside the run (fusion)
        r["metrics"]["systems"] = {"head only": {"a": {"predictions": preds}, "b": {"predictions": "10"}}}
    assert ref.system_correct("full, in turn", "head only", "a").tolist() == [[0, 1, 1], [1, 0, 0]]
    assert ref.system_correct("full, in turn", "head only", "b").tolist() == [[1, 1], [1, 1]]
    with pytest.raises(KeyError, match="stored no system 'adapter'"):
        ref.system_correct("full, in turn", "adapter", "a")


def test_chapter_10_jobs_show_and_train_on_the_same_examples_and_score_the_same_snippets(monkeypatch):
    """The 10 grid's decoder jobs on the tiny Llama (a character tokenizer stands in for SmolLM2's): ICL and
    prompt-based fine-tuning of the same draw, 8 test snippets, a record with what the chapter reads."""
    from helpers import CharTokenizer
    import minipeft as mp
    from minipeft.lab import fewshot
    from minipeft.lab.reference import fewshot_jobs
    from minipeft.lab.reference.jobs import grid_labels, run_job

    monkeypatch.setattr(fewshot_jobs, "decoder_and_tokenizer", lambda: (mp.tiny_decoder(), CharTokenizer()))
    grid = GRIDS["10_fewshot"]
    texts, labels = fewshot_jobs.fewshot_test()
    assert len(labels) == fewshot_jobs.FEWSHOT_TEST == 100 and sum(labels) == 50 and grid_labels(grid) == tuple(labels)
    icl = run_job(grid.job("icl k=4/seed=1"), limit=8, progress=False)
    trained = run_job(grid.job("lora r=4 (lm+ul+ln)/seed=0"), limit=8, progress=False)
    again = run_job(grid.job("lora r=4 (lm+ul+ln)/seed=0"), limit=8, progress=False)
    assert icl["test"] == trained["test"] and icl["test"]["examples"] == 8 and icl["limit"] == 8
    m, t = icl["metrics"], trained["metrics"]
    assert len(m["predictions"]) == 8 and m["prefix_tokens"] > 0 and m["k"] == 4
    assert len(t["losses"]) == 5 and t["trainable"] > 0 and t["predictions"] == again["metrics"]["predictions"]
    assert t["losses"] == again["metrics"]["losses"] and t["prefix_tokens"] == 0
    assert m["tokens_per_prediction"] > t["tokens_per_prediction"]     # the demonstrations, counted per prediction
    demo = run_job(grid.job("lora r=4 (lm+ul+ln) + demos/seed=0"), limit=8, progress=False)["metrics"]
    assert demo["demo_sets"] == 2 and demo["prefix_tokens"] == 0 and len(demo["losses"]) == 5   # LM-BFF §6
    assert demo["tokens_per_prediction"] > 2 * 2 * t["tokens_per_prediction"]   # 2 sets × (2 demos + the query)
    assert demo["losses"][0] != t["losses"][0]                          # the same draw, trained on other prompts
    assert {c.method["method"] for c in grid.configs} == {"icl", "fewshot_train"}
    shown = fewshot.draw_examples(*(lambda rt: (rt["text"], rt["label"]))(fewshot_jobs.data.rotten_tomatoes()["train"]),
                                  16, seed=0)
    assert len(shown) == 16 and sum(y for _, y in shown) == 8


def test_chapter_11_serving_jobs_judge_every_user_s_generations_with_one_judge(monkeypatch):
    """The 11_serving grid's jobs on the tiny Llama (a character tokenizer), the real MiniLM judge on 8 snippets: one
    digit per generation, the labels all 1 (a run's accuracy IS its positive share), one judge for every job."""
    from helpers import CharTokenizer
    import minipeft as mp
    from minipeft.lab.reference import serving_jobs
    from minipeft.lab.reference.jobs import grid_labels, run_job

    tok = CharTokenizer()
    monkeypatch.setattr(serving_jobs, "decoder_and_tokenizer", lambda: (mp.tiny_decoder(), tok))
    grid = GRIDS["11_serving"]
    assert grid_labels(grid) == (1,) * 96 and [c.method["user"] for c in grid.configs] == list(serving_jobs.USERS)
    assert {json.dumps({k: v for k, v in c.method.items() if k != "user"}, sort_keys=True)
            for c in grid.configs} == {json.dumps({k: v for k, v in grid.configs[0].method.items() if k != "user"},
                                                  sort_keys=True)}            # every user at the same settings
    records = {c.method["user"]: run_job(grid.job(f"{c.name}/seed=1"), limit=6, progress=False) for c in grid.configs}
    again = run_job(grid.job("dpo (LoRA)/seed=1"), limit=6, progress=False)
    for user, r in records.items():
        m = r["metrics"]
        assert len(m["predictions"]) == len(m["texts"]) == 6 and set(m["predictions"]) <= {"0", "1"}
        assert m["accuracy"] == m["positive_share"] == m["predictions"].count("1") / 6
        assert r["test"]["examples"] == 6 and m["judge"] == records["base"]["metrics"]["judge"]   # one judge
        assert ("losses" in m) == (user != "base") and ("margins" in m) == (user == "dpo")
    assert len(records["fresh"]["metrics"]["losses"]) == 2 and records["dpo"]["metrics"]["margins"][0] == 0.0
    assert again["metrics"]["texts"] == records["dpo"]["metrics"]["texts"]             # seeded, bit for bit
    assert records["base"]["metrics"]["texts"] != records["fresh"]["metrics"]["texts"]   # the adapter changes them
    judge = records["base"]["metrics"]["judge"]
    assert judge["examples"] == 6 and 0 <= judge["accuracy"] <= 1 and isinstance(judge["learned"], bool)


def test_chapter_11_instruct_jobs_score_the_held_out_task_and_every_tuning_task(monkeypatch):
    """The 11_instruct grid on the tiny Llama: the held-out task is 200 balanced Rotten Tomatoes test snippets (the
    grid's labels); every job scores it and each tuning task's test rows; the control trains on the same rows
    without the instructions; "as it is" trains nothing."""
    from helpers import CharTokenizer
    import minipeft as mp
    from minipeft.lab import instruct
    from minipeft.lab.reference import instruct_jobs
    from minipeft.lab.reference.jobs import ANALYSIS_LABELS, grid_labels, run_job

    monkeypatch.setattr(instruct_jobs, "decoder_and_tokenizer", lambda: (mp.tiny_decoder(), CharTokenizer()))
    grid = GRIDS["11_instruct"]
    labels = grid_labels(grid)
    assert len(labels) == 200 and sum(labels) == 100 and grid.notebook == "11_serving"
    assert [c.method["tuning"] for c in grid.configs] == list(instruct_jobs.TUNINGS)
    assert all(c.method["tasks"] == list(instruct.TUNING) and "sentiment" not in c.method["tasks"] for c in grid.configs)
    base = run_job(grid.job("as it is/seed=0"), limit=4, progress=False)["metrics"]
    tuned = run_job(grid.job("instruction-tuned/seed=0"), limit=4, progress=False)["metrics"]
    control = run_job(grid.job("same rows, no instructions/seed=0"), limit=4, progress=False)["metrics"]
    assert "losses" not in base and len(tuned["losses"]) == len(control["losses"]) == 2
    assert tuned["rows"] == control["rows"] == 3 * 96 and tuned["losses"] != control["losses"]
    for m in (base, tuned, control):
        assert len(m["predictions"]) == 4 and sorted(m["tasks"]) == sorted(instruct.TUNING)
        assert all(len(v["predictions"]) == 4 and len(v["labels"]) == 12 for v in m["tasks"].values())
    assert len(ANALYSIS_LABELS["tasks"]("source")) == instruct_jobs.TASK_TEST
