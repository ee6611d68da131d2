"""Throughput of the built-in explainers vs naive one-input-at-a-time use of the same library.

Setup: a tiny BERT (hidden 64, 2 layers, 2 heads, intermediate 128; untrained: speed does
not depend on the weights) with a word tokenizer over the generated sentiment corpus, and
32 corpus sentences of 19-21 words.

- ``batched``: the submission in ``submissions/<name>`` on one batch of 32 (default
  parameters: IG n_steps=50 / internal_batch_size=512, LIME 500 samples, Kernel SHAP 500
  samples).
- ``naive``: the same library used the textbook way, one input at a time: captum on a
  batch of one (IG without internal batching, i.e. its 50 steps in one pass), LIME's
  ``LimeTextExplainer`` and ``shap.KernelExplainer`` with a predict function that runs one
  text per forward, leave-one-out with one forward per deletion.  The slow naive LIME /
  SHAP runs use the first ``N_NAIVE_SLOW`` inputs; rates are per explanation either way.

``extra_info`` of every benchmark holds ``explanations_per_second``, ``n_examples`` and the
model passes (sequences through the network) per explanation.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from harness.bundle import ModelBundle
from harness.explain_utils import example_seed, keep_words
from harness.models import ModelRecipe, build_word_tokenizer, tiny_bert
from harness.submission import discover
from tasks.sentiment_corpus import corpus_vocabulary, generate_corpus

N_BATCH = 32
N_NAIVE_SLOW = 8
WORDS = (19, 21)
RECIPE = ModelRecipe(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
REGISTRY = discover()


@pytest.fixture(scope="module")
def setup():
    corpus = generate_corpus(2000, seed=0)
    rows = [(tuple(t.split()),) for t, _ in corpus if WORDS[0] <= len(t.split()) <= WORDS[1]][:N_BATCH]
    assert len(rows) == N_BATCH
    vocab = sorted(corpus_vocabulary() | {w for segs in rows for w in segs[0]})
    tokenizer = build_word_tokenizer(vocab, RECIPE.max_length)
    model = tiny_bert(len(tokenizer), 2, RECIPE)
    bundle = ModelBundle(model, tokenizer, "bench-tiny-bert", 2, max_length=RECIPE.max_length)
    batch = bundle.make_batch(rows, seed=0)
    targets = batch.targets.tolist()
    singles = [bundle.make_batch([r], targets=[t], seed=0) for r, t in zip(rows, targets)]
    return bundle, rows, batch, targets, singles


def _record(benchmark, throughput, method, mode, n, bundle, fn, rounds):
    start = bundle.counter.forward
    t_runs = []

    def timed():
        t0 = time.perf_counter()
        fn()
        t_runs.append(time.perf_counter() - t0)

    benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=0)
    seconds = float(np.mean(t_runs))
    info = {
        "method": method, "mode": mode, "n_examples": n, "seconds_per_call": seconds,
        "explanations_per_second": n / seconds,
        "model_passes_per_explanation": (bundle.counter.forward - start) / (len(t_runs) * n),
        "torch_threads": torch.get_num_threads(),
    }
    benchmark.extra_info.update(info)
    throughput[(method, mode)] = info


# --- batched: the submissions ---------------------------------------------------------------

@pytest.mark.parametrize("method", ["gradient", "integrated_gradients", "lime", "kernel_shap", "leave_one_out"])
def test_batched(benchmark, throughput, setup, method):
    bundle, rows, batch, _, _ = setup
    benchmark.group = method
    explainer = REGISTRY.get(method).instantiate()
    explainer.explain(bundle, batch)  # warm-up (not timed)
    rounds = 3 if method in ("gradient", "integrated_gradients", "leave_one_out") else 1
    _record(benchmark, throughput, method, "batched", len(rows), bundle,
            lambda: explainer.explain(bundle, batch), rounds)


# --- naive: the libraries, one input (and one forward) at a time ------------------------------

def _proba_one_at_a_time(bundle, segments_list):
    return np.concatenate([bundle.proba_of_segments([s]) for s in segments_list], 0)


def _naive_gradient(bundle, singles):
    from captum.attr import Saliency

    def forward(e, m, t):
        return bundle.proba(inputs_embeds=e, attention_mask=m, token_type_ids=t)

    sal = Saliency(forward)
    for b in singles:
        e = bundle.embeddings(b.input_ids).detach().requires_grad_()
        sal.attribute(e, target=int(b.targets[0]), abs=False,
                      additional_forward_args=(b.attention_mask, b.token_type_ids)).norm(dim=-1)


def _naive_ig(bundle, singles):
    from captum.attr import LayerIntegratedGradients

    def forward(ids, m, t):
        return bundle.proba(input_ids=ids, attention_mask=m, token_type_ids=t)

    lig = LayerIntegratedGradients(forward, bundle.embeddings)
    for b in singles:
        base = b.input_ids.clone()
        base[~b.special_tokens_mask] = bundle.pad_token_id
        lig.attribute(b.input_ids, baselines=base, target=int(b.targets[0]),
                      additional_forward_args=(b.attention_mask, b.token_type_ids), n_steps=50,
                      return_convergence_delta=True)


def _naive_lime(bundle, singles):
    from lime.lime_text import LimeTextExplainer

    def predict(texts):
        return _proba_one_at_a_time(bundle, [(tuple(w for w in t.split(" ") if w),) for t in texts])

    for b in singles:
        words = b.words(0)
        lte = LimeTextExplainer(bow=False, mask_string="", split_expression=lambda s: s.split(" "),
                                random_state=example_seed(b, 0), feature_selection="none")
        lte.explain_instance(" ".join(words), predict, labels=(int(b.targets[0]),),
                             num_features=len(words), num_samples=500)


def _naive_shap(bundle, singles):
    import shap

    for b in singles:
        segs, t, n = b.segments[0], int(b.targets[0]), b.n_words(0)

        def f(masks, segs=segs, t=t):
            return _proba_one_at_a_time(bundle, [keep_words(segs, m > 0.5) for m in np.atleast_2d(masks)])[:, t]

        np.random.seed(example_seed(b, 0))
        shap.KernelExplainer(f, np.zeros((1, n))).shap_values(np.ones(n), nsamples=500, l1_reg=False,
                                                              silent=True)


def _naive_loo(bundle, singles):
    for b in singles:
        segs, t, n = b.segments[0], int(b.targets[0]), b.n_words(0)
        p = bundle.proba_of_segments([segs])[0, t]
        [p - bundle.proba_of_segments([keep_words(segs, [k != j for k in range(n)])])[0, t] for j in range(n)]


NAIVE = {
    "gradient": (_naive_gradient, N_BATCH, 3),
    "integrated_gradients": (_naive_ig, N_BATCH, 1),
    "lime": (_naive_lime, N_NAIVE_SLOW, 1),
    "kernel_shap": (_naive_shap, N_NAIVE_SLOW, 1),
    "leave_one_out": (_naive_loo, N_BATCH, 1),
}


@pytest.mark.parametrize("method", list(NAIVE))
def test_naive(benchmark, throughput, setup, method):
    bundle, _, _, _, singles = setup
    fn, n, rounds = NAIVE[method]
    benchmark.group = method
    _record(benchmark, throughput, method, "naive", n, bundle, lambda: fn(bundle, singles[:n]), rounds)
