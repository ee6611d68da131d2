"""Batched model access and small numerical helpers shared by the built-in explainers."""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Sequence

import numpy as np

from harness.protocols import ExplainBatch, Segments

LN2 = math.log(2.0)


def unique_bool_rows(masks) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(masks, axis=0, return_inverse=True)`` of a boolean (n, w) matrix (the same
    sorted rows and inverse), ~10x faster: rows are packed to bytes and sorted as one void column
    (memcmp order of big-endian packed bits is the rows' lexicographic order)."""
    m = np.ascontiguousarray(masks, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-d mask matrix, got shape {m.shape}")
    if m.shape[0] == 0 or m.shape[1] == 0:
        uniq, inverse = np.unique(m, axis=0, return_inverse=True)
        return uniq, inverse.reshape(-1)
    packed = np.ascontiguousarray(np.packbits(m, axis=1))
    rows = packed.view(np.dtype((np.void, packed.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    return m[first], inverse.reshape(-1)


def length_order(inputs: Sequence[Segments]) -> list[int]:
    """Indices of ``inputs`` sorted by word count (stable): chunks then carry little padding."""
    return sorted(range(len(inputs)), key=lambda k: sum(len(s) for s in inputs[k]))


def proba_by_length(model, inputs: Sequence[Segments]) -> np.ndarray:
    """``model.proba_of_segments(inputs)``, evaluated in order of length (less padding per chunk)."""
    if not len(inputs):
        return np.zeros((0, model.num_labels))
    order = length_order(inputs)
    out = model.proba_of_segments([inputs[k] for k in order])
    proba = np.empty_like(out)
    proba[order] = out
    return proba


def kept_proba_grouped(model, groups: Sequence[tuple[Segments, np.ndarray]],
                       counts: np.ndarray | None = None) -> np.ndarray:
    """Class probabilities (N, C), float64, of every row of ``groups`` = ``[(segments, keeps
    (n_g, words))]`` (rows numbered by concatenating the groups; row j of a group: the input with
    only its flagged words), sent in order of kept-word count (``counts`` when the caller has
    them, stable): built from each input's word pieces without a Python step per row
    (:func:`harness.models.removal.kept_rows_grouped`); a stand-in model gets the word lists."""
    from harness.explain_utils import keep_words
    from harness.models.removal import composable, kept_outputs_grouped, proba_forward

    keeps = [np.asarray(k, dtype=bool) for _, k in groups]
    if not sum(len(k) for k in keeps):
        return np.zeros((0, model.num_labels))
    if not composable(model):
        return proba_by_length(model, [keep_words(s, row) for (s, _), k in zip(groups, keeps) for row in k])
    if counts is None:
        counts = np.concatenate([k.sum(1) for k in keeps])
    order = np.argsort(np.asarray(counts), kind="stable")
    return kept_outputs_grouped(model, [(s, k) for (s, _), k in zip(groups, keeps)], proba_forward(model),
                                model.num_labels, order, dedup=False).astype(np.float64)


def coalition_proba_fn(model, segments: Segments, target: int):
    """SHAP's model function over word coalitions of one input: ``f(masks)`` (n, words) -> (n,)
    probabilities of ``target`` with the absent words deleted; duplicate coalitions are
    evaluated once, all of them in one length-sorted batched call."""
    def f(masks):
        masks = np.atleast_2d(np.asarray(masks)) > 0.5
        uniq, inverse = unique_bool_rows(masks)
        return kept_proba_grouped(model, [(segments, uniq)])[inverse, target]

    return f


def removed_logits_by_length(model, segments: Sequence[Segments], removes: Sequence[np.ndarray],
                             operator: str) -> np.ndarray:
    """:func:`harness.models.removal.removed_logits` with the inputs sorted by length (one batched call)."""
    from harness.models.removal import removed_logits

    if not len(segments):
        return np.zeros((0, model.num_labels))
    order = length_order(segments)
    out = removed_logits(model, [segments[k] for k in order], [removes[k] for k in order], operator)
    logits = np.empty_like(out)
    logits[order] = out
    return logits


def logits_by_length(model, inputs: Sequence[Segments]) -> np.ndarray:
    """(N, C) float64 classifier logits of word-level inputs, sorted by length, no grad."""
    return removed_logits_by_length(model, inputs, [np.zeros(sum(len(s) for s in x), dtype=bool) for x in inputs],
                                    "delete")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def log2_p_and_not_p(logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log2 p_t, log2 (1 - p_t)) of the target class of each row, exact from logits."""
    from scipy.special import logsumexp

    z = np.asarray(logits, dtype=np.float64)
    t = np.asarray(targets, dtype=np.int64).reshape(-1)
    rows = np.arange(z.shape[0])
    lse = logsumexp(z, axis=-1)
    others = z.copy()
    others[rows, t] = -np.inf
    return (z[rows, t] - lse) / LN2, (logsumexp(others, axis=-1) - lse) / LN2


def log_odds(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log2(p / (1 - p)) of the target-class probability p (paper 003), from logits (never infinite)."""
    lp, lq = log2_p_and_not_p(logits, targets)
    return lp - lq


def log_odds_of_proba(p: np.ndarray) -> np.ndarray:
    """log2(p / (1 - p)) of probabilities (clipped to [1e-12, 1 - 1e-12])."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log2(p) - np.log2(1 - p)


def target_proba(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    t = np.asarray(targets, dtype=np.int64).reshape(-1)
    return softmax(logits)[np.arange(len(t)), t]


def proba_of_embeds(bundle):
    """captum forward function: (inputs_embeds, attention_mask, token_type_ids) -> (B, C) probabilities."""

    def forward(inputs_embeds, attention_mask, token_type_ids):
        return bundle.proba(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                            token_type_ids=token_type_ids)

    return forward


def embedding_gradients(model, batch: ExplainBatch):
    """``d p(target | x) / d e_t`` for every token t, a (B, T, D) tensor: captum's ``Saliency``
    (``abs=False``) on the input token (word) embeddings, one batched forward + backward (the
    examples are independent, so the gradient of the summed target probabilities gives every
    example its own gradient).  Reduce it over D as the method says (L2 norm, signed sum)."""
    import torch
    from captum.attr import Saliency

    with torch.no_grad():
        embeds = model.embeddings(batch.input_ids).detach().requires_grad_()
    grads = Saliency(proba_of_embeds(model)).attribute(
        embeds, target=batch.targets, abs=False,
        additional_forward_args=(batch.attention_mask, batch.token_type_ids))
    return grads.detach()

def pad_baseline(batch: ExplainBatch, pad_token_id: int):
    """The input ids with every non-special token replaced by [PAD] ([CLS]/[SEP] kept)."""
    baseline = batch.input_ids.clone()
    baseline[~batch.special_tokens_mask.bool()] = pad_token_id
    return baseline


@contextmanager
def frozen_parameters(model):
    """Parameters temporarily set to ``requires_grad=False`` (gradients are only needed w.r.t.
    inputs; autograd then saves less), restored afterwards even on error."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield model
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


def word_token_mask(batch: ExplainBatch):
    """(B, T) bool tensor: True on word tokens (not special, not padding)."""
    return ~batch.special_tokens_mask.bool()


def chunks(n: int, size: int):
    for start in range(0, n, max(1, size)):
        yield start, min(n, start + max(1, size))


def fast_path_family(model) -> bool:
    """Whether the model's family adapter declares the fused BERT kernels below as its fast path
    (:attr:`harness.models.families.Family.fast_path`: BERT only; every other family runs the
    generic path).  Never for a model whose instance replaces its class's forward (a FACADE
    merge, :mod:`harness.models.facade`): the kernels assume the stock forward and embeddings."""
    from harness.models.families import UnknownFamilyError, family_of

    if "forward" in vars(model):
        return False
    try:
        return bool(family_of(model).fast_path)
    except UnknownFamilyError:
        return False


# --- the [CLS]-only last layer -------------------------------------------------------------

def _cls_only_layer(layer):
    import math

    import torch

    class ClsOnlyBertLayer(torch.nn.Module):
        """The last BERT layer evaluated for the [CLS] position only.  A sequence classifier reads
        nothing else of that layer, so the logits are those of the full layer.

        The [CLS] query attends to keys and values of every token without projecting them:
        q . (W_k h_t + b_k) = (W_k^T q) . h_t + const (the constant cancels in the softmax) and
        sum_t p_t (W_v h_t + b_v) = W_v (sum_t p_t h_t) + b_v, per head (exact algebra; the
        layer's cost drops from T tokens to about one)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, hidden_states, attention_mask=None, *args, **kwargs):
            lay = self.inner
            sa = lay.attention.self
            B, T, D = hidden_states.shape
            H, dh = sa.num_attention_heads, sa.attention_head_size
            h0 = hidden_states[:, :1].contiguous()  # (B, 1, D): a strided view would make the Linears batched products
            q = sa.query(h0).view(B, H, dh)
            wk = sa.key.weight.view(H, dh, D)
            wv = sa.value.weight.view(H, dh, D)
            qk = torch.bmm(q.transpose(0, 1), wk).transpose(0, 1)  # (B, H, D): W_k^T q per head
            row = None
            if attention_mask is not None:
                m = attention_mask
                if m.dtype == torch.bool:
                    m = torch.zeros(m.shape, dtype=qk.dtype, device=m.device).masked_fill(
                        ~m, torch.finfo(qk.dtype).min)
                row = m[:, :, 0, :]  # (B, 1 or H, T): the [CLS] row of the additive mask
            if sa.training:
                scores = torch.einsum("bhk,btk->bht", qk, hidden_states) / math.sqrt(dh)
                probs = sa.dropout(torch.softmax(scores if row is None else scores + row, dim=-1))
                hbar = torch.einsum("bht,btk->bhk", probs, hidden_states)  # (B, H, D)
            else:
                hbar = cls_attention(qk, hidden_states, row, 1.0 / math.sqrt(dh))  # (B, H, D)
            ctx = torch.bmm(hbar.transpose(0, 1), wv.transpose(1, 2)).transpose(0, 1)  # (B, H, dh): W_v hbar
            if sa.value.bias is not None:
                ctx = ctx + sa.value.bias.view(H, dh)
            attn_out = lay.attention.output(ctx.reshape(B, 1, H * dh), h0)
            return (lay.output(lay.intermediate(attn_out), attn_out),)

    return ClsOnlyBertLayer(layer)


def _cls_attention_fn():
    import torch

    class ClsAttentionFn(torch.autograd.Function):
        """hbar = softmax(qk . h_t * scale + mask) @ h per head, with a hand-written backward that
        gets d h in one (B, T, 2H) x (B, 2H, D) product (autograd's einsum backward takes two
        rank-H products into a transposed buffer: several times slower for few heads)."""

        @staticmethod
        def forward(ctx, qk, hidden, row, scale: float):
            s = torch.bmm(qk, hidden.transpose(1, 2)).mul_(scale)
            if row is not None:
                s = s + row
            p = torch.softmax(s, -1)
            ctx.scale = scale
            ctx.save_for_backward(qk, hidden, p)
            return torch.bmm(p, hidden)

        @staticmethod
        def backward(ctx, d_hbar):
            qk, hidden, p = ctx.saved_tensors
            d_hbar = d_hbar.contiguous()
            dp = torch.bmm(d_hbar, hidden.transpose(1, 2))
            ds = p * (dp - (dp * p).sum(-1, keepdim=True))
            ds.mul_(ctx.scale)
            d_qk = torch.bmm(ds, hidden)
            d_hidden = torch.bmm(torch.cat([ds, p], 1).transpose(1, 2), torch.cat([qk, d_hbar], 1))
            return d_qk, d_hidden, None, None

    return ClsAttentionFn


_CLS_ATTENTION_FN = None


def cls_attention(qk, hidden, row, scale: float):
    """(B, H, D): sum_t softmax_t(qk[b, h] . hidden[b, t] * scale + row[b, h, t]) hidden[b, t]
    (``row`` (B, 1 or H, T) additive, or None), differentiable w.r.t. ``qk`` and ``hidden``."""
    global _CLS_ATTENTION_FN
    if _CLS_ATTENTION_FN is None:
        _CLS_ATTENTION_FN = _cls_attention_fn()
    return _CLS_ATTENTION_FN.apply(qk.contiguous(), hidden.contiguous(), row, float(scale))


def supports_cls_only(model) -> bool:
    """Whether :func:`cls_only_last_layer` applies: a Hugging Face BERT sequence classifier
    (``BertForSequenceClassification``-like: ``.bert`` encoder, absolute positions, no
    cross-attention, no feed-forward chunking)."""
    try:
        from transformers.models.bert.modeling_bert import BertLayer
    except ImportError:  # pragma: no cover
        return False
    bert = getattr(model, "bert", None)
    cfg = getattr(model, "config", None)
    layers = getattr(getattr(bert, "encoder", None), "layer", None)
    if bert is None or cfg is None or not layers or getattr(bert, "pooler", None) is None:
        return False
    last = layers[-1]
    return (type(last) is BertLayer and getattr(cfg, "position_embedding_type", "absolute") == "absolute"
            and not getattr(cfg, "is_decoder", False) and not getattr(cfg, "add_cross_attention", False)
            and getattr(last, "chunk_size_feed_forward", 0) == 0
            and type(model).__name__ == "BertForSequenceClassification" and fast_path_family(model))


@contextmanager
def cls_only_last_layer(model, enabled: bool = True):
    """Within the block, the classifier's last encoder layer computes the [CLS] row only.

    Exact (up to float rounding) for ``BertForSequenceClassification``, whose pooler reads
    [CLS] alone; a no-op for other models or when ``enabled`` is False.  The layer is put back
    afterwards, even on error; calls still go through ``model(...)`` (so the bundle's hooks
    count them).  Not for explainers that read hidden states or attentions of that layer."""
    if not enabled or not supports_cls_only(model):
        yield False
        return
    layers = model.bert.encoder.layer
    original = layers[-1]
    layers[-1] = _cls_only_layer(original)
    try:
        yield True
    finally:
        layers[-1] = original


# --- position and segment embeddings added by the caller -----------------------------------

def supports_shifted_embeddings(model) -> bool:
    """Whether :func:`shifted_embeddings` applies: a ``BertForSequenceClassification`` with the
    stock ``BertEmbeddings`` (absolute positions)."""
    try:
        from transformers.models.bert.modeling_bert import BertEmbeddings
    except ImportError:  # pragma: no cover
        return False
    emb = getattr(getattr(model, "bert", None), "embeddings", None)
    cfg = getattr(model, "config", None)
    return (type(emb) is BertEmbeddings and cfg is not None
            and getattr(cfg, "position_embedding_type", "absolute") == "absolute"
            and type(model).__name__ == "BertForSequenceClassification" and fast_path_family(model))


def position_type_shift(model, token_type_ids, length: int):
    """(B, length, D) no-grad: the position plus segment embeddings BERT adds to each word
    embedding (``token_type_ids`` (B, >= length) or None for segment 0)."""
    import torch

    emb = model.bert.embeddings
    emb = getattr(emb, "inner", emb)  # also inside :func:`shifted_embeddings`
    with torch.no_grad():
        pos = emb.position_embeddings.weight[:length]
        if token_type_ids is None:
            return (emb.token_type_embeddings.weight[0] + pos).unsqueeze(0)
        return emb.token_type_embeddings(token_type_ids[:, :length]) + pos


@contextmanager
def shifted_embeddings(model, enabled: bool = True):
    """Within the block, ``inputs_embeds`` given to the BERT classifier must already include the
    position and segment embeddings (:func:`position_type_shift`): its embedding module only
    applies the LayerNorm (and dropout).  Callers that evaluate many points per input then add
    the shift once, fused with building the points, instead of the model gathering and adding
    it for every row.  Yields whether it applies (a no-op otherwise: plain word embeddings
    then); the module is put back afterwards, even on error."""
    if not enabled or not supports_shifted_embeddings(model):
        yield False
        return
    import torch

    class ShiftedBertEmbeddings(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.word_embeddings = inner.word_embeddings

        def forward(self, input_ids=None, position_ids=None, token_type_ids=None, inputs_embeds=None,
                    past_key_values_length=0, **kwargs):
            if inputs_embeds is None:
                raise ValueError("shifted_embeddings: pass inputs_embeds (word + position + segment embeddings)")
            return self.inner.dropout(self.inner.LayerNorm(inputs_embeds))

    bert = model.bert
    original = bert.embeddings
    bert.embeddings = ShiftedBertEmbeddings(original)
    try:
        yield True
    finally:
        bert.embeddings = original


# --- a fused, tiled BERT layer for input gradients -------------------------------------------

#: tokens per tile of :class:`FusedBertLayer`: the intermediates of one tile stay in the CPU's
#: L2 cache between the GEMMs and elementwise ops (a 2048 x 128 float32 tile is 1 MiB)
FUSED_TILE_TOKENS = 2048


def _attention_forward(x, mask, heads: int, scale: float):
    """Per-head softmax(q k^T * scale + mask) v of ``x`` = (R, T, 3, H, dh) fused projections;
    returns the (R, T, H * dh) output and the per-head (R, T, T) probabilities."""
    import torch

    outs, probs = [], []
    for h in range(heads):
        q, k, v = x[:, :, 0, h], x[:, :, 1, h], x[:, :, 2, h]
        if mask is None:
            s = torch.bmm(q, k.transpose(1, 2)).mul_(scale)
        else:
            s = torch.baddbmm(mask[:, h if mask.shape[1] > 1 else 0], q, k.transpose(1, 2), alpha=scale)
        p = torch.softmax(s, -1)
        probs.append(p)
        outs.append(torch.bmm(p, v))
    return torch.cat(outs, -1), probs


def _attention_backward(x, probs, grad_out, scale: float, grad):
    """Writes d loss / d ``x`` ((R, T, 3, H, dh), see :func:`_attention_forward`) into ``grad``."""
    import torch

    dh = x.shape[-1]
    for h, p in enumerate(probs):
        q, k, v = x[:, :, 0, h], x[:, :, 1, h], x[:, :, 2, h]
        do = grad_out[:, :, h * dh:(h + 1) * dh]
        grad[:, :, 2, h] = torch.bmm(p.transpose(1, 2), do)
        dp = torch.bmm(do, v.transpose(1, 2))
        ds = p * (dp - (dp * p).sum(-1, keepdim=True))
        ds.mul_(scale)
        grad[:, :, 0, h] = torch.bmm(ds, k)
        grad[:, :, 1, h] = torch.bmm(ds.transpose(1, 2), q)


def _fused_layer_fn():
    import math

    import torch

    aten = torch.ops.aten

    class FusedLayerFn(torch.autograd.Function):
        """One BERT layer (self-attention, residual + LayerNorm, GELU feed-forward, residual +
        LayerNorm), forward and a hand-written backward w.r.t. the layer input only (parameters
        get no gradient), computed tile by tile (whole inputs, about FUSED_TILE_TOKENS tokens).
        Saves the fused projections, attention probabilities, the two LayerNorm inputs and
        statistics and the feed-forward pre-activations."""

        @staticmethod
        def forward(ctx, hidden, mask, layer, heads: int):
            sa, so, inter, out = layer.attention.self, layer.attention.output, layer.intermediate, layer.output
            R, T, D = hidden.shape
            dh = D // heads
            scale = 1.0 / math.sqrt(dh)
            w_qkv = torch.cat([sa.query.weight, sa.key.weight, sa.value.weight])
            b_qkv = torch.cat([sa.query.bias, sa.key.bias, sa.value.bias])
            F_ = inter.dense.out_features
            qkv = hidden.new_empty(R, T, 3 * D)
            z1 = hidden.new_empty(R, T, D)
            pre = hidden.new_empty(R, T, F_)
            z2 = hidden.new_empty(R, T, D)
            h1 = hidden.new_empty(R, T, D)
            stats, probs = [], []
            rows = max(1, FUSED_TILE_TOKENS // max(1, T))
            for r0 in range(0, R, rows):
                r1 = min(R, r0 + rows)
                n = (r1 - r0) * T
                x = hidden[r0:r1].reshape(n, D)
                torch.addmm(b_qkv, x, w_qkv.t(), out=qkv[r0:r1].view(n, 3 * D))
                m = None if mask is None else mask[r0:r1]
                att, p = _attention_forward(qkv[r0:r1].view(r1 - r0, T, 3, heads, dh), m, heads, scale)
                probs.append(p)
                zt = z1[r0:r1].view(n, D)
                torch.addmm(so.dense.bias, att.view(n, D), so.dense.weight.t(), out=zt)
                zt.add_(x)
                a, mean1, rstd1 = aten.native_layer_norm(zt, [D], so.LayerNorm.weight, so.LayerNorm.bias,
                                                         so.LayerNorm.eps)
                pt = pre[r0:r1].view(n, F_)
                torch.addmm(inter.dense.bias, a, inter.dense.weight.t(), out=pt)
                g = torch.nn.functional.gelu(pt)
                z2t = z2[r0:r1].view(n, D)
                torch.addmm(out.dense.bias, g, out.dense.weight.t(), out=z2t)
                z2t.add_(a)
                y, mean2, rstd2 = aten.native_layer_norm(z2t, [D], out.LayerNorm.weight, out.LayerNorm.bias,
                                                         out.LayerNorm.eps)
                h1[r0:r1].view(n, D).copy_(y)
                stats.append((mean1, rstd1, mean2, rstd2))
            ctx.layer, ctx.heads, ctx.scale, ctx.rows = layer, heads, scale, rows
            ctx.w_qkv = w_qkv
            ctx.probs, ctx.stats = probs, stats
            ctx.save_for_backward(qkv, z1, pre, z2)
            return h1

        @staticmethod
        def backward(ctx, grad_h1):
            qkv, z1, pre, z2 = ctx.saved_tensors
            layer, heads, scale, rows = ctx.layer, ctx.heads, ctx.scale, ctx.rows
            so, inter, out = layer.attention.output, layer.intermediate, layer.output
            R, T, D = z1.shape
            dh = D // heads
            grad_h1 = grad_h1.contiguous()
            grad_in = torch.empty_like(z1)
            for i, r0 in enumerate(range(0, R, rows)):
                r1 = min(R, r0 + rows)
                n = (r1 - r0) * T
                mean1, rstd1, mean2, rstd2 = ctx.stats[i]
                dz2 = aten.native_layer_norm_backward(grad_h1[r0:r1].reshape(n, D), z2[r0:r1].view(n, D), [D],
                                                      mean2, rstd2, out.LayerNorm.weight, out.LayerNorm.bias,
                                                      [True, False, False])[0]
                d_g = torch.mm(dz2, out.dense.weight)
                d_pre = aten.gelu_backward(d_g, pre[r0:r1].view(n, -1))
                d_a = torch.addmm(dz2, d_pre, inter.dense.weight)  # + the residual
                dz1 = aten.native_layer_norm_backward(d_a, z1[r0:r1].view(n, D), [D], mean1, rstd1,
                                                      so.LayerNorm.weight, so.LayerNorm.bias,
                                                      [True, False, False])[0]
                d_att = torch.mm(dz1, so.dense.weight).view(r1 - r0, T, D)
                d_qkv = torch.empty((r1 - r0, T, 3, heads, dh), dtype=z1.dtype, device=z1.device)
                _attention_backward(qkv[r0:r1].view(r1 - r0, T, 3, heads, dh), ctx.probs[i], d_att, scale, d_qkv)
                torch.addmm(dz1, d_qkv.view(n, 3 * D), ctx.w_qkv, out=grad_in[r0:r1].view(n, D))  # + residual
            return grad_in, None, None, None

    return FusedLayerFn


_FUSED_LAYER_FN = None


def _fused_applies(layer) -> bool:
    """A stock eval-mode BERT layer with exact GELU, absolute positions, no cross-attention and
    no feed-forward chunking, all of whose parameters are frozen (no weight gradients here)."""
    import torch
    from transformers.activations import GELUActivation
    from transformers.models.bert.modeling_bert import BertSdpaSelfAttention, BertSelfAttention

    sa = layer.attention.self
    act = layer.intermediate.intermediate_act_fn
    return (not layer.training and type(sa) in (BertSelfAttention, BertSdpaSelfAttention)
            and getattr(sa, "position_embedding_type", "absolute") == "absolute"
            and not getattr(layer, "add_cross_attention", False) and getattr(layer, "chunk_size_feed_forward", 0) == 0
            and type(act) is GELUActivation and getattr(act, "act", None) is torch.nn.functional.gelu
            and all(lin.bias is not None for lin in (sa.query, sa.key, sa.value, layer.attention.output.dense,
                                                     layer.intermediate.dense, layer.output.dense))
            and not any(p.requires_grad for p in layer.parameters()))


def _fused_layer(inner):
    import torch

    class FusedBertLayer(torch.nn.Module):
        """A BERT layer computed by one tiled, fused autograd function (input gradients only;
        same algebra as the stock layer).  Anything unusual (head mask, cross-attention, cache,
        attention outputs, training mode, trainable parameters) goes to the wrapped layer."""

        def __init__(self, wrapped):
            super().__init__()
            self.inner = wrapped

        def forward(self, hidden_states, attention_mask=None, head_mask=None, encoder_hidden_states=None,
                    *args, **kwargs):
            global _FUSED_LAYER_FN
            extra = args or any(v not in (None, False) for k, v in kwargs.items() if k != "cache_position")
            if head_mask is not None or encoder_hidden_states is not None or extra or not _fused_applies(self.inner):
                return self.inner(hidden_states, attention_mask, head_mask, encoder_hidden_states, *args, **kwargs)
            mask = attention_mask
            if mask is not None:
                if mask.dtype == torch.bool:
                    mask = torch.zeros(mask.shape, dtype=hidden_states.dtype, device=mask.device).masked_fill(
                        ~mask, torch.finfo(hidden_states.dtype).min)
                while mask.dim() < 4:
                    mask = mask.unsqueeze(1)
                mask = mask.to(hidden_states.dtype)
            if _FUSED_LAYER_FN is None:
                _FUSED_LAYER_FN = _fused_layer_fn()
            heads = self.inner.attention.self.num_attention_heads
            return (_FUSED_LAYER_FN.apply(hidden_states.contiguous(), mask, self.inner, heads),)

    return FusedBertLayer(inner)


@contextmanager
def fused_layers(model, enabled: bool = True):
    """Within the block, the full (stock) layers of a ``BertForSequenceClassification`` run as
    :class:`FusedBertLayer` (input gradients only: use with :func:`frozen_parameters`; the
    [CLS]-only layer of :func:`cls_only_last_layer` is left alone).  Exact up to float
    rounding; the layers are put back afterwards, even on error; a no-op for other models or
    when ``enabled`` is False."""
    cfg = getattr(model, "config", None)
    layers = getattr(getattr(getattr(model, "bert", None), "encoder", None), "layer", None)
    if (not enabled or cfg is None or not layers or type(model).__name__ != "BertForSequenceClassification"
            or not fast_path_family(model)
            or getattr(cfg, "position_embedding_type", "absolute") != "absolute"
            or getattr(cfg, "is_decoder", False) or getattr(cfg, "add_cross_attention", False)):
        yield False
        return
    from transformers.models.bert.modeling_bert import BertLayer

    swapped = []
    try:
        for i, layer in enumerate(layers):
            if type(layer) is BertLayer:
                swapped.append((i, layer))
                layers[i] = _fused_layer(layer)
        yield bool(swapped)
    finally:
        for i, layer in swapped:
            layers[i] = layer
