"""Leave-one-out / erasure (Li, Monroe & Jurafsky, 2016) at the word level.

score_j = p(target | x) - p(target | x with word j deleted).  The original and all n
single-word deletions of every example of the batch go through the model in one
:meth:`ModelBundle.proba_of_segments` call (sorted by length, so chunks carry little
padding).  Deterministic, no sampling.
"""

from __future__ import annotations

import numpy as np

from harness.explain_utils import keep_words
from harness.protocols import Attributions, ExplainBatch


def proba_by_length(model, inputs):
    """``model.proba_of_segments(inputs)``, evaluated in order of length (less padding per chunk)."""
    order = sorted(range(len(inputs)), key=lambda k: sum(len(s) for s in inputs[k]))
    out = model.proba_of_segments([inputs[k] for k in order])
    proba = np.empty_like(out)
    proba[order] = out
    return proba


OPERATORS = ("delete",)


class LeaveOneOut:
    name = "leave_one_out"
    version = "1.0.0"

    def __init__(self, operator: str = "delete") -> None:
        if operator not in OPERATORS:
            raise ValueError(
                f"leave_one_out: unknown operator {operator!r}; implemented: {', '.join(OPERATORS)} "
                "(\"delete\" removes the word from the sequence)")
        self.operator = operator

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        inputs, spans = [], []
        for i in range(len(batch)):
            segs = batch.segments[i]
            n = batch.n_words(i)
            start = len(inputs)
            inputs.append(segs)
            for j in range(n):
                keep = np.ones(n, dtype=bool)
                keep[j] = False
                inputs.append(keep_words(segs, keep))
            spans.append((start, n))
        proba = proba_by_length(model, inputs)
        targets = batch.targets.cpu().numpy()
        scores = []
        for i, (start, n) in enumerate(spans):
            p = proba[start:start + n + 1, int(targets[i])]
            scores.append(p[0] - p[1:])
        return Attributions(level="word", scores=scores)
