"""Checking an explainer's output and turning it into word-level maps (harness-owned)."""

from __future__ import annotations

import numpy as np

from harness.core.aggregation import aggregate
from harness.protocols import Attributions, ExplainBatch


class OutputError(ValueError):
    """An explainer returned something that is not a valid attribution map for the batch."""


def _as_float_array(x, what: str) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(x)
    if arr.dtype == object:
        raise OutputError(f"{what}: expected a numeric array, got dtype object")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise OutputError(f"{what}: expected floating-point scores, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def check_attributions(attr, batch: ExplainBatch, special_atol: float = 1e-8) -> list[np.ndarray]:
    """Validate ``attr`` against ``batch``; return per-example raw score arrays.

    Token level: one (T_i,) array per example over its non-padding positions.
    Word level: one (n_words_i,) array per example.
    Raises :class:`OutputError` with a specific message on the first violation.
    """
    if not isinstance(attr, Attributions):
        raise OutputError(f"explain() must return harness.protocols.Attributions, got {type(attr).__name__}")
    B = len(batch)
    if attr.level == "token":
        arr = _as_float_array(attr.scores, "token scores")
        expected = tuple(batch.input_ids.shape)
        if arr.shape != expected:
            raise OutputError(f"shape: expected token scores of shape {expected} (batch, tokens), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            bad = int((~np.isfinite(arr)).sum())
            raise OutputError(f"finite: {bad} token scores are NaN or infinite")
        special = batch.special_tokens_mask.cpu().numpy()
        if np.any(np.abs(arr[special]) > special_atol):
            worst = float(np.abs(arr[special]).max())
            raise OutputError(f"special tokens: [CLS]/[SEP]/[PAD] positions must score 0, found |score| up to {worst:.3g}")
        lengths = batch.attention_mask.sum(1).cpu().numpy()
        return [arr[i, : int(lengths[i])] for i in range(B)]
    if attr.level == "word":
        if not isinstance(attr.scores, (list, tuple)) and not (hasattr(attr.scores, "shape") and len(attr.scores.shape) == 2):
            raise OutputError(f"word scores must be a list of {B} arrays, got {type(attr.scores).__name__}")
        if len(attr.scores) != B:
            raise OutputError(f"shape: expected word scores for {B} examples, got {len(attr.scores)}")
        out = []
        for i, s in enumerate(attr.scores):
            a = _as_float_array(s, f"word scores of example {i}")
            n = batch.n_words(i)
            if a.shape != (n,):
                raise OutputError(f"shape: example {i} has {n} words, got word scores of shape {a.shape}")
            if not np.all(np.isfinite(a)):
                raise OutputError(f"finite: example {i} has {int((~np.isfinite(a)).sum())} NaN or infinite word scores")
            out.append(a)
        return out
    raise OutputError(f"level must be 'token' or 'word', got {attr.level!r}")


def word_maps(attr: Attributions, raw: list[np.ndarray], batch: ExplainBatch, rule: str) -> list[np.ndarray]:
    """Word-level maps from checked raw scores (aggregating tokens with ``rule``)."""
    if attr.level == "word":
        return raw
    return [aggregate(r, batch.word_ids[i][: r.size], batch.n_words(i), rule) for i, r in enumerate(raw)]


def check_extras(attr: Attributions, batch: ExplainBatch) -> dict[str, np.ndarray]:
    out = {}
    for k, v in (attr.extras or {}).items():
        a = _as_float_array(v, f"extra {k!r}").reshape(-1)
        if a.shape != (len(batch),):
            raise OutputError(f"extra {k!r}: expected one value per example ({len(batch)}), got shape {a.shape}")
        if not np.all(np.isfinite(a)):  # extras become the record's diagnostics: JSON has no NaN / infinity
            raise OutputError(f"finite: extra {k!r} has {int((~np.isfinite(a)).sum())} NaN or infinite values")
        out[k] = a
    return out
