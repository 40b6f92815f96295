"""Linear-algebra tools for low-rank updates: spectra, truncated-SVD approximation, subspace similarity.

    M = U diag(s) Vᵀ                    (SVD, s sorted descending)
    M_k = U[:, :k] diag(s[:k]) V[:, :k]ᵀ  the best rank-k approximation in Frobenius norm (Eckart–Young)
    ‖M − M_k‖_F / ‖M‖_F = sqrt(Σ_{i>k} s_i²) / sqrt(Σ_i s_i²)

Used by the LoRA chapter (spectrum of a learned ΔW, reconstruction error of real MiniLM weights, the subspace
similarity of LoRA §7.2 / Eq. 4, the amplification factor of §7.3) and by the Kronecker/Hadamard chapter
(full-rank vs low-rank ΔW). Everything runs in float64 on the CPU and returns plain tensors / floats.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def _one_thread():
    """Run LAPACK on one thread. For matrices this small a second thread buys nothing, and when the cores are busy
    (a notebook next to other work) MKL's threads spin against each other: one 384×1536 SVD took 8.5 s on 2 threads
    versus 0.06 s on 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _matrix(M: torch.Tensor, name: str = "M") -> torch.Tensor:
    if not isinstance(M, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(M).__name__}.")
    if M.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {tuple(M.shape)}. For an nn.Linear pass .weight.")
    return M.detach().to("cpu", torch.float64)


def _rank_arg(k: int, M: torch.Tensor, name: str = "k", low: int = 0) -> int:
    top = min(M.shape)
    if isinstance(k, bool) or not isinstance(k, int) or not low <= k <= top:
        raise ValueError(f"{name} must be an integer in [{low}, {top}] for a {M.shape[0]}×{M.shape[1]} matrix, "
                         f"got {k!r}.")
    return k


# --------------------------------------------------------------------------------------------- spectrum + Eckart–Young
def singular_values(M: torch.Tensor) -> torch.Tensor:
    """The singular values of M, descending, float64: (min(m, n),)."""
    X = _matrix(M)
    with _one_thread():
        return torch.linalg.svdvals(X)


def low_rank_approx(M: torch.Tensor, k: int) -> torch.Tensor:
    """The best rank-k approximation of M (truncated SVD, Eckart–Young), same shape and dtype as M."""
    X = _matrix(M)
    k = _rank_arg(k, X)
    with _one_thread():
        U, s, Vh = torch.linalg.svd(X, full_matrices=False)       # (m, p), (p,), (p, n)
    return ((U[:, :k] * s[:k]) @ Vh[:k]).to(M.dtype)               # (m, k) @ (k, n) -> (m, n)


def error_curve(M: torch.Tensor) -> torch.Tensor:
    """Relative Frobenius error ‖M − M_k‖_F / ‖M‖_F of the best rank-k approximation for k = 0 … min(m, n).

    Computed from the singular values alone: entry k is sqrt(Σ_{i>k} s_i²) / ‖M‖_F (1 at k = 0, 0 at full rank).
    """
    s2 = singular_values(M).pow(2)                                  # (p,)
    total = s2.sum()
    if total == 0:
        raise ValueError("M is all zeros: its relative approximation error is undefined (did B stay at zero?).")
    tail = torch.cat([s2.flip(0).cumsum(0).flip(0), s2.new_zeros(1)])  # (p + 1,): Σ_{i≥k} s_i², k = 0..p
    return (tail / total).sqrt()


def approx_error(M: torch.Tensor, k: int) -> float:
    """‖M − M_k‖_F / ‖M‖_F for the best rank-k approximation M_k."""
    return error_curve(M)[_rank_arg(k, _matrix(M))].item()


def energy(M: torch.Tensor, k: int) -> float:
    """Fraction of ‖M‖_F² carried by the top k singular directions: Σ_{i≤k} s_i² / Σ_i s_i² = 1 − error²."""
    return 1.0 - approx_error(M, k) ** 2


def rank_for_error(M: torch.Tensor, tol: float) -> int:
    """The smallest k whose best rank-k approximation has relative error ≤ tol."""
    if not 0 <= tol <= 1:
        raise ValueError(f"tol is a relative error in [0, 1] (e.g. 0.1 for 10 %), got {tol!r}.")
    return int((error_curve(M) <= tol + 1e-12).nonzero()[0].item())


def effective_rank(M: torch.Tensor) -> float:
    """exp(entropy of p_i = σ_i / Σ σ): how many directions carry M (Roy & Vetterli 2007). 1 for a rank-one matrix,
    k for k equal singular values, min(m, n) for an orthogonal matrix; a spread-out spectrum scores high."""
    s = singular_values(M)
    if s.sum() == 0:
        raise ValueError("M is all zeros: its effective rank is undefined (did the zero factor stay at zero?).")
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


# --------------------------------------------------------------------------------------------- subspaces (LoRA §7)
def top_subspace(M: torch.Tensor, k: int, side: str = "right") -> torch.Tensor:
    """Orthonormal basis of the top-k singular subspace of M, as columns.

    side="right": the input space (rows of Vᵀ), shape (n, k) — LoRA §7.2 uses the right singular vectors of A (r, d).
    side="left":  the output space (columns of U), shape (m, k) — e.g. the directions ΔW writes into.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' (output space, U) or 'right' (input space, V), got {side!r}.")
    X = _matrix(M)
    k = _rank_arg(k, X, low=1)
    with _one_thread():
        U, _, Vh = torch.linalg.svd(X, full_matrices=False)        # (m, p), (p,), (p, n)
    return U[:, :k] if side == "left" else Vh[:k].T                # (m, k) or (n, k)


def subspace_similarity(M1: torch.Tensor, M2: torch.Tensor, i: int, j: int, side: str = "right") -> float:
    """φ(M1, M2, i, j) = ‖U1^(i)ᵀ U2^(j)‖_F² / min(i, j)  (LoRA §7.2, Eq. 4), a number in [0, 1].

    U1^(i) holds the top-i singular vectors of M1 (``side`` picks input or output space), U2^(j) the top-j of M2.
    1 means the smaller subspace lies inside the larger one, 0 means they are orthogonal. Two random subspaces of
    a d-dimensional space give max(i, j) / d on average (see ``random_similarity``).
    """
    a, b = _matrix(M1, "M1"), _matrix(M2, "M2")
    axis = 1 if side == "right" else 0
    if a.shape[axis] != b.shape[axis]:
        raise ValueError(f"M1 {tuple(a.shape)} and M2 {tuple(b.shape)} live in different {side} spaces: their "
                         f"{'column' if side == 'right' else 'row'} counts must match.")
    U1, U2 = top_subspace(a, i, side), top_subspace(b, j, side)   # (d, i), (d, j)
    return ((U1.T @ U2).pow(2).sum() / min(i, j)).item()           # ‖(i, j)‖_F² / min(i, j)


def subspace_similarity_grid(M1: torch.Tensor, M2: torch.Tensor, max_i: int | None = None,
                             max_j: int | None = None, side: str = "right") -> torch.Tensor:
    """The matrix of φ(M1, M2, i, j) for i = 1 … max_i (rows) and j = 1 … max_j (columns): LoRA Fig. 3's heatmap.

    max_i / max_j default to the rank of the factor's smaller side (e.g. r for a LoRA A of shape (r, d)).
    """
    a, b = _matrix(M1, "M1"), _matrix(M2, "M2")
    max_i, max_j = max_i or min(a.shape), max_j or min(b.shape)
    U1, U2 = top_subspace(a, max_i, side), top_subspace(b, max_j, side)  # (d, max_i), (d, max_j)
    overlap = (U1.T @ U2).pow(2)                                   # (max_i, max_j)
    cum = overlap.cumsum(0).cumsum(1)                              # cum[i-1, j-1] = ‖U1^(i)ᵀ U2^(j)‖_F²
    sizes = torch.arange(1, max_i + 1, dtype=cum.dtype)
    mins = torch.minimum(sizes[:, None], torch.arange(1, max_j + 1, dtype=cum.dtype)[None, :])
    return cum / mins                                              # (max_i, max_j)


def random_similarity(d: int, i: int, j: int) -> float:
    """Expected φ between a random i-dimensional and a random j-dimensional subspace of R^d: i·j/d / min(i, j)."""
    if not 1 <= i <= d or not 1 <= j <= d:
        raise ValueError(f"need 1 ≤ i, j ≤ d, got i={i}, j={j}, d={d}.")
    return max(i, j) / d


def amplification(delta: torch.Tensor, W: torch.Tensor, r: int | None = None) -> tuple[float, float]:
    """LoRA §7.3: how strongly ΔW amplifies directions that W already has.

    Project W on ΔW's top-r singular subspaces, Uᵀ W V (U: (m, r) left, V: (n, r) right singular vectors of ΔW), and
    return (‖Uᵀ W V‖_F, ‖ΔW‖_F / ‖Uᵀ W V‖_F). A large factor means ΔW boosts directions that W barely uses.
    r defaults to the numerical rank of ΔW.
    """
    D, X = _matrix(delta, "delta"), _matrix(W, "W")
    if D.shape != X.shape:
        raise ValueError(f"delta {tuple(D.shape)} and W {tuple(X.shape)} must have the same shape.")
    if r is None:
        with _one_thread():
            r = int(torch.linalg.matrix_rank(D).item())
        if r == 0:
            raise ValueError("delta is all zeros: there is no subspace to project on (did B stay at zero?).")
    U, V = top_subspace(D, r, "left"), top_subspace(D, r, "right")  # (m, r), (n, r)
    projected = torch.linalg.matrix_norm(U.T @ X @ V).item()       # ‖(r, r)‖_F
    return projected, torch.linalg.matrix_norm(D).item() / projected
