"""Batched model access and small numerical helpers shared by the built-in explainers."""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Sequence

import numpy as np

from harness.protocols import ExplainBatch, Segments

LN2 = math.log(2.0)


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


def removed_logits_by_length(model, segments: Sequence[Segments], removes: Sequence[np.ndarray],
                             operator: str) -> np.ndarray:
    """:func:`harness.removal.removed_logits` with the inputs sorted by length (one batched call)."""
    from harness.removal import removed_logits

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
            h0 = hidden_states[:, :1]
            q = sa.query(h0).view(B, H, dh)
            wk = sa.key.weight.view(H, dh, D)
            wv = sa.value.weight.view(H, dh, D)
            qk = torch.einsum("bhd,hdk->bhk", q, wk)  # (B, H, D): W_k^T q per head
            scores = torch.einsum("bhk,btk->bht", qk, hidden_states) / math.sqrt(dh)
            if attention_mask is not None:
                m = attention_mask
                if m.dtype == torch.bool:
                    m = torch.zeros(m.shape, dtype=scores.dtype, device=m.device).masked_fill(
                        ~m, torch.finfo(scores.dtype).min)
                scores = scores + m[:, :, 0, :]  # (B, 1 or H, T): the [CLS] row of the additive mask
            probs = sa.dropout(torch.softmax(scores, dim=-1))
            hbar = torch.einsum("bht,btk->bhk", probs, hidden_states)  # (B, H, D)
            ctx = torch.einsum("bhk,hdk->bhd", hbar, wv)
            if sa.value.bias is not None:
                ctx = ctx + sa.value.bias.view(H, dh)
            attn_out = lay.attention.output(ctx.reshape(B, 1, H * dh), h0)
            return (lay.output(lay.intermediate(attn_out), attn_out),)

    return ClsOnlyBertLayer(layer)


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
            and type(model).__name__ == "BertForSequenceClassification")


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
