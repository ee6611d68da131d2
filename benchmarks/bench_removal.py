"""Speed of the removal-metric engine (:mod:`harness.metrics.removal`): batched vs per example.

Setup: a tiny BERT (hidden 64, 2 layers, 2 heads, intermediate 128; untrained, speed does
not depend on the weights) with a word tokenizer over the generated NLI corpus, and
``N_EXAMPLES`` generated premise/hypothesis pairs (MultiNLI style, 14-32 words) with seeded
random attribution maps.  Every mode computes the same numbers: the removal curves behind
comprehensiveness, sufficiency (AOPC bins 1/5/10/20/50%), their normalised versions and
Deletion / Insertion AUC (20%), operator ``delete``.

- ``batched``: :func:`harness.metrics.removal.removal_curves` on all examples at once (all
  variants of all examples in one :func:`harness.models.removal.removed_proba` call).
- ``per_example_per_metric``: the usual per-example loop: for each example, each of the six
  metrics evaluates its own perturbations of that example in one model call, with the
  unperturbed input (like ferret's evaluators: one batched call per explanation and metric).
- ``per_example``: the engine itself called once per example (all six metrics' variants of an
  example, deduplicated, in one call): isolates the gain of batching *across examples*.
- ``per_variant``: one forward pass per perturbed input (the textbook loop), on the first
  ``N_SLOW`` examples; rates are per example either way.

``extra_info`` holds ``examples_per_second``, ``forward_sequences`` and, for the slower modes,
``speedup_of_batched``.  ``python benchmarks/bench_removal.py`` prints the same comparison
without pytest.  The comparison with ferret's evaluators (separate virtualenv) is
``benchmarks/ferret_compare.py``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from harness.metrics import removal as rm
from harness.models.bundle import ModelBundle
from harness.models.reference import ModelRecipe, build_word_tokenizer, tiny_bert
from harness.protocols import Example, MetricInputs
from harness.models.removal import removed_proba
from tasks.nli.corpus import generate_nli_corpus, nli_vocabulary

N_EXAMPLES = 128
N_SLOW = 16
RECIPE = ModelRecipe(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
RATES: dict[str, float] = {}


def build_setup(n: int = N_EXAMPLES, seed: int = 0):
    pairs = generate_nli_corpus(n, seed=seed, style="mnli")
    tokenizer = build_word_tokenizer(sorted(nli_vocabulary()), RECIPE.max_length)
    bundle = ModelBundle(tiny_bert(len(tokenizer), 3, RECIPE), tokenizer, "bench-tiny-bert", 3,
                         max_length=RECIPE.max_length)
    rng = np.random.default_rng(seed)
    examples = [Example(f"b{i}", p.segments) for i, p in enumerate(pairs)]
    maps = [rng.standard_normal(e.n_words) for e in examples]
    targets = bundle.proba_of_segments([e.segments for e in examples]).argmax(-1).tolist()
    return bundle, MetricInputs(examples, maps, [None] * n, model=bundle, targets=targets)


def batched(inputs: MetricInputs):
    return rm.removal_curves(inputs, "delete", use_cache=False)


def per_example(inputs: MetricInputs):
    return [rm.removal_curves(MetricInputs([e], [m], [None], model=inputs.model, targets=[t]), "delete",
                              use_cache=False)[0]
            for e, m, t in zip(inputs.examples, inputs.word_scores, inputs.targets)]


def _metric_variants(n: int, order: np.ndarray):
    """Per metric, the removal masks it evaluates for one example (its own full input first)."""
    def removed(j):
        r = np.zeros(n, dtype=bool)
        r[order[:j]] = True
        return r

    def kept(j):
        return ~removed(j)

    bins = [rm.n_words_for(k, n) for k in rm.DEFAULT_BINS]
    steps = range(1, rm.n_words_for(rm.DEFAULT_CURVE_FRACTION, n) + 1)
    full, empty = removed(0), kept(0)
    return {"comprehensiveness": [full] + [removed(j) for j in bins],
            "sufficiency": [full] + [kept(j) for j in bins],
            "norm_comprehensiveness": [full, empty] + [removed(j) for j in bins],
            "norm_sufficiency": [full, empty] + [kept(j) for j in bins],
            "deletion_auc": [full] + [removed(j) for j in steps],
            "insertion_auc": [full, empty] + [kept(j) for j in steps]}


def per_example_per_metric(inputs: MetricInputs):
    out = []
    for e, m, t in zip(inputs.examples, inputs.word_scores, inputs.targets):
        variants = _metric_variants(m.size, rm.attribution_order(m))
        out.append({name: removed_proba(inputs.model, [e.segments] * len(masks), masks, "delete")[:, t]
                    for name, masks in variants.items()})
    return out


def per_variant(inputs: MetricInputs):
    """One model call per perturbed input (what a straightforward implementation does)."""
    out = []
    for e, m, t in zip(inputs.examples, inputs.word_scores, inputs.targets):
        n, order = m.size, rm.attribution_order(m)
        values = {}
        for j in rm._needed_counts(n, rm.DEFAULT_BINS, rm.DEFAULT_CURVE_FRACTION):
            for kind in ("removed", "kept"):
                remove = np.zeros(n, dtype=bool)
                remove[order[:j]] = True
                if kind == "kept":
                    remove = ~remove
                values[(kind, j)] = removed_proba(inputs.model, [e.segments], [remove], "delete")[0, t]
        out.append(values)
    return out


def _time(fn, rounds: int) -> float:
    runs = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return float(np.min(runs))


@pytest.fixture(scope="module")
def setup():
    return build_setup()


def _bench(benchmark, setup, mode, fn, n, rounds):
    bundle, inputs = setup
    sub = MetricInputs(inputs.examples[:n], inputs.word_scores[:n], [None] * n, model=bundle, targets=inputs.targets[:n])
    start = bundle.counter.forward
    runs = []

    def timed():
        t0 = time.perf_counter()
        fn(sub)
        runs.append(time.perf_counter() - t0)

    benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=1)
    rate = n / float(np.min(runs))   # min over rounds: the least disturbed run on a shared CPU
    RATES[mode] = rate
    info = {"mode": mode, "n_examples": n, "examples_per_second": rate,
            "forward_sequences": (bundle.counter.forward - start) / (len(runs) + 1)}
    if mode != "batched" and "batched" in RATES:
        info["speedup_of_batched"] = RATES["batched"] / rate
        print(f"\nremoval engine: batched {RATES['batched']:.1f} examples/s vs {mode} {rate:.1f} examples/s "
              f"-> {info['speedup_of_batched']:.1f}x")
    benchmark.extra_info.update(info)


def test_removal_batched(benchmark, setup):
    _bench(benchmark, setup, "batched", batched, N_EXAMPLES, rounds=5)


def test_removal_per_example_per_metric(benchmark, setup):
    _bench(benchmark, setup, "per_example_per_metric", per_example_per_metric, N_EXAMPLES, rounds=2)


def test_removal_per_example(benchmark, setup):
    _bench(benchmark, setup, "per_example", per_example, N_EXAMPLES, rounds=3)


def test_removal_per_variant(benchmark, setup):
    _bench(benchmark, setup, "per_variant", per_variant, N_SLOW, rounds=2)


def main() -> None:
    bundle, inputs = build_setup()
    slow = MetricInputs(inputs.examples[:N_SLOW], inputs.word_scores[:N_SLOW], [None] * N_SLOW, model=bundle,
                        targets=inputs.targets[:N_SLOW])
    batched(inputs)  # warm-up
    rates = {"batched": N_EXAMPLES / _time(lambda: batched(inputs), 5),
             "per_example_per_metric": N_EXAMPLES / _time(lambda: per_example_per_metric(inputs), 2),
             "per_example": N_EXAMPLES / _time(lambda: per_example(inputs), 3),
             "per_variant": N_SLOW / _time(lambda: per_variant(slow), 2)}
    for mode, rate in rates.items():
        print(f"{mode:<24} {rate:>9.1f} examples/s   batched speed-up {rates['batched'] / rate:>6.1f}x")


if __name__ == "__main__":
    main()
