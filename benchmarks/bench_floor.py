"""The harness/floor ratio: time of a method as the harness runs it, over the time of the model
calls alone.

For each method, the benchmark:

1. runs it through the harness (the removal curves of :mod:`harness.metrics.removal`, or an
   explainer's ``explain`` on a batch), recording every model call it makes: the tensors sent
   and whether gradients were on;
2. **replays** the recorded calls as the floor: the same rows through the same model in the same
   batches (with a backward pass of the summed logits where the method took gradients), and
   nothing else;
3. reports ``ratio = harness time / floor time``. Everything above 1 is harness work: tokenizing,
   building variants, Python loops, copies.

Methods: the removal curves (comprehensiveness, sufficiency, deletion / insertion AUC), leave-one-out,
LIME, Kernel SHAP, and integrated gradients (forward + backward floor).

Models:

- ``tiny-bert``: the default's word-level model, hidden 64, 2 layers;
- ``minilm``: the real 6-layer MiniLM encoder, when installed (``bash scripts/setup.sh --with-minilm``).

Inputs: sentences of 10 / 40 / 120 words from the tiny corpus, 16 examples (4 on MiniLM);
``test_floor_ratio_by_examples``: tiny-bert, 40 words, 4 / 16 / 64 examples.

``extra_info`` per benchmark:

- ``ratio`` (memo on, the default): median over interleaved rounds (5, or more for short methods: up to
  60 rounds or about 1 s of harness time);
- ``ratio_tokenize_all`` (``harness.models.pieces`` off: every perturbed input tokenized);
- ``rows`` and ``calls`` sent;
- ``harness_s`` and ``floor_s``.

Run: ``pytest benchmarks/ -k floor --benchmark-only -s`` (``-k "floor and tiny"``,
``-k "floor and minilm and 40"``, ``-k by_examples`` for parts); tables are printed at the end.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
import torch

from harness.core.submission import resolve
from harness.metrics import removal as rm
from harness.models import pieces
from harness.protocols import Example, MetricInputs

N_EXAMPLES = {"tiny-bert": 16, "minilm": 4}  # MiniLM: ~30 s per LOO pass of 16 x 40 words on one core
ROUNDS = 5
#: short measurements get more rounds (until about this many seconds of harness time, at most MAX_ROUNDS)
MIN_SECONDS = 1.0
MAX_ROUNDS = 60
TABLE: dict[tuple, dict] = {}


def _model(name: str):
    from harness.models.bundle import ModelBundle
    from harness.models.reference import ModelRecipe, build_word_tokenizer, tiny_bert

    words = _words()
    if name == "tiny-bert":
        recipe = ModelRecipe(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                             max_length=256)
        tok = build_word_tokenizer(sorted(set(words)), recipe.max_length)
        return ModelBundle(tiny_bert(len(tok), 2, recipe).eval(), tok, "tiny-bert", 2, max_length=256)
    try:
        from transformers import AutoModelForSequenceClassification

        from harness.models.pretrained import minilm_path
        from harness.models.reference import load_tokenizer

        path = minilm_path()
    except Exception as e:  # noqa: BLE001 - the optional weights package
        pytest.skip(f"MiniLM not installed: {e}")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    return ModelBundle(model, load_tokenizer(path), "minilm", 2, max_length=256)


def _words() -> list[str]:
    from harness.testing import tiny_texts

    return " ".join(tiny_texts()).split() * 40


def _inputs(bundle, n_words: int, n_examples: int | None = None):
    words = _words()
    rng = np.random.default_rng(n_words)
    count = n_examples or N_EXAMPLES[bundle.name]
    examples = [Example(f"e{i}", (tuple(words[s:s + n_words]),))
                for i, s in enumerate(rng.integers(0, len(words) - n_words, count))]
    maps = [rng.standard_normal(e.n_words) for e in examples]
    targets = bundle.proba_of_segments([e.segments for e in examples]).argmax(-1).tolist()
    return examples, maps, targets


class Recorder:
    """Records every forward call of the model (its inputs, grad mode)."""

    def __init__(self, model):
        self.calls = []
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, _module, args, kwargs):
        keep = {k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in kwargs.items()
                if k in ("input_ids", "attention_mask", "token_type_ids", "inputs_embeds", "position_ids")}
        self.calls.append((keep, torch.is_grad_enabled()))

    def close(self):
        self.handle.remove()


def _replay(model, calls) -> None:
    for kwargs, grad in calls:
        if grad:
            kw = dict(kwargs)
            if kw.get("inputs_embeds") is not None:
                kw["inputs_embeds"] = kw["inputs_embeds"].requires_grad_(True)
            out = model(**kw).logits
            out.sum().backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                model(**kwargs)


def _method(name: str, bundle, examples, maps, targets):
    if name == "removal":
        inputs = MetricInputs(examples, maps, [None] * len(examples), model=bundle, targets=targets)
        return lambda: rm.removal_curves(inputs, "delete", use_cache=False)
    sub = {"loo": "leave_one_out", "lime": "lime", "kernel_shap": "kernel_shap", "ig": "integrated_gradients"}[name]
    explainer = resolve(sub).instantiate()
    batch = bundle.make_batch([e.segments for e in examples], targets)
    return lambda: explainer.explain(bundle, batch)


def _measure(fn, bundle):
    rec = Recorder(bundle.model)
    try:
        fn()  # warm-up and recording
    finally:
        rec.close()
    harness, floor = [], []
    while len(harness) < ROUNDS or (sum(harness) < MIN_SECONDS and len(harness) < MAX_ROUNDS):  # interleaved
        t0 = time.perf_counter()
        fn()
        harness.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _replay(bundle.model, rec.calls)
        floor.append(time.perf_counter() - t0)
    rows = sum(int(next(v.shape[0] for v in kw.values() if torch.is_tensor(v))) for kw, _ in rec.calls)
    return statistics.median(harness), statistics.median(floor), rows, len(rec.calls)


@pytest.fixture(scope="module", params=["tiny-bert", "minilm"])
def model(request):
    torch.manual_seed(0)
    return _model(request.param)


@pytest.mark.parametrize("n_words", [10, 40, 120])
@pytest.mark.parametrize("method", ["removal", "loo", "lime", "kernel_shap", "ig"])
def test_floor_ratio(benchmark, model, method, n_words):
    if model.name == "minilm" and n_words == 120 and method in ("lime", "kernel_shap", "removal"):
        pytest.skip("minutes on 2 CPU cores")
    examples, maps, targets = _inputs(model, n_words)
    fn = _method(method, model, examples, maps, targets)
    saved = pieces.ENABLED
    try:
        pieces.ENABLED = False
        h0, f0, _, _ = _measure(fn, model)
        pieces.ENABLED = True
        h, f, rows, calls = _measure(fn, model)
    finally:
        pieces.ENABLED = saved
    benchmark.pedantic(fn, rounds=1, iterations=1)
    info = dict(model=model.name, method=method, words=n_words, ratio=round(h / f, 3),
                ratio_tokenize_all=round(h0 / f0, 3), rows=rows, calls=calls, harness_s=round(h, 4),
                floor_s=round(f, 4))
    benchmark.extra_info.update(info)
    TABLE[(model.name, method, n_words)] = info


@pytest.mark.parametrize("n_examples", [4, 16, 64])
@pytest.mark.parametrize("method", ["removal", "loo", "lime", "kernel_shap", "ig"])
def test_floor_ratio_by_examples(benchmark, method, n_examples):
    """Scaling with the number of examples: tiny-bert, 40 words, 4 / 16 / 64 examples."""
    torch.manual_seed(0)
    bundle = _model("tiny-bert")
    examples, maps, targets = _inputs(bundle, 40, n_examples)
    fn = _method(method, bundle, examples, maps, targets)
    h, f, rows, calls = _measure(fn, bundle)
    benchmark.pedantic(fn, rounds=1, iterations=1)
    info = dict(model=bundle.name, method=method, words=40, examples=n_examples, ratio=round(h / f, 3), rows=rows,
                calls=calls, harness_s=round(h, 4), floor_s=round(f, 4))
    benchmark.extra_info.update(info)
    BY_EXAMPLES[(method, n_examples)] = info


BY_EXAMPLES: dict[tuple, dict] = {}


def _table(title: str, rows: dict, columns: list[tuple[str, str, str]]) -> None:
    """Print ``rows`` (sorted by key) under ``title``; columns: (header, field, format spec)."""
    print(f"\n{title}")
    def head(h, f):
        width = int("".join(ch for ch in f.split(".")[0] if ch.isdigit()))
        return f"{h:>{width}}" if f.startswith(">") else f"{h:{width}}"

    print(" ".join(head(h, f) for h, _, f in columns))
    for k in sorted(rows):
        print(" ".join(format(rows[k][field], f) for _, field, f in columns))


def teardown_module(_module):
    if BY_EXAMPLES:
        _table("harness/floor ratio by number of examples (tiny-bert, 40 words)", BY_EXAMPLES,
               [("method", "method", "12"), ("examples", "examples", ">8"), ("ratio", "ratio", ">7.2f"),
                ("rows", "rows", ">7"), ("calls", "calls", ">6"), ("harness s", "harness_s", ">10.4f")])
    if TABLE:  # (printed once per collection of this module)
        _table("harness/floor ratio (median of interleaved rounds; memo = encode once)", TABLE,
               [("model", "model", "10"), ("method", "method", "12"), ("words", "words", ">5"),
                ("ratio", "ratio", ">7.2f"), ("no memo", "ratio_tokenize_all", ">8.2f"), ("rows", "rows", ">7"),
                ("calls", "calls", ">6")])
