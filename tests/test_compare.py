"""lab/compare.py: chapter 09's cost columns, measured the same way for every method (tiny models)."""

import pytest
import torch

import minipeft as mp
from helpers import ids, out
from minipeft.lab import chapter, compare
from minipeft.lab.train import TrainResult


def _result(model) -> TrainResult:
    trainable, total = mp.trainable_parameters(model)
    return TrainResult(accuracy=0.75, losses=[0.7], eval_history=[], steps=1, examples=8, train_time=0.5,
                       examples_per_s=16.0, peak_rss_mb=900.0, peak_gpu_mb=None, trainable=trainable, total=total,
                       steps_per_epoch=1)


@pytest.mark.parametrize("method, merges", [(mp.LoRAConfig(r=4), True), (mp.IA3Config(), True),
                                            (mp.PrefixConfig(length=3), False), ("head", False), ("full", False)])
def test_costs_of_a_method(method, merges):
    model = chapter.classifier(mp.tiny_encoder(), method)
    for p in model.parameters():                  # a trained-looking update, so a merge would show if it broke
        if p.requires_grad:
            p.data.add_(0.01 * torch.randn_like(p))
    model.eval()                                  # (dropout off: outputs comparable)
    x = {"input_ids": ids(4, 9), "attention_mask": torch.ones(4, 9, dtype=torch.long)}
    before = out(model, x["input_ids"])
    row = compare.costs("m", model, _result(model), x, repeats=3)
    assert row.merged is merges and row.latency_ms > 0
    assert torch.equal(out(model, x["input_ids"]), before)                  # timing a merged COPY changes nothing
    assert row.optimizer_mb == pytest.approx(row.trainable * 12 / 2**20)
    assert 0 < row.trainable_pct <= 100 and row.row()["trainable_pct"] == round(row.trainable_pct, 4)
    weights = row.trainable * 4                                              # float32
    if isinstance(method, str):
        assert row.adapter_bytes == weights                                 # no adapter file: the trained weights
    else:                       # save_adapter's files: the weights (+ frozen buffers such as none here) and headers
        assert weights <= row.adapter_bytes <= weights + 8192, (row.adapter_bytes, weights)


def test_pareto_front_keeps_what_nothing_beats_on_both_axes():
    points = {"lora": (0.81, 0.3), "full": (0.83, 100.0), "worse": (0.80, 1.0), "tie": (0.81, 0.3),
              "cheapest": (0.70, 0.01)}
    assert compare.pareto_front(points) == ["lora", "full", "tie", "cheapest"]   # "worse": lora beats it on both
    assert compare.pareto_front(points, maximise=(True, True)) == ["full"]        # larger y now better
    assert compare.pareto_front({"a": (1.0, 2.0), "b": (1.0, 3.0)}) == ["a"]       # equal x, cheaper y dominates
    with pytest.raises(ValueError, match="each of the two axes"):
        compare.pareto_front(points, maximise=(True,))


def test_lr_sensitivity_pairs_each_sweep_run_with_its_methods_own_seed_0():
    # the committed 09_choosing grid: every method with a sweep, both factors present (the grid is complete)
    from minipeft.lab import reference
    ref = reference.load("09_choosing")
    rows = {row.method: row for row in compare.lr_sensitivity(ref)}
    assert "head only" not in rows and len(rows) == 7          # head only has one rate
    for row in rows.values():
        assert set(row.shifts) == {0.1, 10.0}
        seed0 = ref.accuracies(row.method)[[r["seed"] for r in ref.runs(row.method)].index(0)]
        assert row.seed0 == seed0
        for f, s in row.shifts.items():
            other = ref.accuracies(compare.lr_config_name(row.method, f))[0]
            assert s.accuracy == other
            assert abs(s.shift - (other - seed0)) < 1e-12           # one seed: the paired mean is the plain difference
            assert s.shift_low <= s.shift <= s.shift_high and s.low <= s.accuracy <= s.high
            assert s.real == ((s.shift_low > 0 or s.shift_high < 0) and abs(s.shift) > row.seed_range)
    lora = rows["lora qv r=8"]
    assert abs(lora.shifts[10.0].accuracy - ref.majority) < 1e-9 and lora.shifts[10.0].real   # x10: majority class
    assert lora.worst() is lora.shifts[10.0]


def test_plot_lr_sensitivity_draws_one_line_per_method_and_the_majority():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shift = compare.LRShift(10.0, 0.6, 0.55, 0.65, -0.2, -0.25, -0.15, True)
    rows = [compare.LRSensitivity("a", 1e-3, 0.8, 0.01, {10.0: shift}),
            compare.LRSensitivity("b", 1e-2, 0.7, 0.02, {})]
    fig, ax = plt.subplots()
    compare.plot_lr_sensitivity(ax, rows, majority=0.5)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["a", "b", "majority class (0.500)"]
    assert list(ax.lines[0].get_xdata()) == [1.0, 10.0] and ax.lines[0].get_ydata() == pytest.approx([0.8, 0.6])
    plt.close(fig)
