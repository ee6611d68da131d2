"""The fragility attack: one batched explainer call per level vs candidate-by-candidate.

Setup: an untrained tiny BERT (hidden 64, 2 layers; speed does not depend on the weights)
with a word tokenizer over the generated corpus and the project's synonym table, 8 corpus
sentences of 12-16 words, the harness constraint backend with the corpus synonym table
(model-input embedding, counter-fitted; no POS / sentence encoder: this measures the
explanation loop, not the resources), objectives L2, Delta-LOM and random.

- ``batched``: :class:`tasks.fragility.attack.Explanations` with no batch limit: the
  candidates of one level of every input and objective go to the explainer in one call.
- ``naive``: the same attack with ``max_batch=1``: one explainer call per candidate.

Both runs must select the same candidates (explainers are batch-composition invariant).
``extra_info``: explanations per second (explainer time only, wall and CPU), explainer
calls, seconds of the whole attack; the speed-up is printed in the throughput summary at the
end (``benchmarks/conftest.py``).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from harness.models.bundle import ModelBundle
from tasks.fragility import resources as R
from tasks.fragility.attack import Explanations, ExplainFooler
from tasks.fragility.constraints import ConstraintConfig, HarnessBackend
from tasks.fragility.corpus_synonyms import CORPUS_SYNONYMS, table_vocabulary
from harness.models.reference import ModelRecipe, build_word_tokenizer, tiny_bert
from harness.core.submission import discover
from tasks.planted_sst.corpus import corpus_vocabulary, generate_corpus

N_INPUTS = 8
WORDS = (12, 16)
RECIPE = ModelRecipe(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
REGISTRY = discover()
SELECTED: dict[tuple[str, str], list] = {}


@pytest.fixture(scope="module")
def setup():
    corpus = generate_corpus(2000, seed=0)
    rows = [tuple(t.split()) for t, _ in corpus if WORDS[0] <= len(t.split()) <= WORDS[1]][:N_INPUTS]
    vocab = sorted(corpus_vocabulary() | table_vocabulary() | {w for r in rows for w in r})
    tokenizer = build_word_tokenizer(vocab, RECIPE.max_length)
    bundle = ModelBundle(tiny_bert(len(tokenizer), 2, RECIPE), tokenizer, "bench-tiny-bert", 2,
                         max_length=RECIPE.max_length)
    resource = R.SubstituteResource.from_synonyms(CORPUS_SYNONYMS, R.model_input_vectors(bundle), "model-input",
                                                  "corpus")
    subs = resource.restrict({w for r in rows for w in r}, k=50, known=R.known_to_tokenizer(tokenizer))
    backend = HarnessBackend(subs, R.ENGLISH_STOPWORDS, ConstraintConfig(), None, None)
    targets = bundle.proba_of_segments([(r,) for r in rows]).argmax(-1).tolist()
    return bundle, rows, targets, backend


@pytest.mark.parametrize("mode", ["batched", "naive"])
@pytest.mark.parametrize("method", ["integrated_gradients", "gradient_x_input"])
def test_attack(benchmark, throughput, setup, method, mode):
    bundle, rows, targets, backend = setup
    explainer = REGISTRY.get(method).instantiate()
    stats = {}

    def run():
        expl = Explanations(explainer, bundle, seed=0, max_batch=None if mode == "batched" else 1)
        attack = ExplainFooler(backend, bundle, expl, seed=0)
        t0 = time.perf_counter()
        res = attack.run([(r,) for r in rows], targets, list(range(len(rows))))
        stats.update(seconds=time.perf_counter() - t0, explain_seconds=expl.seconds, calls=expl.n_calls,
                     explained=expl.n_explained, cpu=expl.cpu_seconds, forward=expl.forward)
        return [[lv.words for lv in r.levels[o]] for r in res for o in sorted(r.levels)]

    selected = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    SELECTED[(method, mode)] = selected
    other = SELECTED.get((method, "naive" if mode == "batched" else "batched"))
    if other is not None:
        assert other == selected, "batched and one-by-one explanation selected different candidates"
    info = {"method": f"fragility[{method}]", "mode": mode, "n_examples": stats["explained"],
            "explainer_calls": stats["calls"], "attack_seconds": stats["seconds"],
            "explain_seconds": stats["explain_seconds"],
            "explanations_per_second": stats["explained"] / max(stats["explain_seconds"], 1e-9),
            "cpu_explanations_per_second": stats["explained"] / max(stats["cpu"], 1e-9),
            "model_passes_per_explanation": stats["forward"] / max(stats["explained"], 1),
            "mlm_passes_per_explanation": 0.0,
            "torch_threads": torch.get_num_threads()}
    benchmark.extra_info.update(info)
    throughput[(f"fragility[{method}]", "batched" if mode == "batched" else "naive")] = info
    assert np.isfinite(info["explanations_per_second"])
