"""Throughput of the built-in explainers vs naive one-input-at-a-time use of the same library.

Setup: a tiny BERT (hidden 64, 2 layers, 2 heads, intermediate 128; untrained: speed does
not depend on the weights) with a word tokenizer over the generated sentiment corpus, a tiny
masked LM of the offline recipe (:class:`harness.models.mlm.MLMRecipe`, untrained, same vocabulary),
and 32 corpus sentences of 19-21 words.  torch runs single-threaded (``ATTRIBOARD_BENCH_THREADS``,
default 1; see ``conftest.py``): on a shared 2-core machine extra threads mostly measure the
neighbours.

- ``batched``: the submission in ``submissions/<name>`` on one batch of 32 (default
  parameters: IG n_steps=50, SmoothGrad 50 samples, LIME / LIME_BERT 500 samples, Kernel SHAP 500
  samples, Partition SHAP max_evals=500, IM top-10, occlusion window 3).
- ``naive``: the same library used the textbook way, one input at a time: captum on a
  batch of one (``LayerIntegratedGradients`` with its 50 steps in one pass and the convergence
  delta; ``NoiseTunnel(Saliency)`` with its 50 samples in one pass; ``LayerDeepLift``;
  ``Occlusion`` with a (3 tokens x embedding) window and one perturbation per forward), LIME's
  ``LimeTextExplainer``, ``shap.KernelExplainer`` and ``shap.PartitionExplainer`` with a predict
  function that runs one text per forward, leave-one-out with one forward per deletion, IM with
  one masked-LM call per masked word and one forward per filled variant, LIME_BERT with one
  masked-LM call and one forward per perturbed text.  The slow naive runs use the first
  ``N_NAIVE_SLOW`` (or ``N_NAIVE_IM``) inputs; rates are per explanation either way.

- ``paired`` (integrated gradients and SmoothGrad): both of the above back to back in every
  round (the same load on a shared machine for both), median rates over 7 rounds in the
  summary rows ``<method> (paired)``; the per-round speed-ups (median, min) in ``extra_info``.

``extra_info`` of every benchmark holds ``explanations_per_second`` (wall clock),
``cpu_explanations_per_second`` (process CPU time: steadier when other jobs share the cores),
``n_examples`` and the model passes (classifier and masked-LM sequences) per explanation.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import torch

from harness.models.bundle import ModelBundle
from harness.explain_utils import example_seed, keep_words
from harness.models.mlm import MLMRecipe, WordMaskedLM, attach_mlm, tiny_masked_lm
from harness.models.reference import ModelRecipe, build_word_tokenizer, tiny_bert
from harness.core.submission import discover
from tasks.planted_sst.corpus import corpus_vocabulary, generate_corpus

N_BATCH = 32
N_NAIVE_SLOW = 8
N_NAIVE_IM = 8
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
    mlm_recipe = MLMRecipe()
    mlm_model = tiny_masked_lm(len(tokenizer), mlm_recipe).eval()
    attach_mlm(bundle, WordMaskedLM(mlm_model, tokenizer, "bench-tiny-mlm", "untrained tiny MLM", "-",
                                    mlm_recipe.max_length))
    batch = bundle.make_batch(rows, seed=0)
    targets = batch.targets.tolist()
    singles = [bundle.make_batch([r], targets=[t], seed=0) for r, t in zip(rows, targets)]
    return bundle, rows, batch, targets, singles


def _record(benchmark, throughput, method, mode, n, bundle, fn, rounds):
    start = bundle.counter.snapshot()
    t_runs, c_runs = [], []

    def timed():
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        t_runs.append(time.perf_counter() - t0)
        c_runs.append(time.process_time() - c0)

    benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=0)
    seconds, cpu = float(np.min(t_runs)), float(np.min(c_runs))
    end = bundle.counter.snapshot()
    calls = len(t_runs) * n
    info = {
        "method": method, "mode": mode, "n_examples": n, "seconds_per_call": seconds,
        "cpu_seconds_per_call": cpu, "rounds": len(t_runs),
        "explanations_per_second": n / seconds, "cpu_explanations_per_second": n / cpu,
        "model_passes_per_explanation": (end[0] - start[0]) / calls,
        "backward_passes_per_explanation": (end[1] - start[1]) / calls,
        "mlm_passes_per_explanation": (end[2] - start[2]) / calls,
        "torch_threads": torch.get_num_threads(),
    }
    benchmark.extra_info.update(info)
    throughput[(method, mode)] = info


# --- batched: the submissions ---------------------------------------------------------------

BATCHED = ["gradient", "integrated_gradients", "smoothgrad", "deeplift", "lime", "lime_bert", "kernel_shap",
           "partition_shap", "leave_one_out", "loo_empty", "input_marginalization", "occlusion"]
FAST_ROUNDS = {"gradient", "integrated_gradients", "smoothgrad", "deeplift", "leave_one_out", "loo_empty",
               "occlusion", "input_marginalization"}


@pytest.mark.parametrize("method", BATCHED)
def test_batched(benchmark, throughput, setup, method):
    bundle, rows, batch, _, _ = setup
    benchmark.group = method
    explainer = REGISTRY.get(method).instantiate()
    explainer.explain(bundle, batch)  # warm-up (not timed)
    rounds = 5 if method in ("integrated_gradients", "smoothgrad") else 3 if method in FAST_ROUNDS else 1
    _record(benchmark, throughput, method, "batched", len(rows), bundle,
            lambda: explainer.explain(bundle, batch), rounds)


# --- naive: the libraries, one input (and one forward) at a time ------------------------------

def _proba_one_at_a_time(bundle, segments_list):
    return np.concatenate([bundle.proba_of_segments([s]) for s in segments_list], 0)


def _embeds_forward(bundle):
    def forward(e, m, t):
        return bundle.proba(inputs_embeds=e, attention_mask=m, token_type_ids=t)

    return forward


def _naive_gradient(bundle, singles):
    from captum.attr import Saliency

    sal = Saliency(_embeds_forward(bundle))
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
                      method="gausslegendre", return_convergence_delta=True)


def _naive_smoothgrad(bundle, singles):
    from captum.attr import NoiseTunnel, Saliency

    nt = NoiseTunnel(Saliency(_embeds_forward(bundle)))
    for b in singles:
        e = bundle.embeddings(b.input_ids).detach()
        sigma = float(0.15 * (e.max() - e.min()))
        torch.manual_seed(example_seed(b, 0))
        nt.attribute(e.requires_grad_(), nt_type="smoothgrad", nt_samples=50, stdevs=sigma,
                     target=int(b.targets[0]), abs=False,
                     additional_forward_args=(b.attention_mask, b.token_type_ids)).norm(dim=-1)


def _naive_deeplift(bundle, singles):
    import warnings

    from captum.attr import LayerDeepLift

    cls = REGISTRY.get("deeplift").load_class()
    mod = sys.modules[cls.__module__]
    wrapper = mod._Proba(bundle.model)
    with mod.rescale_rule_for_hf_activations(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ldl = LayerDeepLift(wrapper, bundle.embeddings)
        for b in singles:
            base = b.input_ids.clone()
            base[~b.special_tokens_mask] = bundle.pad_token_id
            ldl.attribute(b.input_ids, baselines=base, target=int(b.targets[0]),
                          additional_forward_args=(b.attention_mask, b.token_type_ids),
                          return_convergence_delta=True)


def _naive_occlusion(bundle, singles):
    from captum.attr import Occlusion

    occ = Occlusion(_embeds_forward(bundle))
    for b in singles:
        e = bundle.embeddings(b.input_ids).detach()
        pad = bundle.embeddings(torch.full_like(b.input_ids, bundle.pad_token_id)).detach()
        occ.attribute(e, sliding_window_shapes=(3, e.shape[-1]), strides=(1, e.shape[-1]), baselines=pad,
                      target=int(b.targets[0]), additional_forward_args=(b.attention_mask, b.token_type_ids))


def _lime_text(b, mask_string=""):
    from lime.lime_text import LimeTextExplainer

    return LimeTextExplainer(bow=False, mask_string=mask_string, split_expression=lambda s: s.split(" "),
                             random_state=example_seed(b, 0), feature_selection="none")


def _naive_lime(bundle, singles):
    def predict(texts):
        return _proba_one_at_a_time(bundle, [(tuple(w for w in t.split(" ") if w),) for t in texts])

    for b in singles:
        words = b.words(0)
        _lime_text(b).explain_instance(" ".join(words), predict, labels=(int(b.targets[0]),),
                                       num_features=len(words), num_samples=500)


def _naive_lime_bert(bundle, singles):
    mask = bundle.tokenizer.mask_token

    def predict(texts):
        out = []
        for t in texts:
            words = t.split(" ")
            hit = [j for j, w in enumerate(words) if w == mask]
            if hit:
                fills = bundle.mlm.top_fills([(tuple(words),)], [hit], 1)[0]
                for j, f in zip(hit, fills):
                    words[j] = f[0][0]
            out.append(bundle.proba_of_segments([(tuple(words),)]))
        return np.concatenate(out, 0)

    for b in singles:
        words = b.words(0)
        _lime_text(b, mask).explain_instance(" ".join(words), predict, labels=(int(b.targets[0]),),
                                             num_features=len(words), num_samples=500)


def _coalitions_one_at_a_time(bundle, segs, t):
    def f(masks):
        return _proba_one_at_a_time(bundle, [keep_words(segs, m > 0.5) for m in np.atleast_2d(masks)])[:, t]

    return f


def _naive_shap(bundle, singles):
    import shap

    for b in singles:
        segs, t, n = b.segments[0], int(b.targets[0]), b.n_words(0)
        np.random.seed(example_seed(b, 0))
        shap.KernelExplainer(_coalitions_one_at_a_time(bundle, segs, t), np.zeros((1, n))).shap_values(
            np.ones(n), nsamples=500, l1_reg=False, silent=True)


def _naive_partition_shap(bundle, singles):
    import shap

    cls = REGISTRY.get("partition_shap").load_class()
    span_tree = sys.modules[cls.__module__].span_tree
    for b in singles:
        segs, t, n = b.segments[0], int(b.targets[0]), b.n_words(0)
        np.random.seed(example_seed(b, 0))
        masker = shap.maskers.Partition(np.zeros((1, n)), clustering=span_tree([n]))
        shap.PartitionExplainer(_coalitions_one_at_a_time(bundle, segs, t), masker)(
            np.ones((1, n)), max_evals=500, batch_size=100, silent=True)


def _naive_loo(bundle, singles):
    for b in singles:
        segs, t, n = b.segments[0], int(b.targets[0]), b.n_words(0)
        p = bundle.proba_of_segments([segs])[0, t]
        [p - bundle.proba_of_segments([keep_words(segs, [k != j for k in range(n)])])[0, t] for j in range(n)]


def _naive_loo_log_odds(bundle, singles):
    for b in singles:
        segs, t, n = b.segments[0], int(b.targets[0]), b.n_words(0)
        lo = lambda p: np.log2(p / (1 - p))  # noqa: E731
        p = bundle.proba_of_segments([segs])[0, t]
        [lo(p) - lo(bundle.proba_of_segments([keep_words(segs, [k != j for k in range(n)])])[0, t])
         for j in range(n)]


def _naive_im(bundle, singles):
    for b in singles:
        segs, t, n = b.segments[0], int(b.targets[0]), b.n_words(0)
        lo = lambda p: np.log2(p / (1 - p))  # noqa: E731
        p = bundle.proba_of_segments([segs])[0, t]
        for j in range(n):
            fills = bundle.mlm.top_fills([segs], [[j]], 10)[0][0]
            e = 0.0
            for w, pw in fills:
                variant = (tuple(w if k == j else x for k, x in enumerate(segs[0])),)
                e += pw * bundle.proba_of_segments([variant])[0, t]
            lo(p) - lo(e)


NAIVE = {
    "gradient": (_naive_gradient, N_BATCH, 3),
    "integrated_gradients": (_naive_ig, N_BATCH, 3),
    "smoothgrad": (_naive_smoothgrad, N_BATCH, 3),
    "deeplift": (_naive_deeplift, N_BATCH, 2),
    "occlusion": (_naive_occlusion, N_BATCH, 1),
    "lime": (_naive_lime, N_NAIVE_SLOW, 1),
    "lime_bert": (_naive_lime_bert, N_NAIVE_SLOW // 2, 1),
    "kernel_shap": (_naive_shap, N_NAIVE_SLOW, 1),
    "partition_shap": (_naive_partition_shap, N_NAIVE_SLOW, 1),
    "leave_one_out": (_naive_loo, N_BATCH, 1),
    "loo_empty": (_naive_loo_log_odds, N_BATCH, 1),
    "input_marginalization": (_naive_im, N_NAIVE_IM, 1),
}


@pytest.mark.parametrize("method", list(NAIVE))
def test_naive(benchmark, throughput, setup, method):
    bundle, _, _, _, singles = setup
    fn, n, rounds = NAIVE[method]
    benchmark.group = method
    fn(bundle, singles[:1])  # warm-up (imports, numba compilation)
    _record(benchmark, throughput, method, "naive", n, bundle, lambda: fn(bundle, singles[:n]), rounds)


# --- paired: batched and naive back to back, round by round ----------------------------------

PAIRED = ["integrated_gradients", "smoothgrad"]
PAIRED_ROUNDS = 7


@pytest.mark.parametrize("method", PAIRED)
def test_paired(benchmark, throughput, setup, method):
    """The submission on the batch of 32, then the naive loop on the same 32 inputs, in every
    round, so that both see the same load of a shared machine; the summary row
    ``<method> (paired)`` gives the median rates over the rounds (``extra_info``: the median of
    the per-round speed-ups too)."""
    bundle, rows, batch, _, singles = setup
    benchmark.group = method
    explainer = REGISTRY.get(method).instantiate()
    naive = NAIVE[method][0]
    explainer.explain(bundle, batch)  # warm-up (not timed)
    naive(bundle, singles[:1])
    runs = {"batched": [], "naive": []}
    passes = {"batched": np.zeros(3), "naive": np.zeros(3)}

    def timed(mode, fn):
        start = np.array(bundle.counter.snapshot())
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        runs[mode].append((time.perf_counter() - t0, time.process_time() - c0))
        passes[mode] += np.array(bundle.counter.snapshot()) - start

    def one_round():
        timed("batched", lambda: explainer.explain(bundle, batch))
        timed("naive", lambda: naive(bundle, singles))

    benchmark.pedantic(one_round, rounds=PAIRED_ROUNDS, iterations=1, warmup_rounds=0)
    n = len(rows)
    for mode, r in runs.items():
        wall, cpu = float(np.median([w for w, _ in r])), float(np.median([c for _, c in r]))
        throughput[(f"{method} (paired)", mode)] = {
            "method": method, "mode": mode, "n_examples": n, "rounds": len(r),
            "explanations_per_second": n / wall, "cpu_explanations_per_second": n / cpu,
            "model_passes_per_explanation": passes[mode][0] / (n * len(r)),
            "backward_passes_per_explanation": passes[mode][1] / (n * len(r)),
            "mlm_passes_per_explanation": passes[mode][2] / (n * len(r))}
    ratios = [wn / wb for (wb, _), (wn, _) in zip(runs["batched"], runs["naive"])]
    cpu_ratios = [cn / cb for (_, cb), (_, cn) in zip(runs["batched"], runs["naive"])]
    benchmark.extra_info.update({
        "method": method, "mode": "paired", "n_examples": n, "rounds": len(ratios),
        "batched_explanations_per_second_median": throughput[(f"{method} (paired)", "batched")]["explanations_per_second"],
        "naive_explanations_per_second_median": throughput[(f"{method} (paired)", "naive")]["explanations_per_second"],
        "speedup_median": float(np.median(ratios)), "cpu_speedup_median": float(np.median(cpu_ratios)),
        "speedup_min": float(np.min(ratios)), "torch_threads": torch.get_num_threads()})
