r"""KronA: the weight update as a Kronecker product (Edalati et al. 2022, "KronA: Parameter Efficient Tuning with
Kronecker Adapter", §3: KronA, KronA^B, KronA^B_res).

LoRA's ΔW = B A has rank ≤ r. KronA's ΔW = s · (A ⊗ B) is built from two small matrices, and its rank is
rank(A) · rank(B) ≤ min(a1, a2) · min(b1, b2): FULL rank for the default factors of a 384 × 384 matrix
(A 16 × 16, B 24 × 24), from a1·a2 + b1·b2 = 832 parameters where LoRA r=8 needs 6,144 for rank 8.

    A ⊗ B = ┌ a11·B  a12·B  …  a1,a2·B ┐     A (a1 × a2),  B (b1 × b2)
            │ a21·B  a22·B  …          │     a1 · b1 = d_out,  a2 · b2 = d_in
            └   ⋮                      ┘     ΔW (d_out × d_in) is a1 × a2 blocks, block (p, i) = A[p, i] · B

              x (d_in) ─────────┬───────────────────────────────┐
                                │                               │
                  X = x as (a2 × b2)                      W0 (frozen)
                                │                               │
                  s · A X Bᵀ  (a1 × b1)   never builds ΔW       │
                                │                               │
                  flatten -> (d_out)                            │
                                └──────────────► + ◄────────────┘  h = W0 x + s (A ⊗ B) x

The forward never materialises the d_out × d_in matrix ΔW. It uses the "vec trick":
the textbook identity (A ⊗ B) vec(X) = vec(B X Aᵀ) stacks COLUMNS; PyTorch's reshape fills ROWS, for which the
same identity reads (A ⊗ B) x = rowvec(A X Bᵀ) with X = x.reshape(a2, b2). Cost per token: a1·b2·(a2 + b1)
multiply-adds instead of d_out·d_in. For inference, ``merge`` folds ΔW = s · torch.kron(A, B) into W0.

Initialisation: B = 0 and A ~ kaiming-uniform (like LoRA's B = 0 and A), so ΔW = 0 and the model starts as the
base model. Exactly ONE factor is zero: ∂L/∂B is a sum of A-weighted gradient blocks, non-zero because A ≠ 0, so B
starts learning at once (A follows from the second step); were both zero, both gradients would stay zero forever.

The variants (§3):
    KronA        ΔW in parallel with a weight matrix (query and value by default, like LoRA), mergeable.
    KronA^B      one Kronecker adapter in parallel with the whole FFN block: FFN(x) + s (A ⊗ B) x, d × d.
                 Not mergeable (the FFN is nonlinear), placed like the parallel adapter (adapters.py).
    KronA^B_res  KronA^B plus a learnable scaled residual: FFN(x) + s (A ⊗ B) x + γ x. We start γ at 0, so
                 that (as for every method here) injection leaves the model unchanged.

Hugging Face peft has no KronA; its closest relative is LoKr (lokr.py), ΔW = (alpha/r) · w1 ⊗ w2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..core.checks import (FFN_BLOCK, QUERY_VALUE, check_bool, check_positive, check_probability, linear_shape, require_ffn_block,
                           require_linear)
from ..core.config import PeftConfig
from ..core.layers import LinearDeltaLayer, ParallelFFNLayer


# --------------------------------------------------------------------------------------------- shared helpers
def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """Split ``dimension`` into (m, n), m · n = dimension, as Hugging Face peft's LoKr does.

    factor = -1:          m is the largest divisor ≤ √dimension (e.g. 384 -> (16, 24), 127 -> (1, 127))
    factor divides it:    (factor, dimension // factor), in that order (e.g. 128, 4 -> (4, 32))
    otherwise:            the largest divisor ≤ factor found on the way up to √dimension, sorted (m ≤ n)
    """
    if factor > 0 and dimension % factor == 0:
        return factor, dimension // factor
    limit = dimension if factor == -1 else factor
    m = 1
    for candidate in range(2, dimension + 1):     # walk the divisors upwards...
        if dimension % candidate:
            continue
        if candidate > limit:                     # ...never above the requested factor...
            break
        m = candidate
        if candidate >= dimension // candidate:   # ...and stop once past √dimension
            break
    return min(m, dimension // m), max(m, dimension // m)


def kron_matvec(A: torch.Tensor, B: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(A ⊗ B) x for every vector x along the last axis, without building A ⊗ B.

    x[..., i·b2 + j] = X[..., i, j]  (row-major reshape)  ->  ((A ⊗ B) x)[p·b1 + q] = (A X Bᵀ)[p, q].
    """
    a1, a2 = A.shape
    b1, b2 = B.shape
    X = x.reshape(*x.shape[:-1], a2, b2)          # (..., a2, b2)
    Y = A @ X @ B.T                               # (a1, a2) @ (..., a2, b2) @ (b2, b1) -> (..., a1, b1)
    return Y.reshape(*x.shape[:-1], a1 * b1)      # (..., d_out)


def _divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


def _factor_shapes(a_shape, d_out: int, d_in: int, name: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """((a1, a2), (b1, b2)) for a d_out × d_in update: near √d by default, else checked to divide."""
    if a_shape is None:
        a1, a2 = factorization(d_out)[0], factorization(d_in)[0]
    else:
        a1, a2 = a_shape
    if d_out % a1 or d_in % a2:
        raise ValueError(
            f"a_shape=({a1}, {a2}) does not tile {name!r}, whose update is {d_out}×{d_in}: a1 must divide "
            f"d_out={d_out} (divisors: {_divisors(d_out)}) and a2 must divide d_in={d_in} "
            f"(divisors: {_divisors(d_in)}). Or leave a_shape=None for factors near √d."
        )
    return (a1, a2), (d_out // a1, d_in // a2)


def _check_kron_config(config) -> None:
    name = type(config).__name__
    if config.a_shape is not None:
        shape = config.a_shape
        if not (isinstance(shape, (tuple, list)) and len(shape) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in shape)):
            raise TypeError(f"{name}.a_shape must be two ints (a1, a2), the shape of factor A, or None; "
                            f"got {shape!r}.")
        if min(shape) <= 0:
            raise ValueError(f"{name}.a_shape must be positive, got {tuple(shape)}.")
    check_positive(config.scale, f"{name}.scale (s)", "1.0")
    check_probability(config.dropout, f"{name}.dropout")


class KroneckerFactors(nn.Module):
    """s · (A ⊗ B) as a map x -> s (A ⊗ B) x, with A random and B = 0 (so the map starts at 0)."""

    def __init__(self, a_shape, b_shape, scale: float, dropout: float, device=None, dtype=None):
        super().__init__()
        self.scale = scale
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.A = nn.Parameter(torch.empty(*a_shape, device=device, dtype=dtype))   # (a1, a2)
        self.B = nn.Parameter(torch.zeros(*b_shape, device=device, dtype=dtype))   # (b1, b2): zero -> ΔW = 0
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:                   # x (B, T, d_in)
        return self.scale * kron_matvec(self.A, self.B, self.dropout(x))  # (B, T, d_out)

    def delta_weight(self) -> torch.Tensor:
        return self.scale * torch.kron(self.A, self.B)                   # (a1·b1, a2·b2) = (d_out, d_in)

    def rank(self) -> int:
        """rank(A ⊗ B) = rank(A) · rank(B), computed from the small factors only."""
        return int(torch.linalg.matrix_rank(self.A.detach())) * int(torch.linalg.matrix_rank(self.B.detach()))

    def extra_repr(self) -> str:
        (a1, a2), (b1, b2) = self.A.shape, self.B.shape
        return f"A {a1}×{a2} ⊗ B {b1}×{b2}, scale={self.scale:g}"


# --------------------------------------------------------------------------------------------- KronA
class KronALinear(LinearDeltaLayer):
    """y = W0 x + s · (A ⊗ B) x around an nn.Linear or GPT-2's Conv1D."""

    def __init__(self, base_layer: nn.Module, a_shape, b_shape, scale: float, dropout: float):
        super().__init__(base_layer)
        w = base_layer.weight
        self.kron = KroneckerFactors(a_shape, b_shape, scale, dropout, device=w.device, dtype=w.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # x (B, T, d_in)
        y = self.base_layer(x)                              # (B, T, d_out)
        return y if self.merged else y + self.kron(x)      # (B, T, d_out)

    def delta_weight(self) -> torch.Tensor:
        return self.kron.delta_weight()                     # (d_out, d_in)


@dataclass
class KronAConfig(PeftConfig):
    a_shape: tuple[int, int] | None = None  # (a1, a2) of factor A; None -> near √d (384 -> 16: A 16×16, B 24×24)
    scale: float = 1.0      # s, a fixed multiplier on ΔW (the role of LoRA's alpha / r): tune it with the lr
    dropout: float = 0.0    # dropout on the adapter's input

    method: ClassVar[str] = "krona"
    ROLES: ClassVar[tuple[str, ...]] = QUERY_VALUE  # query and value, as LoRA

    def validate(self) -> None:
        _check_kron_config(self)

    def wrap(self, module: nn.Module, name: str) -> KronALinear:
        require_linear(module, name, "KronA", hint=", or use KronABConfig for a whole FFN block")
        d_out, d_in = linear_shape(module)
        a_shape, b_shape = _factor_shapes(self.a_shape, d_out, d_in, name)
        return KronALinear(module, a_shape, b_shape, float(self.scale), self.dropout)

    def to_peft(self, model: nn.Module):
        raise TypeError("Hugging Face peft has no KronA, so it cannot be exported. Its closest relative is LoKr: "
                        "minipeft.LoKrConfig (ΔW = (alpha/r) · w1 ⊗ w2, factor shapes from peft's factorization()) "
                        "exports with minipeft.export_peft. Save KronA with minipeft.save_adapter instead.")


# --------------------------------------------------------------------------------------------- KronA^B (+ _res)
class KronABLayer(ParallelFFNLayer):
    """FFN(x) + s (A ⊗ B) x [+ γ x], with x the FFN's INPUT (d × d); the placement is ParallelFFNLayer's."""

    not_mergeable = ("KronA^B sits in parallel with a whole FFN block, which is nonlinear: there is no ΔW to fold "
                     "into one weight (use KronAConfig on linear layers for a mergeable update)")

    def __init__(self, block: nn.Module, d: int, a_shape, b_shape, scale: float, dropout: float, residual: bool):
        super().__init__(block)
        p = next(block.parameters())
        self.d = d
        self.kron = KroneckerFactors(a_shape, b_shape, scale, dropout, device=p.device, dtype=p.dtype)
        # KronA^B_res: a learnable scalar γ on a residual path x -> γ x; 0 at init, so the model is unchanged
        self.res_scale = nn.Parameter(torch.zeros((), device=p.device, dtype=p.dtype)) if residual else None

    def branch(self, x: torch.Tensor) -> torch.Tensor:     # x (B, T, d)
        delta = self.kron(x)                                 # (B, T, d)
        return delta if self.res_scale is None else delta + self.res_scale * x


@dataclass
class KronABConfig(PeftConfig):
    a_shape: tuple[int, int] | None = None  # (a1, a2) of A for the d × d update; None -> near √d
    scale: float = 1.0       # s, a fixed multiplier on the adapter's output
    dropout: float = 0.0     # dropout on the adapter's input
    residual: bool = False   # True -> KronA^B_res: also adds γ x with a learnable γ (starting at 0)

    method: ClassVar[str] = "kronab"
    ROLES: ClassVar[tuple[str, ...]] = FFN_BLOCK  # the whole FFN block of every layer

    def validate(self) -> None:
        _check_kron_config(self)
        check_bool(self.residual, "KronABConfig.residual")

    def wrap(self, module: nn.Module, name: str) -> KronABLayer:
        d = require_ffn_block(module, name, "KronA^B", "For a single linear layer use KronAConfig.")
        a_shape, b_shape = _factor_shapes(self.a_shape, d, d, name)
        return KronABLayer(module, d, a_shape, b_shape, float(self.scale), self.dropout, self.residual)

    def to_peft(self, model: nn.Module):
        raise TypeError("Hugging Face peft has no KronA^B (a Kronecker adapter in parallel with the FFN), so it "
                        "cannot be exported. Save it with minipeft.save_adapter instead.")
