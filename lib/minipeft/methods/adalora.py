r"""AdaLoRA: LoRA in SVD form, whose rank budget moves to the matrices that matter (Zhang et al. 2023, "Adaptive
Budget Allocation for Parameter-Efficient Fine-Tuning", ICLR; §3.1 SVD form, §3.2 importance, §3.3 budget, Alg. 1).

Each adapted matrix learns its update as a (soft) singular value decomposition, ΔW = P Λ Q:

        x (d_in) ─────────────┬───────────────────────────────────────────┐
                              │                                           │
                              ▼                                           ▼
                      Q  (r × d_in)     right singular vectors     W0 (d_out × d_in, frozen)
                              │                                           │
                     ⊙ λ (r)            singular values, start at 0       │
                              │          -> ΔW = 0: starts as the base    │
                      P  (d_out × r)    left singular vectors             │
                              │ × alpha / r                               │
                              └─────────────────► + ◄─────────────────────┘
                                                  h = W0 x + (alpha / r) · P diag(λ) Q x

    triplet i = (P[:, i], λ_i, Q[i, :]).  Dropping triplet i = setting λ_i = 0: P and Q are kept, so a
    dropped triplet can come back at a later allocation if its importance grows (§3.2).

Training (Algorithm 1). After every optimizer step, ``update_and_allocate(model, step)``:

    1. sensitivity   I(w) = |w · ∂L/∂w|                       every entry w of every P, λ, Q
    2. smoothing     Ī ← β1 Ī + (1 − β1) I                     (EMA of the sensitivity)
       uncertainty   Ū ← β2 Ū + (1 − β2) |I − Ī|               (EMA of how much it fluctuates)
       score         s(w) = Ī · Ū
    3. triplet       S_i = s(λ_i) + mean_j s(Q_ij) + mean_j s(P_ji)
    4. budget b(t)   (cubic schedule below); ONE threshold over all matrices of the model keeps the b(t) best
                     triplets and zeroes the λ_i of the others: important matrices keep a high rank.

    budget b(t): the number of triplets kept in the whole model (n adapted matrices, T = total_steps)

      init_r·n ┤━━━━━━━━━━╮                      t ≤ tinit:           b(0) = init_r·n, no masking (warm-up)
               │           ╲                     tinit < t ≤ T − tfinal:
               │            ╲__                      b(T) + (b(0) − b(T)) · (1 − (t − tinit) / (T − tfinal − tinit))³,
               │               ╲____                 masking every delta_t steps
    target_r·n ┤                    ╲━━━━━━━━    t > T − tfinal:      b(T) = target_r·n, rank pattern frozen
               └──────────┴──────────┴──────── t
                        tinit     T − tfinal

The loss also gets an orthogonality penalty that keeps P and Q close to singular vectors (§3.1):
    paper:  R = Σ_k ‖P_kᵀP_k − I‖²_F + ‖Q_kQ_kᵀ − I‖²_F        (squared Frobenius, SUMMED over the matrices k)
    peft:   R = mean over all 2n matrices of ‖PᵀP − I‖_F, ‖QQᵀ − I‖_F   (plain Frobenius, AVERAGED)
We use peft's form (``orthogonal_regularization``), so that the same orth_reg_weight means the same thing in both.

Where we follow Hugging Face peft (to export and to compare, ``peft.tuners.adalora``): the scale is alpha / init_r
and does not change when triplets are dropped (peft: scaling / (ranknum + 1e-5) with ranknum fixed at init_r; we
drop the 1e-5 guard, a 1e-6 relative difference); P, Q ~ N(0, 0.02²); the threshold is the k-th smallest score
with k = (total rank − budget), and every triplet scoring ≤ it is dropped (ties could drop a few more).

    config = AdaLoRAConfig(init_r=12, target_r=8, total_steps=1000, tinit=100, tfinal=200)
    inject(model, config)
    fit(model, tok, train, val, TrainConfig(max_steps=1000),
        extra_loss=orthogonal_regularization, after_step=update_and_allocate)
    rank_pattern(model)     # {"encoder.layer.0.attention.self.query": [True, False, ...], ...}

or, letting the run set total_steps and the hooks (config.for_steps, config.fit_hooks; what the chapters use):

    model, result = minipeft.lab.chapter.run(encoder, tok, train, val, AdaLoRAConfig(tinit=10, tfinal=20), config)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import nn

from ..core.checks import (QUERY_VALUE, check_fraction, check_int, check_positive, check_probability, check_rank, peft_key,
                           peft_tuner, require_linear)
from ..core.config import PeftConfig
from ..core.inject import peft_layers
from ..core.layers import LinearDeltaLayer

FACTORS = ("P", "lam", "Q")  # the trainable tensors of one matrix; lam is Λ's diagonal λ


class AdaLoRALinear(LinearDeltaLayer):
    """y = W0 x + (alpha / init_r) · P diag(λ) Q x, around an nn.Linear or GPT-2's Conv1D."""

    def __init__(self, base_layer: nn.Module, config: "AdaLoRAConfig"):
        super().__init__(base_layer)
        d_in, d_out, r = self.in_features, self.out_features, config.init_r
        w = base_layer.weight
        self.adalora_config = config  # the schedule (total_steps, betas...) lives in one place, shared by all layers
        self.r = r
        self.scaling = config.alpha / r
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.P = nn.Parameter(torch.randn(d_out, r, device=w.device, dtype=w.dtype) * 0.02)   # (d_out, r)
        self.lam = nn.Parameter(torch.zeros(r, device=w.device, dtype=w.dtype))               # (r,)  λ = 0: ΔW = 0
        self.Q = nn.Parameter(torch.randn(r, d_in, device=w.device, dtype=w.dtype) * 0.02)    # (r, d_in)
        # which triplets survived the last allocation (all at first). A buffer: in the model's state_dict, not in
        # save_adapter's file (parameters only), where the dropped λ_i are simply zeros
        self.register_buffer("mask", torch.ones(r, dtype=torch.bool, device=w.device))
        # importance state of every entry: Ī (EMA of sensitivity) and Ū (EMA of uncertainty). Rebuilt during
        # training, so not part of the state_dict.
        for name in FACTORS:
            p = getattr(self, name)
            self.register_buffer(f"{name}_ipt", torch.zeros_like(p), persistent=False)
            self.register_buffer(f"{name}_unc", torch.zeros_like(p), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:          # x (B, T, d_in)
        y = self.base_layer(x)                                    # (B, T, d_out)  W0 x + b
        if self.merged:
            return y
        h = self.dropout(x) @ self.Q.T                            # (B, T, r)      coordinates along Q's rows
        h = h * self.lam                                          # (B, T, r)      scaled by the singular values
        return y + (h @ self.P.T) * self.scaling                  # (B, T, d_out)

    def delta_weight(self) -> torch.Tensor:
        return (self.P * self.lam) @ self.Q * self.scaling        # (d_out, r) @ (r, d_in) -> (d_out, d_in)

    # -- Algorithm 1, for this matrix
    @torch.no_grad()
    def update_importance(self) -> None:
        """Steps 1-2: Ī ← β1 Ī + (1 − β1)|w ∇w|,  Ū ← β2 Ū + (1 − β2)|I − Ī|, entry by entry."""
        beta1, beta2 = self.adalora_config.beta1, self.adalora_config.beta2
        for name in FACTORS:
            w = getattr(self, name)
            grad = w.grad if w.grad is not None else torch.zeros_like(w)  # this matrix did not reach the loss
            sensitivity = (w * grad).abs()                                 # I
            ipt, unc = getattr(self, f"{name}_ipt"), getattr(self, f"{name}_unc")
            ipt.mul_(beta1).add_((1 - beta1) * sensitivity)                # Ī
            unc.mul_(beta2).add_((1 - beta2) * (sensitivity - ipt).abs())  # Ū (with the new Ī)

    @torch.no_grad()
    def reset_importance(self) -> None:
        for name in FACTORS:
            getattr(self, f"{name}_ipt").zero_()
            getattr(self, f"{name}_unc").zero_()

    def score(self, name: str) -> torch.Tensor:
        """s(w) = Ī · Ū for every entry of P, lam or Q."""
        return getattr(self, f"{name}_ipt") * getattr(self, f"{name}_unc")

    def triplet_scores(self) -> torch.Tensor:
        """Step 3: S_i = s(λ_i) + mean_j s(Q_ij) + mean_j s(P_ji), shape (r,)."""
        # the parentheses add in the same order as peft, so that equal inputs give bit-identical scores
        return self.score("lam") + (self.score("Q").mean(dim=1) + self.score("P").mean(dim=0))

    @torch.no_grad()
    def apply_mask(self, keep: torch.Tensor) -> None:
        """Keep the triplets where ``keep`` (r,) is True; zero the λ_i of the others."""
        self.mask.copy_(keep)
        self.lam.masked_fill_(~keep, 0.0)

    def extra_repr(self) -> str:
        rank = int(self.mask.sum())
        return f"r={rank}/{self.r}, scaling={self.scaling:g}" + (", merged" if self.merged else "")


@dataclass
class AdaLoRAConfig(PeftConfig):
    init_r: int = 12              # rank every matrix STARTS with; the paper starts at 1.5 × the target (peft: 12 -> 8)
    target_r: int = 8             # AVERAGE rank per matrix at the end: budget b(T) = target_r × (number of matrices)
    alpha: float = 8.0            # ΔW is scaled by alpha / init_r, as in LoRA; 8 is peft's default lora_alpha
    dropout: float = 0.0          # dropout on the input of Q; peft's default
    total_steps: int | None = None  # T: the schedule must know when training ends, and no default can guess it
    tinit: int = 0                # t_i: steps at the full budget first, so that the scores mean something (peft: 0)
    tfinal: int = 0               # t_f: last steps trained with the final rank pattern frozen (peft: 0)
    delta_t: int = 1              # ΔT: re-allocate every delta_t steps during the cubic phase (peft's deltaT)
    beta1: float = 0.85           # EMA factor of the sensitivity Ī: the paper's and peft's value
    beta2: float = 0.85           # EMA factor of the uncertainty Ū: the paper's and peft's value
    orth_reg_weight: float = 0.5  # γ in loss + γ R(P, Q): peft's default (R averaged, see the module docstring)

    method: ClassVar[str] = "adalora"
    ROLES: ClassVar[tuple[str, ...]] = QUERY_VALUE  # peft's defaults (the paper adapts every matrix)

    def validate(self) -> None:
        for name in ("init_r", "delta_t"):
            check_int(getattr(self, name), f"AdaLoRA {name}", "8", type_error=True)
        for name in ("tinit", "tfinal"):
            check_int(getattr(self, name), f"AdaLoRA {name}", "0", minimum=0, meaning="a number of steps",
                      type_error=True)
        if not isinstance(self.target_r, int) or isinstance(self.target_r, bool) or \
                not 1 <= self.target_r <= self.init_r:
            raise ValueError(f"AdaLoRA target_r={self.target_r} must be between 1 and init_r={self.init_r}: the "
                             "budget only shrinks. The paper starts at init_r = 1.5 × target_r (e.g. 12 -> 8).")
        if self.total_steps is None:
            raise ValueError("AdaLoRA needs total_steps (the number of optimizer steps you will train for): the "
                             "budget schedule depends on it. E.g. AdaLoRAConfig(total_steps=len(loader) * epochs).")
        check_int(self.total_steps, "AdaLoRA total_steps", "1000")
        if self.tinit >= self.total_steps - self.tfinal:
            raise ValueError(f"AdaLoRA tinit={self.tinit} + tfinal={self.tfinal} leave no steps to reduce the budget "
                             f"in (total_steps={self.total_steps}): need tinit < total_steps − tfinal. Lower tinit "
                             "or tfinal (e.g. 10% of the steps each), or train longer.")
        for name in ("beta1", "beta2"):
            check_fraction(getattr(self, name), f"AdaLoRA {name} (an EMA factor)", "0.85")
        check_positive(self.alpha, "AdaLoRA alpha", "8")
        check_probability(self.dropout, "AdaLoRA dropout")
        check_positive(self.orth_reg_weight, "AdaLoRA orth_reg_weight (0 turns the penalty off)", "0.5",
                       allow_zero=True)

    def wrap(self, module: nn.Module, name: str) -> AdaLoRALinear:
        require_linear(module, name, "AdaLoRA")
        check_rank(self.init_r, module, name, what="init_r")
        return AdaLoRALinear(module, self)

    # -- §3.3: the global budget
    def budget_schedule(self, step: int, n_matrices: int = 1) -> tuple[int, bool]:
        """(budget b(step), whether to re-allocate at this step) for ``n_matrices`` adapted matrices.

        A pure function of the config, to plot: ``[cfg.budget_schedule(t, n)[0] for t in range(cfg.total_steps)]``.
        The budget is the total number of triplets kept in the model (n = 1 gives the average rank per matrix).
        """
        b_init, b_target = self.init_r * n_matrices, self.target_r * n_matrices
        T, tinit, tfinal = self.total_steps, self.tinit, self.tfinal
        if step <= tinit:                                   # warm-up: full budget, no masking
            return b_init, False
        if step > T - tfinal:                               # final phase: target budget, pattern frozen
            return b_target, True
        remaining = 1 - (step - tinit) / (T - tfinal - tinit)    # 1 -> 0 over the reduction phase
        return int((b_init - b_target) * remaining ** 3 + b_target), step % self.delta_t == 0

    # -- the training run: its length sets the schedule; the loop gets the penalty and the allocator
    def for_steps(self, steps: int) -> "AdaLoRAConfig":
        """This config for a run of ``steps`` optimizer steps: total_steps = steps. A schedule written for another
        length (total_steps given) is stretched to this one: tinit, tfinal and delta_t scale by steps / total_steps,
        so a short run (quick mode, a slice of the data) keeps the same shape of b(t)."""
        check_int(steps, "the run's number of optimizer steps", "319")
        if self.total_steps is None or self.total_steps == steps:
            return replace(self, total_steps=steps)
        scale = steps / self.total_steps
        return replace(self, total_steps=steps, tinit=round(self.tinit * scale), tfinal=round(self.tfinal * scale),
                       delta_t=max(1, round(self.delta_t * scale)))

    def fit_hooks(self, model: nn.Module, steps: int) -> dict:
        """Algorithm 1's two additions to a training step: γ·R added to the loss (none when γ = 0) and
        update_and_allocate after every optimizer step. Refuses a run whose length is not the schedule's."""
        if self.total_steps != steps:
            raise ValueError(f"AdaLoRA's budget schedule ends at total_steps={self.total_steps}, but this run takes "
                             f"{steps} optimizer steps: the budget would never reach (or overshoot) its target. Build "
                             f"the config with config.for_steps({steps}) (minipeft.lab.chapter.run does it for you).")
        hooks = {"after_step": update_and_allocate}
        if self.orth_reg_weight > 0:
            hooks["extra_loss"] = orthogonal_regularization
        return hooks

    def to_peft(self, model: nn.Module) -> tuple[dict, dict[str, torch.Tensor]]:
        layers = adalora_layers(model, self)
        # Export only the triplets that contribute: the kept ones, plus any dropped one that came back to life
        # between two allocations (λ ≠ 0), so that the peft model computes exactly what this one computes.
        keep = {name: layer.mask | (layer.lam.detach() != 0) for name, layer in layers.items()}
        truncated = any(not bool(k.all()) for k in keep.values())
        layers, config = peft_tuner(
            self, model, AdaLoRALinear, "ADALORA", init_r=self.init_r, target_r=self.target_r, lora_alpha=self.alpha,
            lora_dropout=self.dropout, tinit=self.tinit, tfinal=self.tfinal, deltaT=self.delta_t, beta1=self.beta1,
            beta2=self.beta2, orth_reg_weight=self.orth_reg_weight, total_step=self.total_steps, bias="none",
            # peft resizes each matrix to the True entries of its pattern (keeping scale alpha / init_r)
            rank_pattern={f"{n}.lora_E": k.tolist() for n, k in keep.items()} if truncated else None)
        state = {}
        for name, layer in layers.items():
            k = keep[name] if truncated else torch.ones_like(layer.mask)
            state[peft_key(name, "lora_A")] = layer.Q[k]                 # (r', d_in)
            state[peft_key(name, "lora_E")] = layer.lam[k].unsqueeze(1)  # (r', 1)
            state[peft_key(name, "lora_B")] = layer.P[:, k]              # (d_out, r')
        return config, state


# --------------------------------------------------------------------------------------------- training hooks
def adalora_layers(model: nn.Module, config: AdaLoRAConfig | None = None) -> dict[str, AdaLoRALinear]:
    """Every AdaLoRA layer of ``model`` by full name (only those of ``config`` if given)."""
    return {n: m for n, m in peft_layers(model, AdaLoRALinear).items() if config is None or m.adalora_config is config}


def _layers_and_config(model: nn.Module) -> tuple[dict[str, AdaLoRALinear], AdaLoRAConfig]:
    layers = adalora_layers(model)
    if not layers:
        raise ValueError("This model has no AdaLoRA layers: call minipeft.inject(model, AdaLoRAConfig(...)) first.")
    configs = {id(m.adalora_config): m.adalora_config for m in layers.values()}
    if len(configs) > 1:
        raise ValueError("This model carries several AdaLoRA configs; one budget cannot be shared between them. "
                         "Inject a single AdaLoRAConfig that targets all the matrices.")
    return layers, next(iter(configs.values()))


@torch.no_grad()
def mask_to_budget(model: nn.Module, budget: int) -> dict[str, list[bool]]:
    """Step 4: keep the ``budget`` best triplets of the whole model, zero the λ of the others; returns the pattern."""
    layers, _ = _layers_and_config(model)
    scores = {name: layer.triplet_scores() for name, layer in layers.items()}   # each (r,)
    all_scores = torch.cat(list(scores.values()))                                 # (n · r,)
    n_drop = all_scores.numel() - budget
    if n_drop > 0:
        threshold = torch.kthvalue(all_scores, n_drop).values   # the n_drop-th smallest score
        for name, layer in layers.items():
            layer.apply_mask(scores[name] > threshold)
    return rank_pattern(model)


@torch.no_grad()
def update_and_allocate(model: nn.Module, step: int) -> int:
    """The training-loop hook: call after ``optimizer.step()`` and before ``optimizer.zero_grad()``
    (``minipeft.train.fit(..., after_step=update_and_allocate)``). Returns the budget at this step."""
    layers, config = _layers_and_config(model)
    end = config.total_steps - config.tfinal
    if step < end:                                      # warm-up and reduction: score, then maybe mask
        if all(m.lam.grad is None for m in layers.values()):
            raise RuntimeError("update_and_allocate needs the gradients of this step: call it after "
                               "loss.backward() and optimizer.step(), before optimizer.zero_grad().")
        for layer in layers.values():
            layer.update_importance()
        budget, mask_now = config.budget_schedule(step, len(layers))
        if mask_now:
            mask_to_budget(model, budget)
        return budget
    budget = config.target_r * len(layers)
    if step == end:                                     # the last allocation: the final rank pattern
        mask_to_budget(model, budget)
        for layer in layers.values():
            layer.reset_importance()
    else:                                               # final fine-tuning: keep the frozen pattern
        for layer in layers.values():
            layer.lam.masked_fill_(~layer.mask, 0.0)
    return budget


def orthogonal_regularization(model: nn.Module, weight: float | None = None) -> torch.Tensor:
    """γ · R with R = mean over all adapted matrices of ‖QQᵀ − I‖_F and ‖PᵀP − I‖_F (peft's form; the paper
    squares the norms and sums them). γ = the config's orth_reg_weight unless ``weight`` is given.
    Ready to add to the loss: ``fit(..., extra_loss=orthogonal_regularization)``."""
    layers, config = _layers_and_config(model)
    weight = config.orth_reg_weight if weight is None else weight
    terms = []
    for layer in layers.values():
        eye = torch.eye(layer.r, device=layer.P.device, dtype=layer.P.dtype)                 # (r, r)
        terms.append(torch.linalg.matrix_norm(layer.Q @ layer.Q.T - eye))   # ‖QQᵀ − I‖_F: rows of Q orthonormal
        terms.append(torch.linalg.matrix_norm(layer.P.T @ layer.P - eye))   # ‖PᵀP − I‖_F: columns of P orthonormal
    return weight * torch.stack(terms).mean()


def rank_pattern(model: nn.Module) -> dict[str, list[bool]]:
    """Which triplets survive, per adapted matrix: {module name: [True, False, ...] (init_r entries)}.
    ``{n: sum(p) for n, p in rank_pattern(model).items()}`` is the rank of every matrix: plot it per layer."""
    layers, _ = _layers_and_config(model)
    return {name: layer.mask.tolist() for name, layer in layers.items()}
