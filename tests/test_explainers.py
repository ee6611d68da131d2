"""The built-in explainer submissions: conformance suite plus hand-checked values.

The tiny test BERT of :mod:`harness.testing` is untrained and almost constant (target
probabilities move by ~1e-6 when words change), so checks on it alone would pass for
nearly anything.  The value checks below therefore also run on a *sensitive* copy of it
(linear weights x20, word embeddings x10), whose predictions and attributions are of
order 0.1.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from harness.explain_utils import example_seed, keep_words
from harness.core.outputs import check_attributions
from harness.core.submission import discover
from harness.testing import TINY_PAIRS, TINY_SENTENCES, tiny_bundle
from harness.engine.validation import BATCH_ATOL, BATCH_RTOL, validate

REGISTRY = discover()
BUILTIN_EXPLAINERS = ["gradient", "gradient_x_input", "integrated_gradients", "lime", "kernel_shap",
                      "leave_one_out"]
# cheaper settings for the repeated runs below (validation uses the declared defaults)
FAST = {"lime": {"num_samples": 200}, "kernel_shap": {"nsamples": 200}}
IN_VOCAB = [s for s in TINY_SENTENCES if "unseen" not in s[0]]


def make(name: str, **overrides):
    return REGISTRY.get(name).instantiate(**{**FAST.get(name, {}), **overrides})


def sensitive_bundle():
    return tiny_bundle(sensitive=True)


@pytest.fixture(scope="module")
def sharp():
    return sensitive_bundle()


@pytest.fixture(scope="module")
def plain():
    return tiny_bundle()


def manual_inputs(bundle, segments, baseline: bool = False):
    """[CLS] a.. [SEP] (b.. [SEP]) built by hand: ids, mask, segment ids, (1, T) each."""
    tok = bundle.tokenizer
    tokens, types = ["[CLS]"], [0]
    for k, seg in enumerate(segments):
        words = ["[PAD]"] * len(seg) if baseline else list(seg)
        tokens += words + ["[SEP]"]
        types += [k] * (len(seg) + 1)
    ids = torch.tensor([tok.convert_tokens_to_ids(tokens)])
    return ids, torch.ones_like(ids), torch.tensor([types])


@torch.no_grad()
def manual_proba(bundle, segments, baseline: bool = False) -> np.ndarray:
    ids, mask, types = manual_inputs(bundle, segments, baseline)
    return bundle.proba(input_ids=ids, attention_mask=mask, token_type_ids=types)[0].double().numpy()


def raw_scores(explainer, bundle, batch):
    return check_attributions(explainer.explain(bundle, batch), batch)


# --- (a) the conformance suite, for every submission folder ------------------------------

def test_builtin_explainers_are_discovered():
    missing = set(BUILTIN_EXPLAINERS) - set(REGISTRY.names())
    assert not missing, f"missing submissions: {sorted(missing)}"


@pytest.mark.parametrize("name", REGISTRY.names())
def test_validation_passes(name):
    report = validate(REGISTRY.get(name))
    print(report.render())
    assert report.passed, report.render()


# --- batch invariance and pairs where the model is not flat ----------------------------

@pytest.mark.parametrize("name", BUILTIN_EXPLAINERS)
@pytest.mark.parametrize("inputs", ["sentences", "pairs"])
def test_batch_invariance_on_sensitive_model(sharp, name, inputs):
    rows = TINY_SENTENCES if inputs == "sentences" else TINY_PAIRS
    explainer = make(name)
    full = raw_scores(explainer, sharp, sharp.make_batch(rows, seed=3))
    rev = raw_scores(explainer, sharp, sharp.make_batch(rows[::-1], seed=3))[::-1]
    for i, segs in enumerate(rows):
        alone = raw_scores(explainer, sharp, sharp.make_batch([segs], seed=3))[0]
        np.testing.assert_allclose(full[i], alone, atol=BATCH_ATOL, rtol=BATCH_RTOL, err_msg=f"example {i} alone")
        np.testing.assert_allclose(full[i], rev[i], atol=BATCH_ATOL, rtol=BATCH_RTOL, err_msg=f"example {i} reversed")
    assert max(float(np.abs(s).max()) for s in full if s.size) > 1e-3, "attributions unexpectedly flat"


@pytest.mark.parametrize("name", BUILTIN_EXPLAINERS)
def test_empty_input(sharp, name):
    """An input with no words ([CLS] [SEP], or [CLS] [SEP] [SEP]) is valid and scores nothing."""
    for rows in ([((),), (("great", "acting"),)], [((), ()), (("a", "man"), ())]):
        batch = sharp.make_batch(rows)
        attr = make(name).explain(sharp, batch)
        raw = check_attributions(attr, batch)
        if attr.level == "word":
            assert raw[0].shape == (0,) and raw[1].shape == (2,)
        else:
            assert np.all(raw[0] == 0)


# --- (b) hand-checked values -------------------------------------------------------------

@pytest.mark.parametrize("rows", [TINY_SENTENCES, TINY_PAIRS], ids=["sentences", "pairs"])
def test_leave_one_out_exact(sharp, rows):
    rows = [r for r in rows if "unseen" not in r[0]]
    batch = sharp.make_batch(rows)
    scores = make("leave_one_out").explain(sharp, batch).scores
    for i, segs in enumerate(rows):
        t = int(batch.targets[i])
        n = batch.n_words(i)
        p_full = manual_proba(sharp, segs)[t]
        expected = [p_full - manual_proba(sharp, keep_words(segs, [k != j for k in range(n)]))[t]
                    for j in range(n)]
        np.testing.assert_allclose(scores[i], expected, atol=1e-5)
    assert max(float(np.abs(s).max()) for s in scores) > 0.05


def test_leave_one_out_rejects_unknown_operator():
    with pytest.raises(ValueError, match="unknown operator 'masking'"):
        REGISTRY.get("leave_one_out").instantiate(operator="masking")


@pytest.mark.parametrize("which", ["plain", "sharp"])
@pytest.mark.parametrize("rows", [IN_VOCAB, TINY_PAIRS], ids=["sentences", "pairs"])
def test_integrated_gradients_completeness(request, which, rows):
    bundle = request.getfixturevalue(which)
    batch = bundle.make_batch(rows)
    attr = make("integrated_gradients").explain(bundle, batch)
    delta = attr.extras["convergence_delta"]
    assert delta.shape == (len(rows),)
    sums = attr.scores.sum(1)
    for i, segs in enumerate(rows):
        t = int(batch.targets[i])
        f_x = manual_proba(bundle, segs)[t]
        f_base = manual_proba(bundle, segs, baseline=True)[t]
        gap = abs(f_x - f_base - sums[i])
        assert gap <= delta[i] + 1e-5, (i, gap, delta[i])
        assert abs(gap - delta[i]) < 1e-5  # the reported delta is this gap
    print(f"IG |convergence delta| on {which} model: max {delta.max():.3g}, mean {delta.mean():.3g}")
    assert float(delta.max()) < 0.05


def test_integrated_gradients_internal_batch_size_does_not_matter(sharp):
    batch = sharp.make_batch(TINY_SENTENCES)
    a = make("integrated_gradients", internal_batch_size=6).explain(sharp, batch)
    b = make("integrated_gradients", internal_batch_size=10_000).explain(sharp, batch)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)


def _manual_gradient(bundle, segs, target):
    ids, mask, types = manual_inputs(bundle, segs)
    embeds = bundle.embeddings(ids).detach().requires_grad_()
    p = bundle.proba(inputs_embeds=embeds, attention_mask=mask, token_type_ids=types)[0, target]
    (grad,) = torch.autograd.grad(p, embeds)
    return embeds[0].detach().double().numpy(), grad[0].double().numpy()


@pytest.mark.parametrize("rows", [IN_VOCAB, TINY_PAIRS], ids=["sentences", "pairs"])
def test_gradient_x_input_and_saliency_match_autograd(sharp, rows):
    batch = sharp.make_batch(rows)
    gxi = make("gradient_x_input").explain(sharp, batch).scores
    sal = make("gradient").explain(sharp, batch).scores
    special = batch.special_tokens_mask.numpy()
    for i, segs in enumerate(rows):
        e, g = _manual_gradient(sharp, segs, int(batch.targets[i]))
        T = e.shape[0]
        words = ~special[i, :T]
        np.testing.assert_allclose(gxi[i, :T][words], (g * e).sum(-1)[words], rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(sal[i, :T][words], np.linalg.norm(g, axis=-1)[words], rtol=1e-4, atol=1e-7)
        assert np.all(gxi[i][special[i]] == 0) and np.all(sal[i][special[i]] == 0)
    assert np.abs(gxi).max() > 1e-3


@pytest.mark.parametrize("name", ["lime", "kernel_shap"])
def test_sampling_explainers_deterministic_and_alone(sharp, name):
    batch = sharp.make_batch(TINY_SENTENCES, seed=7)
    first = make(name).explain(sharp, batch).scores
    again = make(name).explain(sharp, sharp.make_batch(TINY_SENTENCES, seed=7)).scores
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    for i, segs in enumerate(TINY_SENTENCES):
        alone = make(name).explain(sharp, sharp.make_batch([segs], seed=7)).scores[0]
        np.testing.assert_allclose(first[i], alone, atol=1e-6)
    # the seed is actually used: another seed gives other scores on the long example
    other = make(name).explain(sharp, sharp.make_batch(TINY_SENTENCES, seed=8)).scores
    assert not np.allclose(first[3], other[3])


def test_lime_matches_lime_text_explainer(sharp):
    """Same sampling, deletions and ridge fit as the library's own text explainer."""
    from lime.lime_text import LimeTextExplainer

    num_samples = 300
    batch = sharp.make_batch(IN_VOCAB, seed=1)
    ours = make("lime", num_samples=num_samples).explain(sharp, batch).scores

    def predict(texts):
        return sharp.proba_of_segments([(tuple(w for w in t.split(" ") if w),) for t in texts])

    for i in range(len(batch)):
        words = batch.words(i)
        target = int(batch.targets[i])
        ref_explainer = LimeTextExplainer(bow=False, mask_string="", split_expression=lambda s: s.split(" "),
                                          random_state=example_seed(batch, i), feature_selection="none")
        exp = ref_explainer.explain_instance(" ".join(words), predict, labels=(target,),
                                             num_features=len(words), num_samples=num_samples)
        ref = np.zeros(len(words))
        for j, coef in exp.local_exp[target]:
            ref[j] = coef
        np.testing.assert_allclose(ours[i], ref, atol=1e-5)


def _exact_shapley(bundle, segs, target):
    n = sum(len(s) for s in segs)
    coalitions = list(itertools.product([False, True], repeat=n))
    value = dict(zip(coalitions, bundle.proba_of_segments([keep_words(segs, c) for c in coalitions])[:, target]))
    phi = np.zeros(n)
    for c in coalitions:
        size = sum(c)
        for j in range(n):
            if not c[j]:
                with_j = tuple(True if k == j else c[k] for k in range(n))
                w = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
                phi[j] += w * (value[with_j] - value[c])
    return phi


def test_kernel_shap_exact_on_short_inputs(sharp):
    """With every coalition enumerated (2^n - 2 <= nsamples) Kernel SHAP is the exact Shapley value."""
    rows = [r for r in TINY_SENTENCES + TINY_PAIRS if sum(map(len, r)) <= 8]
    rows_by_kind = [[r for r in rows if len(r) == k] for k in (1, 2)]
    explainer = REGISTRY.get("kernel_shap").instantiate()  # nsamples=500 >= 2^8 - 2
    for kind_rows in rows_by_kind:
        batch = sharp.make_batch(kind_rows)
        scores = explainer.explain(sharp, batch).scores
        for i, segs in enumerate(kind_rows):
            t = int(batch.targets[i])
            np.testing.assert_allclose(scores[i], _exact_shapley(sharp, segs, t), atol=1e-5)


def test_kernel_shap_efficiency_and_global_rng(sharp):
    batch = sharp.make_batch(TINY_SENTENCES)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    scores = make("kernel_shap").explain(sharp, batch).scores
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # caller's RNG untouched
    for i, segs in enumerate(TINY_SENTENCES):
        t = int(batch.targets[i])
        empty = tuple(() for _ in segs)
        p = sharp.proba_of_segments([segs, empty])[:, t]
        assert abs(scores[i].sum() - (p[0] - p[1])) < 1e-5
        assert np.count_nonzero(scores[i]) == len(scores[i])  # l1_reg=False: every word scored


@pytest.mark.parametrize("n,p", [(500, 40), (60, 7), (30, 80)])
def test_lime_closed_form_surrogate_equals_limebase_and_sklearn(n, p):
    """The closed-form weighted ridge and distances equal lime's LimeBase (Ridge(alpha=1), sklearn's
    cosine distances), including zero rows and more features than samples (the dual solve)."""
    from functools import partial

    from lime.lime_base import LimeBase
    from sklearn.linear_model import Ridge
    from sklearn.metrics.pairwise import pairwise_distances

    from harness.explainers.lime_sampling import (cosine_distances_to_first, fit_surrogate, lime_text_kernel,
                                                  sample_masks, weighted_ridge)

    rs = np.random.RandomState(n + p)
    data = sample_masks(p, n, rs)
    data[-1] = 0.0  # a sample with every word removed
    labels = rs.rand(n, 3)
    d_ref = pairwise_distances(data, data[:1], metric="cosine").ravel() * 100
    np.testing.assert_allclose(cosine_distances_to_first(data), d_ref, rtol=0, atol=1e-10)
    w = lime_text_kernel(d_ref, 25.0)
    ref = Ridge(alpha=1.0, fit_intercept=True).fit(data, labels[:, 2], sample_weight=w).coef_
    np.testing.assert_allclose(weighted_ridge(data, labels[:, 2], w), ref, rtol=0, atol=1e-10)
    base = LimeBase(partial(lime_text_kernel, kernel_width=25.0), random_state=rs)
    _, exp, _, _ = base.explain_instance_with_data(data, labels, d_ref, 2, num_features=p, feature_selection="none")
    lib = np.zeros(p)
    for j, c in exp:
        lib[int(j)] = c
    np.testing.assert_allclose(fit_surrogate(data, labels, 2, 25.0), lib, rtol=0, atol=1e-9)


@pytest.mark.parametrize("n_words", [1, 2, 10, 37, 130])
def test_lime_sample_masks_draw_exactly_what_lime_text_draws(n_words):
    """sample_masks (one arange tile shuffled row by row) gives LimeTextExplainer's own samples
    (``randint`` sizes, then ``choice(range(n), size, replace=False)`` per row) and leaves the
    RandomState where the library leaves it."""
    from harness.explainers.lime_sampling import sample_masks

    for seed in range(3):
        ours_rs, lib_rs = np.random.RandomState(seed), np.random.RandomState(seed)
        ours = sample_masks(n_words, 300, ours_rs)
        lib = np.ones((300, n_words))  # lime.lime_text.LimeTextExplainer.__data_labels_distances
        sizes = lib_rs.randint(1, n_words + 1, 300 - 1)
        for i, size in enumerate(sizes, start=1):
            lib[i, lib_rs.choice(range(n_words), size, replace=False)] = 0
        np.testing.assert_array_equal(ours, lib)
        assert ours_rs.randint(0, 2 ** 31, 4).tolist() == lib_rs.randint(0, 2 ** 31, 4).tolist()
    assert sample_masks(n_words, 1, np.random.RandomState(0)).tolist() == [[1.0] * n_words]


@pytest.mark.parametrize("shape", [(0, 5), (7, 0), (1, 1), (60, 3), (500, 10), (300, 130)])
def test_unique_bool_rows_and_first_occurrences_equal_numpy_unique(shape):
    """The packed-row helpers give np.unique(axis=0)'s sorted rows and inverse, and the first
    occurrences in row order (as the np.unique + rank steps they replace)."""
    from harness.explain_utils import first_occurrences
    from harness.explainers.common import unique_bool_rows

    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    m = rng.random(shape) < 0.3 if shape[1] > 3 else rng.random(shape) < 0.5
    uniq, inverse = unique_bool_rows(m)
    ref, ref_inv = np.unique(m, axis=0, return_inverse=True)
    np.testing.assert_array_equal(uniq, ref)
    np.testing.assert_array_equal(inverse, ref_inv.reshape(-1))
    keys = rng.integers(-2, 3, (shape[0], max(shape[1] // 20, 1) if shape[1] else 0))
    chosen, text_of = first_occurrences(keys)
    if shape[0] and keys.shape[1]:
        _, first, inv = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(first))
        np.testing.assert_array_equal(chosen, np.sort(first))
        np.testing.assert_array_equal(text_of, rank[inv.reshape(-1)])
    np.testing.assert_array_equal(keys[chosen][text_of], keys)


@pytest.mark.parametrize("nsamples", [1, 7, 60, 500])
def test_kernel_shap_native_path_equals_shap_kernel_explainer(sharp, nsamples):
    """The batched native path (l1_reg=False) gives shap.KernelExplainer's values: the same
    coalitions from the same stream, weights and solve, on one word, fully enumerated short
    inputs, sampled longer ones and pairs; the caller's global RNG is left alone."""
    import shap

    from harness.explain_utils import example_seed
    from harness.explainers.common import coalition_proba_fn

    long_ = (tuple([w for s in TINY_SENTENCES for w in s[0]][:14]),)
    rows = [(TINY_SENTENCES[0][0][:1],), *TINY_SENTENCES[:4], long_]
    pairs = list(TINY_PAIRS[:3])
    explainer = make("kernel_shap", nsamples=nsamples)
    for group in (rows, pairs):
        batch = sharp.make_batch(group, seed=11)
        np.random.seed(5)
        before = np.random.get_state()[1].copy()
        ours = explainer.explain(sharp, batch).scores
        np.testing.assert_array_equal(np.random.get_state()[1], before)
        for i, segs in enumerate(group):
            n = batch.n_words(i)
            f = coalition_proba_fn(sharp, segs, int(batch.targets[i]))
            np.random.seed(example_seed(batch, i))
            ref = shap.KernelExplainer(f, np.zeros((1, n)), link="identity").shap_values(
                np.ones(n), nsamples=nsamples, l1_reg=False, silent=True)
            np.testing.assert_allclose(ours[i], np.asarray(ref, dtype=np.float64).reshape(n), rtol=1e-4, atol=2e-6,
                                       err_msg=f"{segs} nsamples={nsamples}")


def test_kernel_shap_other_l1_reg_goes_through_shap(sharp):
    """A feature-selecting l1_reg runs the library (num_features(2): at most 2 words non-zero)."""
    long_ = (tuple([w for s in TINY_SENTENCES for w in s[0]][:12]),)
    batch = sharp.make_batch([long_])
    scores = make("kernel_shap", l1_reg="num_features(2)").explain(sharp, batch).scores
    assert 1 <= np.count_nonzero(scores[0]) <= 2
