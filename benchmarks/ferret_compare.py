"""Compare the removal-metric engine with ferret's AOPC evaluators, each in its own process.

ferret-xai 0.4.2 pins captum<0.8, numpy<2, shap<0.45, datasets<3, ... and cannot share the
project's environment, so it lives in a separate virtualenv (benchmark-only; never a project
dependency).  This script:

1. (project venv) builds a tiny BERT and ``--n`` inputs (generated NLI pairs, premise and
   hypothesis words as *one* segment, since ferret explains single texts), seeded random
   attribution maps and the model's predicted classes, and saves model, tokenizer and inputs
   to ``--work`` (default /tmp/attriboard-ferret-compare);
2. runs ``ours`` in a fresh process of the project's Python: comprehensiveness and
   sufficiency over the same bins with :func:`harness.metrics.removal.removal_curves`
   (``delete`` operator, all variants of all inputs batched);
3. runs ``ferret`` in a fresh process of ``--venv`` (created on first use with
   ``pip install torch==2.13.0 ferret-xai==0.4.2 "pyarrow<16"``):
   ``AOPC_Comprehensiveness_Evaluation`` and ``AOPC_Sufficiency_Evaluation`` per input with
   ``removal_args={"remove_tokens": True, "based_on": "perc", "thresholds": bins}`` (our bins,
   deletion) and ferret's default ``only_pos=True`` (``only_pos=False`` crashes in 0.4.2 once a
   bin holds two or more tokens: ``id_top_k == []`` on a numpy array);
4. prints seconds, inputs per second, the ratio and both sides' mean scores (they differ by
   definition: ferret floors k% of the tokens and skips a bin when it yields 0 tokens or the
   same rationale as the previous bin, see docs/METRICS.md).

Usage: ``.venv/bin/python benchmarks/ferret_compare.py [--n 128] [--venv /tmp/ferret-venv]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BINS = [0.01, 0.05, 0.10, 0.20, 0.50]
REPO = Path(__file__).resolve().parent.parent
FERRET_PIP = ["torch==2.13.0", "ferret-xai==0.4.2", "pyarrow<16"]


def prepare(work: Path, n: int, seed: int = 0) -> None:
    sys.path.insert(0, str(REPO))
    import numpy as np

    from harness.models.bundle import ModelBundle
    from harness.models.reference import ModelRecipe, build_word_tokenizer, tiny_bert
    from tasks.nli.corpus import generate_nli_corpus, nli_vocabulary

    recipe = ModelRecipe(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    tok = build_word_tokenizer(sorted(nli_vocabulary()), recipe.max_length)
    model = tiny_bert(len(tok), 3, recipe)
    import torch

    with torch.no_grad():  # an untrained tiny BERT is ~constant: scale it as harness.testing's sensitive model
        for mod in model.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.weight.mul_(20.0)
        model.get_input_embeddings().weight.mul_(10.0)
    bundle = ModelBundle(model, tok, "cmp", 3, max_length=recipe.max_length)
    words = [p.premise + p.hypothesis for p in generate_nli_corpus(n, seed=seed, style="mnli")]
    rng = np.random.default_rng(seed)
    maps = [rng.standard_normal(len(w)).tolist() for w in words]
    targets = bundle.proba_of_segments([(w,) for w in words]).argmax(-1).tolist()
    work.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(work / "model")
    tok.save_pretrained(work / "model")
    (work / "inputs.json").write_text(json.dumps({"words": [list(w) for w in words], "maps": maps,
                                                  "targets": targets, "bins": BINS}))


OURS = r"""
import json, sys, time
sys.path.insert(0, {repo!r})
import numpy as np
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from harness.models.bundle import ModelBundle
from harness.protocols import Example, MetricInputs
from harness.metrics import removal as rm
work = {work!r}
d = json.load(open(work + "/inputs.json"))
bundle = ModelBundle(AutoModelForSequenceClassification.from_pretrained(work + "/model"),
                     AutoTokenizer.from_pretrained(work + "/model"), "cmp", 3, max_length=128)
ex = [Example(str(i), (tuple(w),)) for i, w in enumerate(d["words"])]
inputs = MetricInputs(ex, [np.array(m) for m in d["maps"]], [None] * len(ex), model=bundle, targets=d["targets"])
rm.removal_curves(inputs, "delete", d["bins"], use_cache=False)   # warm-up
runs = []
for _ in range(3):
    t0 = time.perf_counter()
    curves = rm.removal_curves(inputs, "delete", d["bins"], use_cache=False)
    comp = [rm.comprehensiveness_one(c, d["bins"]) for c in curves]
    suff = [rm.sufficiency_one(c, d["bins"]) for c in curves]
    runs.append(time.perf_counter() - t0)
print(json.dumps({{"seconds": float(np.min(runs)), "comprehensiveness": float(np.mean(comp)),
                  "sufficiency": float(np.mean(suff)), "forward_sequences": bundle.counter.forward}}))
"""

FERRET = r"""
import json, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from ferret.evaluators.faithfulness_measures import AOPC_Comprehensiveness_Evaluation, AOPC_Sufficiency_Evaluation
from ferret.explainers.explanation import Explanation
work = {work!r}
d = json.load(open(work + "/inputs.json"))
model = AutoModelForSequenceClassification.from_pretrained(work + "/model").eval()
tok = AutoTokenizer.from_pretrained(work + "/model")
comp_ev = AOPC_Comprehensiveness_Evaluation(model, tok)
suff_ev = AOPC_Sufficiency_Evaluation(model, tok)
# only_pos=True (ferret's default): with only_pos=False ferret 0.4.2 raises as soon as a bin has
# two or more tokens (`id_top_k == []` on a numpy array), so the default is the only usable setting
args = dict(removal_args={{"remove_tokens": True, "based_on": "perc", "thresholds": d["bins"]}}, only_pos=True)
expl = []
for w, m, t in zip(d["words"], d["maps"], d["targets"]):
    text = " ".join(w)
    tokens = tok.convert_ids_to_tokens(tok(text)["input_ids"])
    assert len(tokens) == len(w) + 2, "one token per word expected"
    expl.append(Explanation(text, tokens, np.array([0.0] + m + [0.0]), "random", t))
def run():
    comp = [comp_ev.compute_evaluation(e, e.target, **args).score for e in expl]
    suff = [suff_ev.compute_evaluation(e, e.target, **args).score for e in expl]
    return comp, suff
run()   # warm-up
runs = []
for _ in range(3):
    t0 = time.perf_counter()
    comp, suff = run()
    runs.append(time.perf_counter() - t0)
print(json.dumps({{"seconds": float(np.min(runs)), "comprehensiveness": float(np.mean(comp)),
                  "sufficiency": float(np.mean(suff))}}))
"""


def ensure_ferret_venv(venv: Path) -> Path:
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import ferret"], capture_output=True).returncode == 0:
        return py
    print(f"[ferret] creating {venv} and installing {' '.join(FERRET_PIP)} (a few minutes)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    res = subprocess.run([str(py), "-m", "pip", "install", "-q", *FERRET_PIP], capture_output=True, text=True)
    if res.returncode != 0:
        lines = [ln for ln in (res.stderr + res.stdout).splitlines() if "is ignored: it is neither" not in ln]
        raise SystemExit("ferret-xai could not be installed:\n" + "\n".join(lines[-30:]))
    return py


def run_side(python: str, code: str) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    env.pop("PYTHONPATH", None)
    res = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{python} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--venv", default="/tmp/ferret-venv")
    ap.add_argument("--work", default="/tmp/attriboard-ferret-compare")
    args = ap.parse_args(argv)
    work = Path(args.work)
    t0 = time.perf_counter()
    prepare(work, args.n)
    ferret_py = ensure_ferret_venv(Path(args.venv))
    ours = run_side(sys.executable, OURS.format(repo=str(REPO), work=str(work)))
    theirs = run_side(str(ferret_py), FERRET.format(work=str(work)))
    print(f"inputs: {args.n} single-segment texts (generated NLI pairs), bins {BINS}, delete; "
          f"tiny BERT, CPU ({time.perf_counter() - t0:.0f}s in all)")
    print(f"{'side':<10}{'seconds':>10}{'inputs/s':>12}{'comp':>10}{'suff':>10}")
    for name, r in (("attriboard", ours), ("ferret", theirs)):
        print(f"{name:<10}{r['seconds']:>10.3f}{args.n / r['seconds']:>12.1f}{r['comprehensiveness']:>10.4f}"
              f"{r['sufficiency']:>10.4f}")
    print(f"speed-up of the batched engine over ferret's evaluators: {theirs['seconds'] / ours['seconds']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
