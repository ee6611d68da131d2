"""Input Marginalization (Kim et al. 2020), as specified by paper 003 (eq. 3-4, top-10 variant).

Shared by the ``input_marginalization`` and ``input_marginalization_renorm`` submissions.

For each word x_i of the input x:

    E_i = sum over the masked LM's top-k fills w of  p(w | x_-i) * f(x with x_i replaced by w)   (eq. 3)
    a_i = log-odds(f(x)) - log-odds(E_i),   log-odds(p) = log2(p / (1 - p))                 (eq. 4)

f is the classifier's probability of the target class; p(w | x_-i) is the masked LM's
likelihood of w at position i with x_i masked (one [MASK] token, whole-word candidates only;
see :mod:`harness.models.mlm`).  k = 10 as in paper 003 (sec. 2: "we marginalize over the top-10";
IM-top10 of appendix D).

Renormalisation: paper 003's eq. 3 weights each counterfactual by the masked LM's own
likelihood and the paper notes that the top-10 words "already account for 81%, 90%, and 92%
of the probability mass", i.e. the top-10 likelihoods are used as they are, not rescaled to
sum to 1.  ``renormalize=False`` (default) follows that; ``renormalize=True`` divides by
their sum (a proper expectation over the top-k).  Without renormalisation E_i under-counts
by the missing mass, so 1 - E_i = (1 - sum_w p(w)) + sum_w p(w) (1 - f(x_w)).

Batching: all n single-word-masked variants of every example of the batch go to the masked
LM in one call (n masked-LM sequences per example), and the original plus all n * k filled
variants of the whole batch go through the classifier in one batched no-grad call (sorted
by length; identical variants, e.g. a fill that restores the original word, are predicted
once).  Deterministic.
"""

from __future__ import annotations

import numpy as np

from harness.explainers.common import log2_p_and_not_p, logits_by_length
from harness.protocols import Attributions, ExplainBatch, Segments


def replace_word(segments: Segments, j: int, word: str) -> Segments:
    """``segments`` with word j (counting across segments) replaced by ``word``."""
    out, k = [], 0
    for seg in segments:
        out.append(tuple(word if k + t == j else w for t, w in enumerate(seg)))
        k += len(seg)
    return tuple(out)


def marginal_log_odds(weights: np.ndarray, log2_p: np.ndarray, log2_q: np.ndarray, renormalize: bool) -> float:
    """log2(E / (1 - E)) for E = sum_w weights[w] * p_w, from log2 p_w and log2 (1 - p_w).

    Without renormalisation the missing mass 1 - sum(weights) counts towards 1 - E."""
    w = np.asarray(weights, dtype=np.float64)
    p, q = np.exp2(log2_p), np.exp2(log2_q)
    if renormalize:
        w = w / w.sum()
        e, not_e = float(w @ p), float(w @ q)
    else:
        e = float(w @ p)
        not_e = max(0.0, 1.0 - float(w.sum())) + float(w @ q)
    tiny = np.finfo(np.float64).tiny
    return float(np.log2(max(e, tiny)) - np.log2(max(not_e, tiny)))


class InputMarginalization:
    name = "input_marginalization"
    version = "1.0.0"

    def __init__(self, k: int = 10, renormalize: bool = False) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = int(k)
        self.renormalize = bool(renormalize)

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        mlm = getattr(model, "mlm", None)
        if mlm is None:
            raise ValueError("input_marginalization needs a masked LM, but the model bundle has none "
                             "(the runner attaches one; see harness.models.mlm)")
        B = len(batch)
        targets = batch.targets.cpu().numpy()
        queries = [(i, j) for i in range(B) for j in range(batch.n_words(i))]
        fills = mlm.top_fills([batch.segments[i] for i, _ in queries], [[j] for _, j in queries], self.k) \
            if queries else []
        texts: list[Segments] = []
        index: dict = {}

        def row(segs: Segments) -> int:
            r = index.get(segs)
            if r is None:
                r = index[segs] = len(texts)
                texts.append(segs)
            return r

        orig_rows = [row(batch.segments[i]) for i in range(B)]
        plan = []  # per query: (weights, rows)
        for (i, j), f in zip(queries, fills):
            cands = f[0]
            plan.append((np.array([p for _, p in cands], dtype=np.float64),
                         [row(replace_word(batch.segments[i], j, w)) for w, _ in cands]))
        logits = logits_by_length(model, texts) if texts else np.zeros((0, model.num_labels))
        # log2 p_c and log2 (1 - p_c) of every text, for every class c
        C = logits.shape[1]
        lp = np.zeros((len(texts), C))
        lq = np.zeros((len(texts), C))
        for c in range(C):
            lp[:, c], lq[:, c] = log2_p_and_not_p(logits, np.full(len(texts), c))
        scores = [np.zeros(batch.n_words(i)) for i in range(B)]
        for (i, j), (w, rows) in zip(queries, plan):
            t, r0 = int(targets[i]), orig_rows[i]
            scores[i][j] = (lp[r0, t] - lq[r0, t]) - marginal_log_odds(w, lp[rows, t], lq[rows, t], self.renormalize)
        return Attributions(level="word", scores=scores)
