"""Occlusion (Zeiler & Fergus 2014) over words: a sliding window of ``window`` consecutive words
whose tokens are all replaced by [PAD] ids.

For every window position w (stride 1, windows inside one segment, as captum's ``Occlusion``
never slides past the input's edge), d_w = p(target | x) - p(target | x with the window's tokens
set to [PAD]); the score of a word is the mean of d_w over the windows that cover it (captum
``Occlusion``'s rule: attributions summed over covering windows, divided by their count).
Probability space, like captum's Occlusion on the classifier's probabilities.

How it differs from leave-one-out: windows of 3 words (the default) measure a word together
with its neighbours (phrase-level evidence such as "not good"), and the occluded tokens are
[PAD] ids (the sequence keeps its length and positions; [PAD] stays attended) rather than a
deletion.  ``window=1`` is exactly ``loo_pad`` in probability space.  A segment shorter than
the window is occluded as a whole (one window).

Batching: the original and every occluded variant of all examples of the batch go through the
classifier in one batched no-grad call (sorted by length).  Deterministic.
"""

from __future__ import annotations

import numpy as np

from harness.explainers.common import removed_logits_by_length, target_proba
from harness.protocols import Attributions, ExplainBatch


def windows(sizes: list[int], window: int) -> list[tuple[int, int]]:
    """[start, end) word spans (counting across segments) of every window, per segment."""
    out, offset = [], 0
    for s in sizes:
        if s:
            w = min(window, s)
            out += [(offset + a, offset + a + w) for a in range(s - w + 1)]
        offset += s
    return out


class Occlusion:
    name = "occlusion"
    version = "1.0.0"

    def __init__(self, window: int = 3, operator: str = "pad") -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if operator not in ("pad", "unk", "mask", "zero", "delete"):
            raise ValueError(f"operator must be pad, unk, mask, zero or delete, got {operator!r}")
        self.window = int(window)
        self.operator = operator

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        targets = batch.targets.cpu().numpy()
        segments, removes, plan, rows_t = [], [], [], []
        for i in range(len(batch)):
            n = batch.n_words(i)
            spans = windows([len(s) for s in batch.segments[i]], self.window)
            plan.append((len(segments), spans, n))
            segments.append(batch.segments[i])
            removes.append(np.zeros(n, dtype=bool))
            for a, b in spans:
                r = np.zeros(n, dtype=bool)
                r[a:b] = True
                segments.append(batch.segments[i])
                removes.append(r)
            rows_t += [int(targets[i])] * (len(spans) + 1)
        p = target_proba(removed_logits_by_length(model, segments, removes, self.operator), rows_t)
        scores = []
        for start, spans, n in plan:
            total, count = np.zeros(n), np.zeros(n)
            for k, (a, b) in enumerate(spans):
                total[a:b] += p[start] - p[start + 1 + k]
                count[a:b] += 1
            scores.append(np.divide(total, count, out=np.zeros(n), where=count > 0))
        return Attributions(level="word", scores=scores)
