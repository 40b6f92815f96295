"""Low-rank tools (minipeft/lowrank.py): Eckart–Young, error curves, subspace similarity (LoRA Eq. 4), amplification."""

import math

import pytest
import torch

import minipeft as mp
from minipeft import lowrank as lr


def rank_k(m, n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, k, generator=g, dtype=torch.float64) @ torch.randn(k, n, generator=g, dtype=torch.float64)


def test_singular_values_descending_and_match_norm():
    M = torch.randn(12, 7)
    s = lr.singular_values(M)
    assert s.shape == (7,) and s.dtype == torch.float64 and torch.all(s[:-1] >= s[1:])
    assert math.isclose(s.pow(2).sum().sqrt().item(), torch.linalg.matrix_norm(M.double()).item(), rel_tol=1e-9)


def test_low_rank_approx_is_exact_at_the_true_rank_and_optimal():
    M = rank_k(10, 8, 3)
    assert torch.allclose(lr.low_rank_approx(M, 3), M, atol=1e-9)
    assert torch.linalg.matrix_rank(lr.low_rank_approx(M, 2)) == 2
    # Eckart–Young: no random rank-2 matrix beats the truncated SVD
    best = torch.linalg.matrix_norm(M - lr.low_rank_approx(M, 2))
    for seed in range(5):
        assert torch.linalg.matrix_norm(M - rank_k(10, 8, 2, seed=seed + 1)) >= best


def test_error_curve_closed_form():
    M = torch.diag(torch.tensor([3.0, 2.0, 1.0]))
    curve = lr.error_curve(M)
    expected = torch.tensor([14, 5, 1, 0], dtype=torch.float64).div(14).sqrt()
    assert torch.allclose(curve, expected)
    assert math.isclose(lr.approx_error(M, 1), math.sqrt(5 / 14))
    assert math.isclose(lr.energy(M, 1), 9 / 14)
    assert lr.rank_for_error(M, 0.3) == 2 and lr.rank_for_error(M, 0.0) == 3 and lr.rank_for_error(M, 1.0) == 0


def test_error_curve_matches_the_reconstruction():
    M = torch.randn(9, 6)
    for k in range(7):
        direct = torch.linalg.matrix_norm(M.double() - lr.low_rank_approx(M, k).double()) / torch.linalg.matrix_norm(M.double())
        assert math.isclose(lr.approx_error(M, k), direct.item(), abs_tol=1e-6)


def test_top_subspace_shapes_and_orthonormal():
    M = torch.randn(5, 9)
    right, left = lr.top_subspace(M, 3), lr.top_subspace(M, 2, side="left")
    assert right.shape == (9, 3) and left.shape == (5, 2)
    assert torch.allclose(right.T @ right, torch.eye(3, dtype=torch.float64), atol=1e-9)


def test_subspace_similarity_limits():
    A = torch.randn(4, 50)
    assert math.isclose(lr.subspace_similarity(A, A, 4, 4), 1.0, abs_tol=1e-9)
    # the top-1 direction of A sits inside the row space of [A; anything]: similarity 1 with min(i, j) = 1
    B = torch.cat([A, torch.randn(4, 50)])
    assert math.isclose(lr.subspace_similarity(A, B, 4, 8), 1.0, abs_tol=1e-9)
    # orthogonal row spaces -> 0
    e = torch.eye(50)
    assert lr.subspace_similarity(e[:3], e[10:14], 3, 4) < 1e-12
    # a rank-one factor and its scaled copy: the sign and scale of a singular vector do not matter
    assert math.isclose(lr.subspace_similarity(A[:1], -3 * A[:1], 1, 1), 1.0, abs_tol=1e-9)


def test_subspace_similarity_left_side_and_random_baseline():
    g = torch.Generator().manual_seed(0)
    d = 400
    sims = [lr.subspace_similarity(torch.randn(d, 2, generator=g), torch.randn(d, 8, generator=g), 2, 8, side="left")
            for _ in range(30)]
    assert abs(sum(sims) / len(sims) - lr.random_similarity(d, 2, 8)) < 0.01  # max(i, j) / d = 0.02


def test_grid_matches_pointwise():
    A1, A2 = torch.randn(3, 20), torch.randn(6, 20)
    grid = lr.subspace_similarity_grid(A1, A2)
    assert grid.shape == (3, 6)
    for i in range(1, 4):
        for j in range(1, 7):
            assert math.isclose(grid[i - 1, j - 1].item(), lr.subspace_similarity(A1, A2, i, j), abs_tol=1e-9)
    assert lr.subspace_similarity_grid(A1, A2, 2, 4).shape == (2, 4)


def test_on_a_lora_delta_weight():
    """The tools take a real LoRA layer's ΔW: rank ≤ r, so rank-r reconstruction is exact."""
    model = mp.inject(mp.tiny_encoder(), mp.LoRAConfig(r=3, targets=["query"]))
    layer = next(iter(mp.peft_layers(model).values()))
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    delta = layer.delta_weight()
    assert lr.approx_error(delta, 3) < 1e-6 and lr.singular_values(delta)[3:].abs().max() < 1e-4
    assert math.isclose(lr.subspace_similarity(layer.lora_A.weight, delta, 3, 3), 1.0, abs_tol=1e-6)


def test_amplification():
    W = torch.diag(torch.tensor([10.0, 1.0, 0.1]))
    delta = torch.zeros(3, 3)
    delta[2, 2] = 5.0                                         # ΔW boosts the direction W barely uses
    projected, factor = lr.amplification(delta, W)
    assert math.isclose(projected, 0.1, rel_tol=1e-6) and math.isclose(factor, 50.0, rel_tol=1e-6)
    assert math.isclose(lr.amplification(delta, W, r=1)[1], 50.0, rel_tol=1e-6)


@pytest.mark.parametrize("call, error, phrase", [
    (lambda: lr.singular_values(torch.randn(3)), ValueError, "2-D matrix"),
    (lambda: lr.singular_values([[1.0]]), TypeError, "torch.Tensor"),
    (lambda: lr.low_rank_approx(torch.randn(3, 4), 4), ValueError, r"integer in \[0, 3\]"),
    (lambda: lr.top_subspace(torch.randn(3, 4), 0), ValueError, r"integer in \[1, 3\]"),
    (lambda: lr.top_subspace(torch.randn(3, 4), 1, side="up"), ValueError, "side must be"),
    (lambda: lr.subspace_similarity(torch.randn(2, 5), torch.randn(2, 6), 1, 1), ValueError, "different right spaces"),
    (lambda: lr.error_curve(torch.zeros(3, 3)), ValueError, "all zeros"),
    (lambda: lr.rank_for_error(torch.randn(3, 3), 2.0), ValueError, "relative error"),
    (lambda: lr.amplification(torch.zeros(3, 3), torch.eye(3)), ValueError, "all zeros"),
    (lambda: lr.amplification(torch.ones(3, 2), torch.eye(3)), ValueError, "same shape"),
])
def test_bad_inputs(call, error, phrase):
    with pytest.raises(error, match=phrase):
        call()


def test_effective_rank_counts_the_directions_that_carry_a_matrix():
    assert lr.effective_rank(torch.eye(5)) == pytest.approx(5.0)
    assert lr.effective_rank(torch.outer(torch.arange(1.0, 4), torch.ones(6))) == pytest.approx(1.0)
    assert lr.effective_rank(torch.diag(torch.tensor([1.0, 1.0, 0.0]))) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="all zeros"):
        lr.effective_rank(torch.zeros(3, 3))
