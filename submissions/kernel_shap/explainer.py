"""Kernel SHAP (Lundberg & Lee, 2017) over word presence, as ``shap.KernelExplainer`` computes it.

Features are the words of the input (all segments).  A coalition z in {0,1}^n is the
input with the absent words deleted from the sequence
(:func:`harness.explain_utils.keep_words`); the background is the all-zeros vector, i.e.
every word deleted ([CLS] [SEP] alone, or [CLS] [SEP] [SEP] for pairs: a valid input);
identity link, the target-class probability.

Regularisation: ``l1_reg`` is passed to shap.  shap >= 0.47 defaults to
``"num_features(10)"``, which gives every word beyond the 10 selected by LARS a score of
exactly 0; this submission defaults to ``False`` (plain weighted least squares over all
words, the estimator of the paper) so that every word is scored.

How it runs:

- ``l1_reg=False`` (the default): the steps of ``KernelExplainer.explain`` (shap 0.51, pinned) done
  here for all examples of the batch at once: the same coalitions drawn in the same order from
  the same random stream (the fully enumerated subset sizes, then ``choice`` of the remaining
  sizes and one ``permutation`` per sample, repeated coalitions adding weight), the same kernel
  weights, the same constrained weighted least squares.  The full input, the empty input and
  every distinct coalition of *every* example go through the model in one length-sorted
  batched call, instead of three calls per example plus shap's per-sample bookkeeping.  Equal
  to the library within float rounding (``tests/test_explainers.py`` runs both).
- any other ``l1_reg``: ``shap.KernelExplainer`` itself, one example at a time (its feature
  selection is the library's).

Determinism: shap's Kernel explainer samples coalitions from numpy's *global* RNG and takes no
seed.  Each example draws from the stream of ``np.random.seed(example_seed(batch, i))`` (a seed
that depends only on the batch seed and the example): the native path from its own
``RandomState`` with that seed (the same stream), the library path from the global RNG seeded
so, restored afterwards.  Results are reproducible, independent of batch composition, and the
global state is left as it was.  (The library path is not thread-safe: global RNG.)
"""

from __future__ import annotations

import itertools
import logging

import numpy as np

from harness.explain_utils import example_seed, first_of_permutations, legacy_permutations
from harness.explainers.common import coalition_proba_fn, kept_proba_grouped, unique_bool_rows
from harness.protocols import Attributions, ExplainBatch


def kernel_shap_samples(M: int, nsamples: int, rs: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """``(masks, weights)``: the coalitions (k, M) and kernel weights (k,) that
    ``shap.KernelExplainer.explain`` builds for ``M`` > 1 varying features and ``nsamples``,
    drawing from ``rs`` as shap draws from the global RNG (``M`` > 1)."""
    from scipy.special import binom

    max_samples = 2 ** 30
    if M <= 30:
        max_samples = 2 ** M - 2
        nsamples = min(nsamples, max_samples)
    masks = np.zeros((nsamples, M))
    weights = np.zeros(nsamples)
    added = 0
    num_subset_sizes = int(np.ceil((M - 1) / 2.0))
    num_paired = int(np.floor((M - 1) / 2.0))
    weight_vector = np.array([(M - 1.0) / (i * (M - i)) for i in range(1, num_subset_sizes + 1)])
    weight_vector[:num_paired] *= 2
    weight_vector /= np.sum(weight_vector)
    num_full = 0
    left = nsamples
    remaining = weight_vector.copy()
    for size in range(1, num_subset_sizes + 1):  # the subset sizes that can be fully enumerated
        nsubsets = binom(M, size)
        if size <= num_paired:
            nsubsets *= 2
        if left * remaining[size - 1] / nsubsets >= 1.0 - 1e-8:
            num_full += 1
            left -= nsubsets
            if remaining[size - 1] < 1.0:
                remaining /= 1 - remaining[size - 1]
            w = weight_vector[size - 1] / binom(M, size)
            if size <= num_paired:
                w /= 2.0
            for inds in itertools.combinations(range(M), size):
                masks[added, list(inds)] = 1.0
                weights[added] = w
                added += 1
                if size <= num_paired:
                    masks[added] = 1.0
                    masks[added, list(inds)] = 0.0
                    weights[added] = w
                    added += 1
        else:
            break
    nfixed = added
    samples_left = nsamples - added
    if num_full != num_subset_sizes:
        remaining = weight_vector.copy()
        remaining[:num_paired] /= 2  # two samples drawn each below
        remaining = remaining[num_full:]
        remaining /= np.sum(remaining)
        ind_set = rs.choice(len(remaining), 4 * samples_left, p=remaining)
        used: dict[bytes, int] = {}
        src: list[int] = []  # per random sample: its drawn row, or -1 - row for that row's complement
        drawn = []  # the permutations' rows as 0/1 masks, chunk by chunk
        pos = 0
        keys: list[bytes] = []
        while samples_left > 0 and pos < len(ind_set):
            if pos == len(keys):
                # the next permutation(M)s, consecutive in the stream; drawing more than the loop
                # uses is harmless (rs is re-seeded for the next example)
                k = min(len(ind_set) - pos, max(16, samples_left))
                present = first_of_permutations(legacy_permutations(rs, M, k), ind_set[pos:pos + k] + num_full + 1)
                drawn.append(present.astype(np.float64))
                keys += [r.tobytes() for r in np.packbits(present, axis=1)]
            size = int(ind_set[pos]) + num_full + 1
            key = keys[pos]
            pos += 1
            at = used.get(key)
            if at is None:
                used[key] = added
                samples_left -= 1
                src.append(pos - 1)
                weights[added] = 1.0
                added += 1
            else:
                weights[at] += 1.0
            if samples_left > 0 and size <= num_paired:
                if at is None:
                    samples_left -= 1
                    src.append(-pos)  # -1 - (pos - 1)
                    weights[added] = 1.0
                    added += 1
                else:
                    weights[at + 1] += 1.0  # the complement follows its sample
        if src:
            all_rows = np.concatenate(drawn)
            idx = np.asarray(src)
            picked = all_rows[np.where(idx >= 0, idx, -1 - idx)]
            comp = idx < 0
            picked[comp] = 1.0 - picked[comp]
            masks[nfixed:added] = picked
        weight_left = np.sum(weight_vector[num_full:])
        tail = weights[nfixed:]
        total = tail.sum()
        if total:
            weights[nfixed:] = tail * (weight_left / total)
    return masks[:added], weights[:added]


def kernel_shap_solve(masks: np.ndarray, weights: np.ndarray, ey: np.ndarray, fx: float, fnull: float) -> np.ndarray:
    """shap's ``KernelExplainer.solve`` without feature selection: weighted least squares of the
    coalition values with the last feature eliminated by the efficiency constraint
    (the scores sum to ``fx - fnull``); values under 1e-10 in magnitude become 0."""
    M = masks.shape[1]
    eyAdj = ey - fnull
    eyAdj2 = eyAdj - masks[:, M - 1] * (fx - fnull)
    X = masks[:, :M - 1] - masks[:, M - 1:M]
    WX = weights[:, None] * X
    try:
        w = np.linalg.solve(X.T @ WX, WX.T @ eyAdj2)
    except np.linalg.LinAlgError:  # shap's fallback for a singular system
        sqrt_w = np.sqrt(weights)
        w = np.linalg.lstsq(sqrt_w[:, None] * X, sqrt_w * eyAdj2, rcond=None)[0]
    phi = np.zeros(M)
    phi[:M - 1] = w
    phi[M - 1] = (fx - fnull) - sum(w)
    phi[np.abs(phi) < 1e-10] = 0.0
    return phi


class KernelShap:
    name = "kernel_shap"
    version = "1.1.0"

    def __init__(self, nsamples: int = 500, l1_reg: str | float | bool = False) -> None:
        if nsamples < 1:
            raise ValueError(f"nsamples must be >= 1, got {nsamples}")
        self.nsamples = int(nsamples)
        self.l1_reg = l1_reg

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        if self.l1_reg is False or (not isinstance(self.l1_reg, (str, bool)) and self.l1_reg == 0):
            return self._explain_native(model, batch)
        return self._explain_with_shap(model, batch)

    def _explain_native(self, model, batch: ExplainBatch) -> Attributions:
        targets = batch.targets.cpu().numpy()
        plans = []  # per example: None (no words), or (masks, weights, its first row, its coalitions' rows)
        groups, counts = [], []
        rows = 0
        rs = np.random.RandomState(0)  # re-seeded per example
        for i in range(len(batch)):
            n = batch.n_words(i)
            if n == 0:
                plans.append(None)
                continue
            # f(x), f(background), then the distinct coalitions
            keep = [np.ones((1, n), dtype=bool), np.zeros((1, n), dtype=bool)]
            masks = weights = inverse = None
            if n > 1:
                rs.seed(example_seed(batch, i))  # = RandomState(seed)'s stream; a new RandomState costs ~100 us
                masks, weights = kernel_shap_samples(n, self.nsamples, rs)
                uniq, inverse = unique_bool_rows(masks > 0.5)
                keep.append(uniq)
            keep = np.concatenate(keep)
            groups.append((batch.segments[i], keep))
            counts.append(keep.sum(1))
            plans.append((masks, weights, rows, None if inverse is None else rows + 2 + inverse))
            rows += len(keep)
        proba = (kept_proba_grouped(model, groups, np.concatenate(counts)) if groups
                 else np.zeros((0, model.num_labels)))
        scores = []
        for i, plan in enumerate(plans):
            if plan is None:
                scores.append(np.zeros(0))
                continue
            t = int(targets[i])
            fx, fnull = float(proba[plan[2], t]), float(proba[plan[2] + 1, t])
            if plan[0] is None:  # one word: it has all the effect
                scores.append(np.array([fx - fnull]))
                continue
            masks, weights, _, at = plan
            scores.append(kernel_shap_solve(masks, weights, proba[at, t], fx, fnull))
        return Attributions(level="word", scores=scores)

    def _explain_with_shap(self, model, batch: ExplainBatch) -> Attributions:
        import shap

        targets = batch.targets.cpu().numpy()
        scores = []
        shap_log = logging.getLogger("shap")
        state = np.random.get_state()
        level = shap_log.level
        try:
            # once per batch: setLevel clears every logger's cache (~0.4 ms a call)
            shap_log.setLevel(max(level, logging.WARNING))
            for i in range(len(batch)):
                n = batch.n_words(i)
                if n == 0:
                    scores.append(np.zeros(0))
                    continue
                f = coalition_proba_fn(model, batch.segments[i], int(targets[i]))
                np.random.seed(example_seed(batch, i))
                explainer = shap.KernelExplainer(f, np.zeros((1, n)), link="identity")
                phi = explainer.shap_values(np.ones(n), nsamples=self.nsamples, l1_reg=self.l1_reg, silent=True)
                scores.append(np.asarray(phi, dtype=np.float64).reshape(n))
        finally:
            shap_log.setLevel(level)
            np.random.set_state(state)
        return Attributions(level="word", scores=scores)
