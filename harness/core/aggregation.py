"""Harness-owned sub-word -> word aggregation (recorded in every result)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

AGGREGATIONS = ("absmax", "mean", "sum")


def aggregate(token_scores: np.ndarray, word_ids: Sequence[int | None], n_words: int,
              rule: str = "absmax") -> np.ndarray:
    """Merge token scores (T,) into word scores (n_words,).

    ``absmax`` keeps, per word, the sub-word score of largest magnitude with its sign
    (paper 000 sec. 4.4); ``mean`` and ``sum`` average / add the sub-word scores.
    Tokens whose word id is ``None`` (specials, padding) are ignored.
    """
    if rule not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {rule!r}; choose one of {AGGREGATIONS}")
    token_scores = np.asarray(token_scores, dtype=np.float64)
    out = np.zeros(n_words, dtype=np.float64)
    counts = np.zeros(n_words, dtype=np.int64)
    best = np.full(n_words, -1.0)
    for t, w in enumerate(word_ids):
        if w is None or w >= n_words:
            continue
        s = token_scores[t]
        counts[w] += 1
        if rule == "absmax":
            if abs(s) > best[w]:
                best[w] = abs(s)
                out[w] = s
        else:
            out[w] += s
    if np.any(counts == 0):
        missing = np.flatnonzero(counts == 0).tolist()
        raise ValueError(f"words {missing} have no tokens in the encoding")
    if rule == "mean":
        out = out / counts
    return out
