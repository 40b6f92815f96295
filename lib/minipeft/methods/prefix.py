r"""Prefix tuning (Li & Liang 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation", §4).

Every attention layer ℓ gets n learned key vectors P_k^ℓ and n learned value vectors P_v^ℓ, placed in front of
the keys and values the frozen model computes for the real tokens. The prefix has no query of its own (it
produces no output); it is only something every real token can attend to. Per head, with d_h the head size:

    Q = x W_q                     (T × d_h)          the real tokens' queries: unchanged
    K = [ P_k^ℓ ; x W_k ]         ((n+T) × d_h)      n learned rows in front of the model's keys
    V = [ P_v^ℓ ; x W_v ]         ((n+T) × d_h)      ... and of its values
    head(x) = softmax( Q Kᵀ / √d_h  +  [ 0 | M ] ) V  M: the model's own mask (padding; causal for a decoder);
                                                      the n prefix columns are 0: visible to every query

                     prefix (learned, layer ℓ)      real tokens (frozen W_k, W_v)
              K  =  [ pk1  pk2  ...  pkn |  k1    k2    k3    k4  ]
              V  =  [ pv1  pv2  ...  pvn |  v1    v2    v3    v4  ]
                       ▲    ▲         ▲     ▲     ▲     ▲     ·       decoder: q3 sees every prefix slot
              q3 ──────┴────┴─────────┴─────┴─────┴─────┘     ·       and k1..k3 (causal), never k4;
                                                                      padding columns stay masked

This is §4.2's "h_i = P_θ[i, :] if i ∈ P_idx": the prefix positions' activations are free parameters in EVERY
layer, and in a Transformer the only thing other positions read from them are their keys and values. Nothing of
the pretrained model is trained; per layer ℓ the table holds 2 · n · d_kv numbers.

Shapes and parameter counts (L attention layers; d_kv = kv_heads · head_dim, which is d for BERT and for any
model without grouped-query attention; SmolLM2: 3 · 64 = 192 while d = 576, so GQA cuts the table by 3):

    direct (projection_hidden=None):   PrefixEncoder.prefix   (L, 2, n, d_kv)        L · 2 · n · d_kv
    reparameterised (§4.3):            embedding (n, d_kv) → Linear(d_kv, h) → Tanh → Linear(h, L · 2 · d_kv)
                                        n·d_kv + (d_kv·h + h) + (h·L·2·d_kv + L·2·d_kv)
    after fold_prefix(model):          back to the direct table, L · 2 · n · d_kv

§4.3: optimising P directly was unstable for the authors, so they train P = MLP(P') with a smaller P' and drop the
MLP after training, keeping only its output table; ``fold_prefix`` is that last step. The MLP is exactly peft's
``PrefixEncoder`` (same modules, same names, same flat output), so its output table is what peft saves.

Layout: our table is (L, 2, n, d_kv), indexed [layer, key/value, slot, channel]; Hugging Face peft stores ONE
(n, L · 2 · d_kv) table ("prompt_embeddings") whose row t is [K_0 | V_0 | K_1 | V_1 | ...] of slot t, so
    peft = ours.permute(2, 0, 1, 3).reshape(n, L * 2 * d_kv)       ours = peft.view(n, L, 2, d_kv).permute(1, 2, 0, 3)

How the prefix gets in. peft feeds the table to the model as ``past_key_values`` (a KV cache the model never
computed). That needs a model whose forward takes a cache, so peft cannot prefix-tune BertForSequenceClassification
& co. ("Model does not support past key values"). Here each self-attention module is wrapped in a PeftLayer that
recomputes attention with the concatenation above, which works the same for BERT and Llama, and leaves the model's
own KV cache (generation) holding real tokens only: the prefix is put back in front at every step.

Positions. The prefix keys carry no position: for Llama, RoPE rotates the real queries and keys but never the
prefix keys (peft's prefix enters the cache as it is, after the point where LlamaAttention applies RoPE).
Llama's real tokens are numbered after the prefix, n, n+1, ..., as in the paper's z = [PREFIX; x] and as in peft
(the prefilled cache makes the model count the prefix as n past tokens). RoPE is relative, so this changes only
how queries meet the (unrotated) prefix keys, never token-token attention. BERT is different: it adds LEARNED
ABSOLUTE position embeddings before layer 0, so shifting its tokens would change its input. peft does shift them
(a bare BertModel counts the cache too); on MiniLM a shift of 10 drops the cosine similarity of mean-pooled
sentence embeddings to 0.66-0.93, a worse start for training. So here BERT tokens keep positions 0..T-1; the
price is that a BERT prefix cannot be exported to peft (to_peft explains).

"Embedding-only" ablation (§7.2): learned vectors only at the input, whose deeper activations the frozen model then
computes itself. That is prompt tuning (Lester et al. 2021), ``minipeft.PromptConfig``, so it is not repeated
here: compare PrefixConfig(length=n) with PromptConfig(length=n). A prefix in only some layers (e.g. only the
first) is a different ablation: ``targets`` restricted to those attention modules, e.g.
``targets=["encoder.layer.0.attention.self"]``.

Supported, recognised by the attention module's structure (``prefix_wrapper``): BERT-style self-attention (BERT,
RoBERTa, XLM-R, ELECTRA: MiniLM, ``tiny_encoder``) and rotary decoder attention (Llama, Mistral, Qwen2, Qwen3, Gemma,
Gemma2, Phi-3: SmolLM2, ``tiny_decoder``), including ``model.generate`` with a KV cache; the decoders export to peft.
Other families compute attention their own way (GPT-2's fused Conv1D heads, DeBERTa's disentangled and T5's relative
positions, BART's cross-attention...): inject refuses them and says so. Stacking with LoRA on the attention's own
projections (query/value): inject LoRA first, then the prefix; the prefix wrapper keeps those layers inside its
base_layer, where a later inject does not look. Other modules (FFN adapters, as in MAM) stack in either order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..core.checks import check_int
from ..core.config import PeftConfig
from ..core.layers import PeftLayer, PeftModule

SUPPORTED = ("BERT-style self-attention (BERT, RoBERTa, XLM-R, ELECTRA: MiniLM, tiny_encoder) and rotary decoder "
             "attention (Llama, Mistral, Qwen2, Qwen3, Gemma, Gemma2, Phi-3: SmolLM2, tiny_decoder)")
# why the others are not: prefix tuning recomputes attention with n extra keys and values in front, so it must redo
# each family's own attention arithmetic; these compute it differently
WHY_NOT = ("prefix tuning recomputes attention with n learned keys and values in front of the real ones, so it must "
           "redo each family's own attention arithmetic; this one (fused Conv1D heads, relative-position or "
           "disentangled attention, cross-attention, ALiBi...) is not written here")


# --------------------------------------------------------------------------------------------- the table
class PrefixEncoder(PeftModule):
    """All L layers' prefixes. ``self()`` -> (L, 2, n, d_kv): [layer, key/value, slot, channel].

    ONE table for the whole model, shared by every PrefixAttention as its ``prefix_encoder`` sub-module (like tied
    embeddings: registered in several places, one set of parameters); each layer reads its row ``[index]``.
    """

    def __init__(self, L: int, n: int, d_kv: int, hidden: int | None = None, device=None, dtype=None):
        super().__init__()
        self.L, self.n, self.d_kv = L, n, d_kv
        kw = dict(device=device, dtype=dtype)
        if hidden is None:
            # small random keys: every slot starts with a score ≈ 0, i.e. a modest share of each softmax;
            # small random values: that share carries almost nothing, so training starts near the base model.
            # (peft's default, N(0, 1), moves MiniLM's mean-pooled sentence embeddings to cosine 0.66-0.86 of the
            # base model's at n=10; 0.02 keeps them at 0.91-0.99.) Small values want a large learning rate
            # with AdamW, ~1e-2..3e-2.
            self.prefix = nn.Parameter(torch.randn(L, 2, n, d_kv, **kw) * 0.02)    # (L, 2, n, d_kv)
        else:
            # §4.3 / peft's PrefixEncoder(prefix_projection=True), same names and the same default init
            self.embedding = nn.Embedding(n, d_kv, **kw)                            # P': (n, d_kv)
            self.transform = nn.Sequential(
                nn.Linear(d_kv, hidden, **kw), nn.Tanh(), nn.Linear(hidden, L * 2 * d_kv, **kw))

    @property
    def folded(self) -> bool:
        return "prefix" in self._parameters

    def forward(self) -> torch.Tensor:
        if self.folded:
            return self.prefix                                                      # (L, 2, n, d_kv)
        flat = self.transform(self.embedding.weight)                                # (n, L·2·d_kv): peft's layout
        return flat.view(self.n, self.L, 2, self.d_kv).permute(1, 2, 0, 3)         # (L, 2, n, d_kv)

    @torch.no_grad()
    def fold(self) -> None:
        """Replace the MLP by its output table (§4.3: after training only the prefix P is kept)."""
        if self.folded:
            return
        table = self().detach().clone().contiguous()                                # (L, 2, n, d_kv)
        del self.embedding, self.transform
        self.prefix = nn.Parameter(table)

    def extra_repr(self) -> str:
        return f"L={self.L}, n={self.n}, d_kv={self.d_kv}" + ("" if self.folded else ", reparameterised")


# --------------------------------------------------------------------------------------------- attention
def extend_mask(mask: torch.Tensor | None, T: int, S: int, n: int, causal: bool, dtype: torch.dtype,
                device, hide_prefix: bool = False) -> torch.Tensor:
    """The additive mask over [prefix; tokens], (B or 1, 1, T, n+S), from whatever the model passed for the tokens.

    transformers 5 hands an attention module one of: None (nothing to mask; for a causal model "causal", which
    SDPA would apply itself), a boolean (B, 1, T, S) mask (SDPA; True = may attend) or an additive float one
    (eager; 0 or the dtype's minimum). Prefix columns are 0 (always visible) unless ``hide_prefix``.
    """
    blocked = torch.finfo(dtype).min
    if mask is None:
        visible = torch.ones(T, S, dtype=torch.bool, device=device)
        if causal:  # query i is token S-T+i: it sees keys 0..S-T+i (bottom-right aligned, also right with a cache)
            visible = visible.tril(diagonal=S - T)
        tokens = torch.zeros(1, 1, T, S, dtype=dtype, device=device).masked_fill(~visible, blocked)
    elif mask.dtype == torch.bool:
        tokens = torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(~mask, blocked)
    else:
        tokens = mask.to(dtype)                                                     # already additive
    prefix = torch.full((*tokens.shape[:-1], n), blocked if hide_prefix else 0.0, dtype=dtype, device=device)
    return torch.cat([prefix, tokens], dim=-1)                                      # (B|1, 1, T, n+S)


class PrefixAttention(PeftLayer):
    """Base of the per-family wrappers: the prefix lookup and softmax attention over [prefix; tokens]."""

    def __init__(self, base_layer: nn.Module, n: int, d_kv: int, kv_heads: int, head_dim: int):
        super().__init__(base_layer)
        self.n, self.d_kv, self.kv_heads, self.head_dim = n, d_kv, kv_heads, head_dim
        self.index: int | None = None   # our row of the model's table, set by PrefixConfig.attach
        self.prefix_encoder: PrefixEncoder | None = None  # the model's one table, shared by all layers (attach)
        self.softcap: float | None = None  # Gemma2 caps attention logits: cap · tanh(scores / cap)
        self.hide_prefix = False        # debug: mask the prefix out, the layer must then equal the base layer
        self.record_mass = False        # set by prefix_attention_mass()
        self.last_mass: torch.Tensor | None = None

    def prefix(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This layer's (P_k, P_v), each (B, kv_heads, n, head_dim)."""
        if self.prefix_encoder is None:
            raise RuntimeError("This PrefixAttention has no prefix table: create it with minipeft.inject(model, "
                               "PrefixConfig(...)), not by hand.")
        p_k, p_v = self.prefix_encoder()[self.index]                                # (n, d_kv) each
        split = lambda p: p.view(self.n, self.kv_heads, self.head_dim).transpose(0, 1).expand(batch, -1, -1, -1)
        return split(p_k), split(p_v)

    # -- two hooks for serving many users' prefixes in one batch (minipeft.serving.AdapterBank): here every row
    # has the same n slots, all visible, and the same position shift n
    def hidden_slots(self, batch: int) -> torch.Tensor | None:
        """(B, n) bool, True for prefix slots row b must not see (a shorter prefix padded to n), or None."""
        return None

    def position_offset(self, batch: int) -> int | torch.Tensor:
        """How far the real tokens' positions are shifted (z = [PREFIX; x]): n, or a (B, 1) tensor of per-row shifts."""
        return self.n

    def attend(self, q, k, v, mask, scale: float, causal: bool, dropout: float) -> tuple[torch.Tensor, torch.Tensor]:
        """q (B, H, T, d_h); k, v (B, H_kv, S, d_h) for the real tokens -> (B, T, H·d_h), probs (B, H, T, n+S)."""
        B, H, T, _ = q.shape
        S = k.shape[2]
        p_k, p_v = self.prefix(B)                                                   # (B, H_kv, n, d_h)
        K = torch.cat([p_k.to(k.dtype), k], dim=2)                                  # (B, H_kv, n+S, d_h)
        V = torch.cat([p_v.to(v.dtype), v], dim=2)                                  # (B, H_kv, n+S, d_h)
        groups = H // self.kv_heads                                                 # GQA: query heads per KV head
        K, V = K.repeat_interleave(groups, dim=1), V.repeat_interleave(groups, dim=1)  # (B, H, n+S, d_h)
        scores = q @ K.transpose(-1, -2) * scale                                    # (B, H, T, n+S)
        if self.softcap:
            scores = torch.tanh(scores / self.softcap) * self.softcap
        scores = scores + extend_mask(mask, T, S, self.n, causal, scores.dtype, q.device, self.hide_prefix)
        hidden = self.hidden_slots(B)                                               # (B, n) or None
        if hidden is not None:                                                      # (B, 1, 1, n+S): token columns False
            scores = scores.masked_fill(F.pad(hidden, (0, S))[:, None, None, :], torch.finfo(scores.dtype).min)
        probs = scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype)             # (B, H, T, n+S)
        if self.record_mass:
            self.last_mass = probs[..., : self.n].sum(-1).detach()                  # (B, H, T)
        out = F.dropout(probs, p=dropout, training=self.training) @ V               # (B, H, T, d_h)
        return out.transpose(1, 2).reshape(B, T, H * self.head_dim), probs          # (B, T, H·d_h)

    def extra_repr(self) -> str:
        return f"layer={self.index}, n={self.n}, kv_heads={self.kv_heads}, head_dim={self.head_dim}"


class BertPrefixAttention(PrefixAttention):
    """Replaces BertSelfAttention (query/key/value projections; BertSelfOutput after it is left alone)."""

    def __init__(self, base_layer: nn.Module, n: int):
        heads, d_h = base_layer.num_attention_heads, base_layer.attention_head_size
        super().__init__(base_layer, n, d_kv=heads * d_h, kv_heads=heads, head_dim=d_h)

    def forward(self, hidden_states, attention_mask=None, cache=None, **kwargs):   # hidden_states (B, T, d)
        if cache is not None:
            raise ValueError("BertPrefixAttention is for BERT encoders, which take no KV cache.")
        att = self.base_layer
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        q = att.query(hidden_states).view(shape).transpose(1, 2)                    # (B, H, T, d_h)
        k = att.key(hidden_states).view(shape).transpose(1, 2)                      # (B, H, T, d_h)
        v = att.value(hidden_states).view(shape).transpose(1, 2)                    # (B, H, T, d_h)
        return self.attend(q, k, v, attention_mask, att.scaling, att.is_causal, att.dropout.p)


class RotaryPrefixAttention(PrefixAttention):
    """Replaces a rotary decoder's attention (Llama, Mistral, Qwen2 / Qwen3, Gemma / Gemma2, Phi-3): RoPE on the real
    tokens only, GQA, the model's KV cache for real tokens, o_proj. What differs between these families is read off
    the module: a fused qkv_proj (Phi-3), q_norm / k_norm (Qwen3), a logit soft-cap (Gemma2), and the RoPE variant
    (partial rotary: Phi-3), for which the family's own rotary class and apply_rotary_pos_emb are used."""

    def __init__(self, base_layer: nn.Module, n: int):
        import sys

        cfg = base_layer.config
        kv_heads = cfg.num_key_value_heads
        super().__init__(base_layer, n, d_kv=kv_heads * base_layer.head_dim, kv_heads=kv_heads,
                         head_dim=base_layer.head_dim)
        family = sys.modules[type(base_layer).__module__]            # e.g. transformers.models.qwen3.modeling_qwen3
        self._apply_rope = family.apply_rotary_pos_emb
        (rotary,) = [v for k, v in vars(family).items() if k.endswith("RotaryEmbedding") and isinstance(v, type)][:1]
        # our own RoPE (a buffer, no parameters): the real tokens are rotated at positions shifted by n
        self.rotary = rotary(cfg).to(base_layer.o_proj.weight.device)
        self.softcap = getattr(cfg, "attn_logit_softcapping", None)   # Gemma2: cap · tanh(scores / cap)

    def forward(self, hidden_states, position_embeddings=None, attention_mask=None, cache=None,
                position_ids=None, **kwargs):                                       # hidden_states (B, T, d)
        # position_embeddings: the model's cos/sin at UNshifted positions; we compute our own below
        att = self.base_layer
        B, T, _ = hidden_states.shape
        shape = (B, T, -1, self.head_dim)
        if hasattr(att, "qkv_proj"):                                                # Phi-3: one fused projection
            qkv = att.qkv_proj(hidden_states)                                       # (B, T, (H + 2 H_kv) d_h)
            q_size = qkv.shape[-1] - 2 * self.d_kv
            q, k, v = qkv.split([q_size, self.d_kv, self.d_kv], dim=-1)
        else:
            q, k, v = att.q_proj(hidden_states), att.k_proj(hidden_states), att.v_proj(hidden_states)
        q, k, v = q.view(shape), k.view(shape), v.view(shape)                       # (B, T, H or H_kv, d_h)
        if hasattr(att, "q_norm"):                                                  # Qwen3: RMSNorm per head
            q, k = att.q_norm(q), att.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)           # (B, H or H_kv, T, d_h)
        if position_ids is None:  # the model always passes them; this is its own default
            past = cache.get_seq_length(att.layer_idx) if cache is not None else 0
            position_ids = torch.arange(past, past + T, device=hidden_states.device)[None]
        cos, sin = self.rotary(v, position_ids + self.position_offset(B))  # z = [PREFIX; x]: tokens start at n
        q, k = self._apply_rope(q, k, cos, sin)                # prefix keys are never rotated
        if cache is not None:
            k, v = cache.update(k, v, att.layer_idx)           # the cache holds real tokens only, (B, H_kv, S, d_h)
        out, probs = self.attend(q, k, v, attention_mask, att.scaling, True,
                                 att.attention_dropout if self.training else 0.0)
        return att.o_proj(out), probs                                               # (B, T, d)


LlamaPrefixAttention = RotaryPrefixAttention  # the course's name for it (SmolLM2 is a Llama)


def prefix_wrapper(module: nn.Module) -> type | None:
    """The wrapper for this attention module, recognised by its structure, or None."""
    import sys

    if all(hasattr(module, a) for a in ("query", "key", "value", "attention_head_size", "num_attention_heads",
                                        "scaling", "is_causal", "dropout")):
        return BertPrefixAttention          # BertSelfAttention and its copies (RoBERTa, XLM-R, ELECTRA)
    family = sys.modules.get(type(module).__module__)
    rotary = hasattr(family, "apply_rotary_pos_emb") and any(k.endswith("RotaryEmbedding") for k in vars(family))
    projections = hasattr(module, "qkv_proj") or all(hasattr(module, p) for p in ("q_proj", "k_proj", "v_proj"))
    if rotary and projections and all(hasattr(module, a) for a in ("o_proj", "head_dim", "scaling", "layer_idx")) \
            and hasattr(getattr(module, "config", None), "num_key_value_heads"):
        return RotaryPrefixAttention
    return None


# --------------------------------------------------------------------------------------------- the config
@dataclass
class PrefixConfig(PeftConfig):
    length: int = 10                        # n: §7.1 finds ~10 enough for table-to-text (200 for
                                            # summarisation); longer prefixes cost attention time at every layer
    projection_hidden: int | None = None    # h of the §4.3 MLP (peft: encoder_hidden_size). None = learn the table
                                            # directly (peft's default); the paper trains through the MLP for
                                            # stability, then fold_prefix() keeps only its output

    method: ClassVar[str] = "prefix"
    ROLES: ClassVar[tuple[str, ...]] = ("attention",)   # the self-attention module of every layer

    def validate(self) -> None:
        check_int(self.length, "Prefix length n", "length=10")
        if self.projection_hidden is not None:
            check_int(self.projection_hidden, "projection_hidden", "512",
                      meaning="the hidden size of the §4.3 MLP, or None to learn the prefix table directly")

    def prepare(self, model: nn.Module) -> None:
        if prefix_layers(model):
            raise ValueError("This model already has a prefix (prefix_encoder): use ONE PrefixConfig whose "
                             "targets list every attention module that should get a prefix.")

    def wrap(self, module: nn.Module, name: str) -> PrefixAttention:
        wrapper, kind = prefix_wrapper(module), type(module).__name__
        if wrapper is None:
            inside = [n for n, m in module.named_modules() if n and prefix_wrapper(m)][:2]
            hint = (f" It contains {inside}: target that." if inside else
                    f" Why: {WHY_NOT}. Use LoRA, IA3 or prompt tuning on this model." if "Attention" in kind else
                    " Prefix tuning changes attention as a whole: target the self-attention modules, "
                    "e.g. targets=['attention.self'] (BERT) or ['self_attn'] (Llama), or leave targets=None.")
            raise TypeError(f"Prefix tuning supports {SUPPORTED}; {name!r} is a {kind}.{hint}")
        if wrapper is BertPrefixAttention and module.is_decoder:
            raise ValueError(f"{name!r} belongs to a BERT used as a decoder (config.is_decoder=True); minipeft's "
                             "prefix tuning supports BERT encoders and rotary decoders.")
        return wrapper(module, self.length)

    def attach(self, model: nn.Module) -> None:
        layers = [m for m in model.modules() if isinstance(m, PrefixAttention)]   # model order = layer order
        (d_kv,) = {m.d_kv for m in layers}                     # one size in a transformers model
        ref = next(layers[0].base_layer.parameters())         # the table lives on the model's device and dtype
        encoder = PrefixEncoder(len(layers), self.length, d_kv, self.projection_hidden, ref.device, ref.dtype)
        for i, layer in enumerate(layers):
            layer.index, layer.prefix_encoder = i, encoder     # one table, registered in every layer (tied)

    def to_peft(self, model: nn.Module) -> tuple[dict, dict[str, torch.Tensor]]:
        table = prefix_table(model).float()                                          # (L, 2, n, d_kv)
        layers = prefix_layers(model)
        if not all(isinstance(layer, RotaryPrefixAttention) for layer in layers):
            raise TypeError(
                f"A prefix on a {type(model).__name__} cannot be exported to peft. peft runs prefix tuning by "
                "passing past_key_values: its BERT task models reject them ('Model does not support past key "
                "values'), and a bare BertModel accepts them but then numbers the tokens after the prefix "
                "(absolute positions n..n+T-1), which minipeft deliberately does not do (see minipeft.methods.prefix), so "
                "the numbers would differ. Keep BERT prefixes in minipeft; decoders (Llama, Qwen, ...) export.")
        task_type = "CAUSAL_LM" if hasattr(model, "lm_head") else "FEATURE_EXTRACTION"
        num_layers = getattr(getattr(model, "config", None), "num_hidden_layers", len(layers))
        if len(layers) != num_layers:
            raise ValueError(f"peft puts a prefix in every layer; this model has one in {len(layers)} of "
                             f"{num_layers}. Only a prefix in all layers (targets=None) can be exported.")
        L, _, n, d_kv = table.shape
        config = {
            "peft_type": "PREFIX_TUNING",
            "task_type": task_type,
            "num_virtual_tokens": n,
            "token_dim": d_kv,                      # peft's token_dim for GQA is kv_heads · head_dim, as ours
            "num_attention_heads": layers[0].kv_heads,
            "num_layers": L,
            "num_transformer_submodules": 1,
            "encoder_hidden_size": d_kv,
            # we save the MLP's output table (as peft does), which loads as a direct table; with
            # prefix_projection=True peft could load it only with is_trainable=False
            "prefix_projection": False,
            "inference_mode": True,
        }
        return config, {"prompt_embeddings": table.permute(2, 0, 1, 3).reshape(n, L * 2 * d_kv).contiguous()}


# --------------------------------------------------------------------------------------------- helpers
def prefix_layers(model: nn.Module) -> list[PrefixAttention]:
    """The PrefixAttention wrappers of ``model``, in layer order."""
    return sorted((m for m in model.modules() if isinstance(m, PrefixAttention) and m.prefix_encoder is not None),
                  key=lambda m: m.index)


def prefix_encoder(model: nn.Module) -> PrefixEncoder:
    """The model's one prefix table (a PrefixEncoder, shared by all its PrefixAttention layers)."""
    layers = prefix_layers(model)
    if not layers:
        raise ValueError("This model has no prefix: call minipeft.inject(model, PrefixConfig(...)) first.")
    return layers[0].prefix_encoder


def prefix_table(model: nn.Module) -> torch.Tensor:
    """The current prefixes, (L, 2, n, d_kv) = [layer, key/value, slot, channel] (detached)."""
    return prefix_encoder(model)().detach()


def fold_prefix(model: nn.Module) -> nn.Module:
    """After training through the §4.3 MLP: keep only its output table. Outputs do not change; the parameter
    count drops to L · 2 · n · d_kv. A no-op for a direct table."""
    prefix_encoder(model).fold()
    # the model now holds a direct table: record that, so save_adapter / load_adapter rebuild it as such
    model.minipeft_configs = [replace(c, projection_hidden=None) if isinstance(c, PrefixConfig) else c
                              for c in getattr(model, "minipeft_configs", [])]
    return model


@torch.no_grad()
def prefix_attention_mass(model: nn.Module, **inputs) -> torch.Tensor:
    """(L, heads): the attention probability each layer/head puts on its n prefix slots, averaged over the real
    (non-padding) query tokens of the batch. 0 = the prefix is ignored, 1 = the head reads only the prefix.

        mass = prefix_attention_mass(model, **tokenizer(texts, return_tensors="pt", padding=True))
        plt.imshow(mass, vmin=0, vmax=1)      # layers × heads
    """
    prefix_encoder(model)  # raises if there is no prefix
    layers = prefix_layers(model)
    for layer in layers:
        layer.record_mass, layer.last_mass = True, None
    try:
        model(**inputs)
    finally:
        for layer in layers:
            layer.record_mass = False
    rows = []
    for layer in layers:
        mass = layer.last_mass                                                      # (B, H, T)
        keep = inputs.get("attention_mask")                                         # (B, T) or None
        keep = torch.ones(mass.shape[0], mass.shape[2]) if keep is None else keep[:, -mass.shape[2]:]
        keep = keep.to(mass.device, mass.dtype)[:, None, :]                         # (B, 1, T)
        rows.append((mass * keep).sum((0, 2)) / keep.sum((0, 2)))                   # (H,)
        layer.last_mass = None
    return torch.stack(rows)                                                        # (L, H)
