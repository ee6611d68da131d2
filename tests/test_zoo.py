"""The baseline explainer zoo: hand-checked values for every new method.

The conformance suite itself (shape, specials, pairs, empty input, determinism, batch
invariance, model unchanged) runs for every submission in ``tests/test_explainers.py``.
Value checks use the *sensitive* tiny BERT (linear weights x20, embeddings x10) and small
sample counts.
"""

from __future__ import annotations

import itertools
import math
import sys

import numpy as np
import pytest
import torch

from harness.explain_utils import keep_words
from harness.explainers import attention as att
from harness.explainers.common import cls_only_last_layer, log_odds, supports_cls_only
from harness.explainers.ensemble import ensemble_maps, normalise_map
from harness.core.outputs import check_attributions, word_maps
from harness.models.removal import removed_logits, removed_proba
from harness.core.submission import discover
from harness.testing import TINY_PAIRS, TINY_SENTENCES, tiny_bundle
from harness.engine.validation import BATCH_ATOL, BATCH_RTOL

from test_explainers import IN_VOCAB, manual_inputs, manual_proba

REGISTRY = discover()
ZOO = ["smoothgrad", "deeplift", "partition_shap", "occlusion", "loo_empty", "loo_unk", "loo_mask", "loo_pad",
       "input_marginalization", "lime_bert", "average_attention", "attention_rollout", "scaled_attention",
       "ensemble_all", "ensemble_top3", "input_marginalization_renorm"]


def make(name: str, **overrides):
    return REGISTRY.get(name).instantiate(**overrides)


def module_of(name: str):
    cls = REGISTRY.get(name).load_class()
    return sys.modules[cls.__module__]


@pytest.fixture(scope="module")
def sharp():
    return tiny_bundle(sensitive=True)


def lo2(p: float) -> float:
    return math.log2(p / (1 - p))


def test_zoo_is_discovered():
    missing = set(ZOO) - set(REGISTRY.names())
    assert not missing, f"missing submissions: {sorted(missing)}"


# --- leave-one-out: every operator, both spaces --------------------------------------------

def _manual_removed_proba(bundle, segs, j, operator):
    """p(. | x with word j removed by ``operator``), built by hand from token ids / embeddings."""
    n = sum(len(s) for s in segs)
    if operator == "delete":
        return manual_proba(bundle, keep_words(segs, [k != j for k in range(n)]))
    if operator == "mlm":
        fill = bundle.mlm.top_fills([segs], [[j]], 1)[0][0][0][0]
        words = [w for s in segs for w in s]
        words[j] = fill
        out, k = [], 0
        for s in segs:
            out.append(tuple(words[k:k + len(s)]))
            k += len(s)
        return manual_proba(bundle, tuple(out))
    ids, mask, types = manual_inputs(bundle, segs)
    pos = 1 + j + (1 if len(segs) == 2 and j >= len(segs[0]) else 0)  # [CLS] a.. [SEP] b..
    with torch.no_grad():
        if operator == "zero":
            emb = bundle.embeddings(ids).clone()
            emb[0, pos] = 0.0
            return bundle.proba(inputs_embeds=emb, attention_mask=mask, token_type_ids=types)[0].double().numpy()
        tid = {"unk": bundle.unk_token_id, "mask": bundle.mask_token_id, "pad": bundle.pad_token_id}[operator]
        ids = ids.clone()
        ids[0, pos] = tid
        return bundle.proba(input_ids=ids, attention_mask=mask, token_type_ids=types)[0].double().numpy()


@pytest.mark.parametrize("operator", ["delete", "unk", "mask", "pad", "zero", "mlm"])
@pytest.mark.parametrize("space", ["prob", "log_odds"])
def test_leave_one_out_every_operator_exact(sharp, operator, space):
    rows = [IN_VOCAB[0], IN_VOCAB[2], TINY_PAIRS[1]]
    explainer = make("leave_one_out", operator=operator, space=space)
    biggest = 0.0
    for segs in rows:  # one segment count per batch
        batch = sharp.make_batch([segs])
        scores = explainer.explain(sharp, batch).scores[0]
        t = int(batch.targets[0])
        p0 = manual_proba(sharp, segs)[t]
        n = batch.n_words(0)
        ps = [_manual_removed_proba(sharp, segs, j, operator)[t] for j in range(n)]
        expected = [p0 - p for p in ps] if space == "prob" else [lo2(p0) - lo2(p) for p in ps]
        np.testing.assert_allclose(scores, expected, atol=2e-5 if space == "prob" else 2e-4)
        biggest = max(biggest, float(np.abs(scores).max()))
    assert biggest > 1e-3  # (an mlm fill may restore the word itself: a score of exactly 0)


def test_loo_variant_folders_are_log_odds_with_their_operator(sharp):
    batch = sharp.make_batch(IN_VOCAB)
    for name, op in [("loo_empty", "delete"), ("loo_unk", "unk"), ("loo_mask", "mask"), ("loo_pad", "pad")]:
        ours = make(name).explain(sharp, batch).scores
        ref = make("leave_one_out", operator=op, space="log_odds").explain(sharp, batch).scores
        for a, b in zip(ours, ref):
            np.testing.assert_array_equal(a, b)
    # the leave_one_out baseline stays in probability space with deletion
    base = make("leave_one_out")
    assert (base.operator, base.space) == ("delete", "prob")


def test_leave_one_out_rejects_unknown_operator_and_space():
    with pytest.raises(ValueError, match="unknown operator 'maskk'.*did you mean 'mask'"):
        make("leave_one_out", operator="maskk")
    with pytest.raises(ValueError, match="unknown space 'logit'"):
        make("leave_one_out", space="logit")


def test_removed_logits_match_removed_proba(sharp):
    segs = [TINY_SENTENCES[0], TINY_SENTENCES[3]]
    removes = [np.array([0, 1, 0, 1, 0], bool), np.eye(12, dtype=bool)[4]]
    for op in ("delete", "unk", "mask", "pad", "zero", "mlm"):
        z = removed_logits(sharp, segs, removes, op)
        p = removed_proba(sharp, segs, removes, op)
        np.testing.assert_allclose(torch.softmax(torch.as_tensor(z), -1).numpy(), p, atol=1e-6)


def test_log_odds_is_exact_and_base_2():
    z = np.array([[0.0, 3.0], [2.0, -1.0], [0.0, 80.0]])
    np.testing.assert_allclose(log_odds(z, [1, 1, 1]), [3 / math.log(2), -3 / math.log(2), 80 / math.log(2)])
    # three classes: log2(p / (1 - p)) with 1 - p the other two
    z3 = np.array([[1.0, 2.0, 0.5]])
    p = np.exp(z3) / np.exp(z3).sum()
    assert log_odds(z3, [1])[0] == pytest.approx(math.log2(p[0, 1] / (1 - p[0, 1])))


# --- occlusion ----------------------------------------------------------------------------------

def test_occlusion_window_one_is_loo_pad_in_probability_space(sharp):
    batch = sharp.make_batch(IN_VOCAB)
    occ = make("occlusion", window=1).explain(sharp, batch).scores
    loo = make("leave_one_out", operator="pad", space="prob").explain(sharp, batch).scores
    for a, b in zip(occ, loo):
        np.testing.assert_allclose(a, b, atol=1e-7)


def test_occlusion_three_word_windows_by_hand(sharp):
    segs = TINY_SENTENCES[0]  # 5 words: windows [0,3) [1,4) [2,5)
    batch = sharp.make_batch([segs])
    t = int(batch.targets[0])
    scores = make("occlusion").explain(sharp, batch).scores[0]
    ids, mask, types = manual_inputs(sharp, segs)
    p0 = manual_proba(sharp, segs)[t]
    drops = []
    for a in range(3):
        occluded = ids.clone()
        occluded[0, 1 + a:4 + a] = sharp.pad_token_id
        with torch.no_grad():
            drops.append(p0 - float(sharp.proba(input_ids=occluded, attention_mask=mask, token_type_ids=types)[0, t]))
    expected = [drops[0], (drops[0] + drops[1]) / 2, sum(drops) / 3, (drops[1] + drops[2]) / 2, drops[2]]
    np.testing.assert_allclose(scores, expected, atol=2e-6)
    assert not np.allclose(scores, make("loo_pad").explain(sharp, batch).scores[0])
    # windows never cross the segment boundary of a pair
    mod = module_of("occlusion")
    assert mod.windows([2, 4], 3) == [(0, 2), (2, 5), (3, 6)]


# --- attention ------------------------------------------------------------------------------------

def test_attention_rollout_and_average_on_a_hand_built_tensor():
    # L=2 layers, H=2 heads whose mean is A1 = [[1, 0], [.5, .5]] and A2 = [[.5, .5], [0, 1]]
    A1 = np.array([[1.0, 0.0], [0.5, 0.5]])
    A2 = np.array([[0.5, 0.5], [0.0, 1.0]])
    D1 = np.array([[0.0, 0.0], [0.2, -0.2]])  # head 1 = A + D, head 2 = A - D: rows stay stochastic
    D2 = np.array([[0.2, -0.2], [0.0, 0.0]])
    attn = np.stack([np.stack([A1 + D1, A1 - D1]), np.stack([A2 + D2, A2 - D2])])  # (L, H, T, T)
    np.testing.assert_allclose(attn.mean(1), np.stack([A1, A2]))
    # residual 0.5: Ã1 = [[1, 0], [.25, .75]], Ã2 = [[.75, .25], [0, 1]], R = Ã2 Ã1
    R = np.array([[0.8125, 0.1875], [0.25, 0.75]])
    np.testing.assert_allclose(att.rollout_matrix(attn, residual=0.5)[0].numpy(), R)
    np.testing.assert_allclose(att.attention_rollout(attn)[0], [(0.8125 + 0.25) / 2, (0.1875 + 0.75) / 2])
    np.testing.assert_allclose(att.attention_rollout(attn, source="cls")[0], [0.8125, 0.1875])
    # residual 0: the plain product of paper 001's formula
    np.testing.assert_allclose(att.rollout_matrix(attn, residual=0.0)[0].numpy(), A2 @ A1)
    # average attention: mean over layers, heads and query rows
    np.testing.assert_allclose(att.average_attention(attn)[0], [(1 + 0.5 + 0.5 + 0) / 4, (0 + 0.5 + 0.5 + 1) / 4])


def test_attention_functions_ignore_padding():
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 3, 3))
    a /= a.sum(-1, keepdims=True)
    padded = np.zeros((2, 3, 5, 5))
    padded[:, :, :3, :3] = a
    padded[:, :, 3:, :3] = 1 / 3  # padding queries attend to real keys, as in BERT
    mask = np.array([[1, 1, 1, 0, 0]])
    for fn in (att.average_attention, att.attention_rollout):
        full, pad = fn(a)[0], fn(padded, mask)[0]
        np.testing.assert_allclose(pad[:3], full, atol=1e-12)
        assert np.all(pad[3:] == 0)


def test_attention_explainers_match_the_pure_functions(sharp):
    batch = sharp.make_batch(TINY_SENTENCES)
    kwargs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
              "token_type_ids": batch.token_type_ids}
    with torch.no_grad():
        out = sharp.model(**kwargs, output_attentions=True)
    A = att.stack_attentions(out.attentions)
    special = batch.special_tokens_mask.numpy()
    for name, fn in (("average_attention", att.average_attention), ("attention_rollout", att.attention_rollout)):
        expected = fn(A, batch.attention_mask)
        expected[special] = 0
        np.testing.assert_allclose(make(name).explain(sharp, batch).scores, expected, atol=1e-6)
    assert not sharp.model.training


def test_scaled_attention_is_antisymmetric_in_the_target_and_uses_cls_row(sharp):
    batch = sharp.make_batch(TINY_SENTENCES)
    flipped = sharp.make_batch(TINY_SENTENCES, targets=(1 - batch.targets).tolist())
    a = make("scaled_attention").explain(sharp, batch).scores
    b = make("scaled_attention").explain(sharp, flipped).scores
    np.testing.assert_allclose(a, -b, atol=1e-7)  # p0 + p1 = 1: the gradients are opposite
    assert np.abs(a).max() > 1e-4 and np.all(a[batch.special_tokens_mask.numpy()] == 0)
    # alpha is the head-mean [CLS] row of the last layer: check against an autograd of our own
    kwargs = {"input_ids": batch.input_ids[:1], "attention_mask": batch.attention_mask[:1],
              "token_type_ids": batch.token_type_ids[:1]}
    out = sharp.model(**kwargs, output_attentions=True)
    last = out.attentions[-1]
    p = torch.softmax(out.logits, -1)[0, int(batch.targets[0])]
    (g,) = torch.autograd.grad(p, last)
    ref = (last.detach()[0, :, 0, :].mean(0) * g[0, :, 0, :].mean(0)).numpy()
    ref[batch.special_tokens_mask[0].numpy()[: ref.size]] = 0
    np.testing.assert_allclose(a[0, : ref.size], ref, atol=1e-7)


# --- integrated gradients, SmoothGrad, DeepLift -------------------------------------------------------

@pytest.mark.parametrize("rows", [IN_VOCAB, TINY_PAIRS], ids=["sentences", "pairs"])
def test_integrated_gradients_equals_captum_layer_ig(sharp, rows):
    from captum.attr import LayerIntegratedGradients

    from harness.explainers.common import pad_baseline

    batch = sharp.make_batch(rows)
    ours = make("integrated_gradients").explain(sharp, batch)

    def forward(ids, m, t):
        return sharp.proba(input_ids=ids, attention_mask=m, token_type_ids=t)

    ref, delta = LayerIntegratedGradients(forward, sharp.embeddings).attribute(
        batch.input_ids, baselines=pad_baseline(batch, sharp.pad_token_id), target=batch.targets,
        additional_forward_args=(batch.attention_mask, batch.token_type_ids), n_steps=50,
        method="gausslegendre", return_convergence_delta=True)
    ref = ref.detach().sum(-1).double().numpy()
    ref[batch.special_tokens_mask.numpy()] = 0
    np.testing.assert_allclose(ours.scores, ref, atol=5e-6)
    np.testing.assert_allclose(ours.extras["convergence_delta"], delta.detach().abs().double().numpy(), atol=5e-6)


def test_integrated_gradients_counts_50_backward_passes_per_example(sharp):
    batch = sharp.make_batch(TINY_SENTENCES)
    before = sharp.counter.snapshot()
    make("integrated_gradients").explain(sharp, batch)
    after = sharp.counter.snapshot()
    assert after[1] - before[1] == 50 * len(batch)
    assert after[0] - before[0] == 52 * len(batch)  # + f(x) and f(baseline) for the delta
    assert after[2] == before[2]


def test_cls_only_last_layer_is_exact_and_restored(sharp):
    assert supports_cls_only(sharp.model)
    batch = sharp.make_batch(TINY_SENTENCES)  # padded: 6 inputs of different lengths
    layers = sharp.model.bert.encoder.layer
    last = layers[-1]
    with torch.no_grad():
        full = sharp.logits(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        with cls_only_last_layer(sharp.model) as on:
            fast = sharp.logits(batch.input_ids, batch.attention_mask, batch.token_type_ids)
    assert on and layers[-1] is last
    np.testing.assert_allclose(fast.numpy(), full.numpy(), atol=1e-5)
    with pytest.raises(RuntimeError):
        with cls_only_last_layer(sharp.model):
            raise RuntimeError("boom")
    assert layers[-1] is last



def test_fused_layer_and_cls_attention_backward_are_the_autograd_ones(monkeypatch):
    """Hand-written backward passes of the fused BERT layer (several tiles, padded inputs) and of
    the [CLS]-only attention, against finite differences in float64."""
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    from harness.explainers import common

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=8, num_attention_heads=2, intermediate_size=12, hidden_dropout_prob=0.1,
                     attention_probs_dropout_prob=0.1)
    cfg._attn_implementation = "sdpa"
    layer = BertLayer(cfg).double().eval()
    for prm in layer.parameters():
        prm.requires_grad_(False)
    assert common._fused_applies(layer)
    monkeypatch.setattr(common, "FUSED_TILE_TOKENS", 10)  # 2 inputs of 5 tokens per tile
    R, T = 5, 5
    hidden = torch.randn(R, T, 8, dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(R, 1, 1, T, dtype=torch.float64)
    mask[1, ..., 3:] = torch.finfo(torch.float64).min  # a padded input
    fused = common._fused_layer(layer)
    for m in (mask, None):
        torch.autograd.gradcheck(lambda x: fused(x, m)[0], (hidden,))
        np.testing.assert_allclose(fused(hidden, m)[0].detach().numpy(), layer(hidden, m)[0].detach().numpy(),
                                   atol=1e-12)
    qk = torch.randn(R, 2, 8, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda a, h: common.cls_attention(a, h, mask[:, :, 0], 0.5), (qk, hidden))
    ref = torch.softmax(torch.einsum("bhk,btk->bht", qk, hidden) * 0.5 + mask[:, :, 0], -1) @ hidden
    np.testing.assert_allclose(common.cls_attention(qk, hidden, mask[:, :, 0], 0.5).detach().numpy(),
                               ref.detach().numpy(), atol=1e-12)


@pytest.mark.parametrize("rows", [TINY_SENTENCES, TINY_PAIRS], ids=["sentences", "pairs"])
def test_fused_layers_and_shifted_embeddings_are_exact_and_restored(sharp, rows):
    from harness.explainers.common import (cls_only_last_layer, frozen_parameters, fused_layers,
                                           position_type_shift, shifted_embeddings)

    model = sharp.model
    batch = sharp.make_batch(rows)  # padded, with segment ids for the pairs
    emb = sharp.embeddings(batch.input_ids).detach()
    layers = list(model.bert.encoder.layer)
    embeddings = model.bert.embeddings

    def proba_and_grad(fast: bool, shifted: bool):
        x = emb.clone().requires_grad_()
        with (frozen_parameters(model), cls_only_last_layer(model, fast), fused_layers(model, fast) as on_fast,
              shifted_embeddings(model, shifted) as on_shift):
            assert (on_fast, on_shift) == (fast, shifted)
            inp = x + position_type_shift(model, batch.token_type_ids, x.shape[1]) if on_shift else x
            p = sharp.proba(inputs_embeds=inp, attention_mask=batch.attention_mask,
                            token_type_ids=None if on_shift else batch.token_type_ids)
        (g,) = torch.autograd.grad(p.gather(1, batch.targets.view(-1, 1)).sum(), x)
        return p.detach().numpy(), g.numpy()

    p0, g0 = proba_and_grad(False, False)
    for fast, shifted in [(True, False), (False, True), (True, True)]:
        p, g = proba_and_grad(fast, shifted)
        np.testing.assert_allclose(p, p0, atol=1e-6)
        np.testing.assert_allclose(g, g0, rtol=1e-4, atol=1e-5 * np.abs(g0).max())  # float32, sensitive model
    with pytest.raises(RuntimeError):
        with fused_layers(model) as on, shifted_embeddings(model):
            assert on and type(model.bert.encoder.layer[0]).__name__ == "FusedBertLayer"
            raise RuntimeError("boom")
    assert list(model.bert.encoder.layer) == layers
    assert model.bert.embeddings is embeddings
    # trainable parameters: the fused layer hands over to the stock one (it computes no weight gradients)
    with fused_layers(model):
        x = emb.clone().requires_grad_()
        p = sharp.proba(inputs_embeds=x, attention_mask=batch.attention_mask, token_type_ids=batch.token_type_ids)
        p[:, 0].sum().backward()
    assert all(prm.grad is not None for prm in model.bert.encoder.layer[0].parameters())
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("rows", [TINY_SENTENCES, TINY_PAIRS], ids=["sentences", "pairs"])
def test_smoothgrad_equals_the_per_input_definition(sharp, rows):
    """The batched SmoothGrad (packed passes, [CLS]-only last layer, fused attention, shifted
    embeddings) against the definition on the plain model, one input and one noisy copy at a time."""
    from harness.explain_utils import example_seed

    n = 6
    batch = sharp.make_batch(rows, seed=3)  # different lengths (padded), segment ids for the pairs
    ours = make("smoothgrad", n_samples=n, internal_batch_size=2 * n).explain(sharp, batch).scores
    for i in range(len(batch)):
        L = int(batch.attention_mask[i].sum())
        ids = batch.input_ids[i:i + 1, :L]
        types = None if batch.token_type_ids is None else batch.token_type_ids[i:i + 1, :L]
        e = sharp.embeddings(ids).detach()[0]
        sigma = float(0.15 * (e.max() - e.min()))
        eps = torch.randn((n, L, e.shape[-1]), generator=torch.Generator().manual_seed(example_seed(batch, i)))
        grads = []
        for s in range(n):
            x = (e + sigma * eps[s]).unsqueeze(0).requires_grad_()
            p = sharp.proba(inputs_embeds=x, attention_mask=torch.ones(1, L, dtype=torch.long), token_type_ids=types)
            grads.append(torch.autograd.grad(p[0, int(batch.targets[i])], x)[0][0])
        ref = torch.stack(grads).mean(0).norm(dim=-1).double().numpy()
        ref[batch.special_tokens_mask[i, :L].numpy()] = 0
        np.testing.assert_allclose(ours[i, :L], ref, rtol=1e-4, atol=1e-5 * ref.max())


def test_smoothgrad_without_noise_is_the_gradient(sharp):
    batch = sharp.make_batch(TINY_SENTENCES)
    sg = make("smoothgrad", noise_level=0.0, n_samples=3).explain(sharp, batch).scores
    grad = make("gradient").explain(sharp, batch).scores
    np.testing.assert_allclose(sg, grad, rtol=1e-4, atol=1e-7)


def test_smoothgrad_noise_is_per_example(sharp):
    rows = TINY_SENTENCES
    a = make("smoothgrad", n_samples=8).explain(sharp, sharp.make_batch(rows, seed=5)).scores
    b = make("smoothgrad", n_samples=8).explain(sharp, sharp.make_batch(rows[::-1], seed=5)).scores[::-1]
    for i, segs in enumerate(rows):
        alone = make("smoothgrad", n_samples=8).explain(sharp, sharp.make_batch([segs], seed=5)).scores[0]
        T = alone.size
        np.testing.assert_allclose(a[i, :T], alone, atol=BATCH_ATOL, rtol=BATCH_RTOL)
        np.testing.assert_allclose(b[i][:T], alone, atol=BATCH_ATOL, rtol=BATCH_RTOL)
    other = make("smoothgrad", n_samples=8).explain(sharp, sharp.make_batch(rows, seed=6)).scores
    assert not np.allclose(a, other)


def test_deeplift_delta_is_reported_and_rules_restored(sharp):
    from captum.attr._core import deep_lift

    before = dict(deep_lift.SUPPORTED_NON_LINEAR)
    batch = sharp.make_batch(IN_VOCAB)
    attr = make("deeplift").explain(sharp, batch)
    assert dict(deep_lift.SUPPORTED_NON_LINEAR) == before
    sums = attr.scores.sum(1)
    for i, segs in enumerate(IN_VOCAB):
        t = int(batch.targets[i])
        gap = manual_proba(sharp, segs)[t] - manual_proba(sharp, segs, baseline=True)[t] - sums[i]
        assert abs(abs(gap) - attr.extras["convergence_delta"][i]) < 1e-5
    # the Rescale rule covers Hugging Face's GELU, registered only for the call
    mod = module_of("deeplift")
    assert any(c.__name__ == "GELUActivation" for c in mod.hf_activation_classes())
    with mod.rescale_rule_for_hf_activations():
        assert any(c.__name__ == "GELUActivation" for c in deep_lift.SUPPORTED_NON_LINEAR)
    assert dict(deep_lift.SUPPORTED_NON_LINEAR) == before


# --- Partition SHAP ------------------------------------------------------------------------------------

def test_partition_tree_shapes():
    mod = module_of("partition_shap")
    np.testing.assert_array_equal(mod.span_tree([3]), [[0, 1, 2, 2], [3, 2, 3, 3]])
    np.testing.assert_array_equal(mod.span_tree([2, 2]), [[0, 1, 2, 2], [2, 3, 2, 2], [4, 5, 4, 4]])
    assert mod.span_tree([1]).shape == (0, 4)


def test_partition_shap_efficiency_and_exact_for_two_words(sharp):
    batch = sharp.make_batch(TINY_SENTENCES)
    scores = make("partition_shap").explain(sharp, batch).scores
    for i, segs in enumerate(TINY_SENTENCES):
        t = int(batch.targets[i])
        p = sharp.proba_of_segments([segs, tuple(() for _ in segs)])[:, t]
        assert abs(scores[i].sum() - (p[0] - p[1])) < 1e-5
    # two players: the Owen value of the tree {0, 1} is the Shapley value
    for i in (2, 4):
        segs, t = TINY_SENTENCES[i], int(batch.targets[i])
        v = {c: sharp.proba_of_segments([keep_words(segs, c)])[0, t] for c in itertools.product([0, 1], repeat=2)}
        phi0 = 0.5 * (v[1, 0] - v[0, 0]) + 0.5 * (v[1, 1] - v[0, 1])
        np.testing.assert_allclose(scores[i], [phi0, v[1, 1] - v[0, 0] - phi0], atol=1e-6)


# --- Input Marginalization -----------------------------------------------------------------------------

class StubMLM:
    """A masked LM with known fills: every position gets the same candidates."""

    name, description, model_hash = "stub", "stub masked LM", "0"

    def __init__(self, fills, counter=None):
        self.fills, self.counter, self.calls = fills, counter, []

    def top_fills(self, segments, positions, k):
        self.calls.append((len(segments), k))
        if self.counter is not None:
            self.counter.mlm += len(segments)
        return [[list(self.fills[:k]) for _ in pos] for pos in positions]


def _replace(segs, j, w):
    words = [x for s in segs for x in s]
    words[j] = w
    out, k = [], 0
    for s in segs:
        out.append(tuple(words[k:k + len(s)]))
        k += len(s)
    return tuple(out)


@pytest.mark.parametrize("renormalize", [False, True])
def test_input_marginalization_on_a_stub_mlm(renormalize):
    bundle = tiny_bundle(sensitive=True, mlm=False)
    fills = [("good", 0.6), ("film", 0.3), ("dull", 0.05)]
    bundle.mlm = StubMLM(fills, bundle.counter)
    rows = [IN_VOCAB[0], IN_VOCAB[2]]
    batch = bundle.make_batch(rows)
    before = bundle.counter.mlm
    scores = make("input_marginalization", k=2, renormalize=renormalize).explain(bundle, batch).scores
    # one masked-LM call for the whole batch, one sequence per word, k passed through
    assert bundle.mlm.calls == [(sum(batch.n_words(i) for i in range(len(rows))), 2)]
    assert bundle.counter.mlm - before == 7
    for i, segs in enumerate(rows):
        t = int(batch.targets[i])
        p0 = manual_proba(bundle, segs)[t]
        for j in range(batch.n_words(i)):
            p_good = manual_proba(bundle, _replace(segs, j, "good"))[t]
            p_film = manual_proba(bundle, _replace(segs, j, "film"))[t]
            e = 0.6 * p_good + 0.3 * p_film
            if renormalize:  # a proper expectation over the top 2
                e /= 0.9
            # without renormalisation the missing 10% of mass counts as "not the target"
            assert scores[i][j] == pytest.approx(lo2(p0) - math.log2(e / (1 - e)), abs=2e-4)
    assert max(np.abs(s).max() for s in scores) > 0.05


def test_input_marginalization_needs_a_masked_lm():
    bundle = tiny_bundle(mlm=False)
    with pytest.raises(ValueError, match="needs a masked LM"):
        make("input_marginalization").explain(bundle, bundle.make_batch(IN_VOCAB[:1]))


def test_mlm_call_counts_per_explainer(sharp):
    batch = sharp.make_batch(IN_VOCAB)
    words = sum(batch.n_words(i) for i in range(len(batch)))
    for name, expect in (("input_marginalization", words), ("loo_empty", 0)):
        before = sharp.counter.mlm
        make(name).explain(sharp, batch)
        assert sharp.counter.mlm - before == expect, name
    before = sharp.counter.snapshot()
    make("lime_bert", num_samples=50).explain(sharp, batch)
    after = sharp.counter.snapshot()
    assert 0 < after[2] - before[2] <= 50 * len(batch) and after[0] > before[0]


# --- LIME_BERT --------------------------------------------------------------------------------------

def test_lime_bert_replaces_removed_words_by_the_top_fill():
    bundle = tiny_bundle(sensitive=True, mlm=False)
    bundle.mlm = StubMLM([("film", 0.9)])
    seen = []
    real = bundle.proba_of_segments

    def spy(segments, batch_size=None):
        seen.extend(segments)
        return real(segments, batch_size)

    bundle.proba_of_segments = spy
    batch = bundle.make_batch([IN_VOCAB[0]])
    scores = make("lime_bert", num_samples=40).explain(bundle, batch).scores[0]
    n = batch.n_words(0)
    assert scores.shape == (n,) and np.isfinite(scores).all()
    assert all(sum(len(s) for s in segs) == n for segs in seen)  # lengths kept: replaced, not deleted
    assert any("film" in segs[0] and segs != IN_VOCAB[0] for segs in seen)
    # same samples and surrogate as LIME, other counterfactuals: other scores
    plain = make("lime", num_samples=40).explain(bundle, batch).scores[0]
    assert not np.allclose(plain, scores)


# --- determinism under a seed ---------------------------------------------------------------------

@pytest.mark.parametrize("name,kw", [("smoothgrad", {"n_samples": 10}), ("lime_bert", {"num_samples": 100}),
                                     ("partition_shap", {"max_evals": 100})])
def test_stochastic_zoo_explainers_deterministic_under_a_seed(sharp, name, kw):
    rows = TINY_SENTENCES
    first = make(name, **kw).explain(sharp, sharp.make_batch(rows, seed=7))
    again = make(name, **kw).explain(sharp, sharp.make_batch(rows, seed=7))
    a = check_attributions(first, sharp.make_batch(rows, seed=7))
    b = check_attributions(again, sharp.make_batch(rows, seed=7))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    if name != "partition_shap":  # shap's partition only uses the RNG to break exact ties
        other = check_attributions(make(name, **kw).explain(sharp, sharp.make_batch(rows, seed=8)),
                                   sharp.make_batch(rows, seed=8))
        assert not np.allclose(a[3], other[3])


# --- ensembles ----------------------------------------------------------------------------------------

def test_normalisation_on_hand_made_maps():
    np.testing.assert_allclose(normalise_map([1.0, -3.0]), [0.25, -0.75])
    np.testing.assert_allclose(normalise_map([2.0, 2.0, 4.0]), [0.25, 0.25, 0.5])  # sums to 1
    np.testing.assert_array_equal(normalise_map([0.0, 0.0]), [0.0, 0.0])
    maps = ensemble_maps([[np.array([1.0, -3.0]), np.array([])], [np.array([10.0, 10.0]), np.array([])]])
    np.testing.assert_allclose(maps[0], [(0.25 + 0.5) / 2, (-0.75 + 0.5) / 2])
    assert maps[1].shape == (0,)
    with pytest.raises(ValueError, match="disagree"):
        ensemble_maps([[np.zeros(2)], [np.zeros(3)]])


def test_ensemble_is_the_mean_of_its_normalised_members(sharp):
    from harness.explainers.ensemble import Ensemble

    batch = sharp.make_batch(TINY_SENTENCES)
    members = ["leave_one_out", "gradient", "random"]
    ens = Ensemble(members=members).explain(sharp, batch)
    member_maps = []
    for m in members:
        attr = make(m).explain(sharp, batch)
        member_maps.append(word_maps(attr, check_attributions(attr, batch), batch, "absmax"))
    for i in range(len(batch)):
        expected = np.mean([normalise_map(mm[i]) for mm in member_maps], axis=0)
        np.testing.assert_allclose(ens.scores[i], expected, atol=1e-9)


def test_ensemble_submissions_declare_paper_001_members():
    assert REGISTRY.get("ensemble_all").params["members"] == [
        "gradient", "gradient_x_input", "integrated_gradients", "lime", "kernel_shap", "average_attention",
        "attention_rollout"]
    assert sorted(REGISTRY.get("ensemble_top3").params["members"]) == ["integrated_gradients", "kernel_shap", "lime"]
    ens = make("ensemble_top3", member_params={"lime": {"num_samples": 50}, "kernel_shap": {"nsamples": 50}})
    assert ens._explainers[0].num_samples == 50
    with pytest.raises(ValueError, match="non-members"):
        make("ensemble_top3", member_params={"random": {}})
