"""Helpers for writing explainers (used by the built-in baselines; free for submissions)."""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from harness.protocols import ExplainBatch, Segments


def example_seed(batch: ExplainBatch, i: int) -> int:
    """A seed that depends only on (batch.seed, example i's words): batch-composition invariant."""
    h = hashlib.sha256(repr((batch.seed, batch.segments[i])).encode()).digest()
    return int.from_bytes(h[:4], "little")


def example_rng(batch: ExplainBatch, i: int) -> np.random.Generator:
    return np.random.default_rng(example_seed(batch, i))


def keep_words(segments: Segments, keep: Sequence[bool]) -> Segments:
    """Drop the words whose ``keep`` flag is False (flags run over all segments' words)."""
    out, k = [], 0
    for seg in segments:
        out.append(tuple(w for j, w in enumerate(seg) if keep[k + j]))
        k += len(seg)
    return tuple(out)


def replace_words(segments: Segments, replace: Sequence[bool], token: str) -> Segments:
    """Replace the flagged words by ``token`` (e.g. the tokenizer's [MASK] or [UNK])."""
    out, k = [], 0
    for seg in segments:
        out.append(tuple(token if replace[k + j] else w for j, w in enumerate(seg)))
        k += len(seg)
    return tuple(out)


def zero_specials(scores: np.ndarray, batch: ExplainBatch) -> np.ndarray:
    """Set special and padding positions of a (B, T) map to exactly 0."""
    scores = np.array(scores, dtype=np.float64)
    scores[batch.special_tokens_mask.cpu().numpy()] = 0.0
    return scores


def first_occurrences(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(chosen, text_of)`` of a C-contiguous 2-d array: the indices of its distinct rows' first
    occurrences in row order, and for every row the position of its distinct row in ``chosen``
    (rows compared by their bytes: exact equality)."""
    a = np.ascontiguousarray(rows)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-d array, got shape {a.shape}")
    if a.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if a.shape[1] == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(a.shape[0], dtype=np.int64)
    v = a.view(np.dtype((np.void, a.shape[1] * a.itemsize))).reshape(-1)
    _, first, inverse = np.unique(v, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return np.sort(first), rank[inverse.reshape(-1)]


def legacy_permutations(random_state: np.random.RandomState, n: int, count: int) -> np.ndarray:
    """(count, n): ``[random_state.permutation(n) for _ in range(count)]``, the same draws in the
    same order (``permutation(n)`` shuffles ``arange(n)`` in place; here the rows of one
    ``arange`` tile are shuffled in place, without an array built per call)."""
    perms = np.tile(np.arange(n), (count, 1))
    shuffle = random_state.shuffle
    for row in perms:
        shuffle(row)
    return perms


def first_of_permutations(perms: np.ndarray, sizes) -> np.ndarray:
    """(count, n) boolean: row r flags ``perms[r, :sizes[r]]`` (the first ``sizes[r]`` elements of
    each permutation: ``choice(range(n), size, replace=False)`` of a RandomState)."""
    out = np.zeros(perms.shape, dtype=bool)
    np.put_along_axis(out, perms, np.arange(perms.shape[1])[None, :] < np.asarray(sizes)[:, None], axis=1)
    return out
