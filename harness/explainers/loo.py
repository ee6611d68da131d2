"""Leave-one-out / erasure (Li, Monroe & Jurafsky 2016; paper 003 eq. 1) with any removal operator.

score_j = s(x) - s(x with word j removed), where

- ``space="prob"``: s = p(target | .), the softmax probability (the ``leave_one_out`` baseline);
- ``space="log_odds"``: s = log2(p / (1 - p)) of that probability, in bits, as paper 003 puts
  every LOO variant so that it compares with IM (paper 003 eq. 4 and sec. 4).  Computed
  exactly from the logits (log p - log(1 - p) = logit_t - logsumexp of the other logits, over
  ln 2), so it never overflows when the classifier is confident.

The removal operator (:mod:`harness.models.removal`) says how word j is taken out: ``delete`` (the
word is dropped: paper 003's LOO_empty), ``unk`` / ``mask`` / ``pad`` (its tokens replaced by
[UNK] / [MASK] / [PAD]: paper 003's LOO_unk and, after Kim et al. 2020, its "LOO_zero" which
is the [PAD] token), ``zero`` (its token embeddings set to the zero vector) or ``mlm`` (the
masked LM's top-1 fill).  The original and all single-word removals of every example of the
batch go through the classifier in one batched call (sorted by length).
"""

from __future__ import annotations

import numpy as np

from harness.explainers.common import log_odds, removed_logits_by_length, target_proba
from harness.protocols import Attributions, ExplainBatch
from harness.models.removal import OPERATORS, check_operator, composable, kept_outputs_grouped, logits_forward

SPACES = ("prob", "log_odds")


class LeaveOneOut:
    name = "leave_one_out"
    version = "1.1.0"

    def __init__(self, operator: str = "delete", space: str = "prob") -> None:
        try:
            check_operator(operator)
        except ValueError as e:
            raise ValueError(f"leave_one_out: unknown operator {operator!r}; implemented: {', '.join(OPERATORS)} "
                             f"(\"delete\" removes the word from the sequence) [{e}]") from None
        if space not in SPACES:
            raise ValueError(f"leave_one_out: unknown space {space!r}; use one of {', '.join(SPACES)}")
        self.operator = operator
        self.space = space

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        targets = batch.targets.cpu().numpy()
        spans, rows_t, start = [], [], 0
        for i in range(len(batch)):
            n = batch.n_words(i)
            spans.append((start, n))  # the input itself, then without word j (j = 0..n-1)
            start += n + 1
            rows_t += [int(targets[i])] * (n + 1)
        if self.operator == "delete" and composable(model):
            # each input's rows as one keep matrix, sent in order of the input's length (stable)
            groups = [(batch.segments[i], ~np.vstack([np.zeros((1, n), dtype=bool), np.eye(n, dtype=bool)]))
                      for i, (_, n) in enumerate(spans)]
            lengths = np.concatenate([np.full(n + 1, n) for _, n in spans])
            logits = kept_outputs_grouped(model, groups, logits_forward(model), model.num_labels,
                                          np.argsort(lengths, kind="stable"))
        else:
            segments, removes = [], []
            for i, (_, n) in enumerate(spans):
                segments += [batch.segments[i]] * (n + 1)
                removes.append(np.zeros(n, dtype=bool))
                removes += list(np.eye(n, dtype=bool))
            logits = removed_logits_by_length(model, segments, removes, self.operator)
        s = log_odds(logits, rows_t) if self.space == "log_odds" else target_proba(logits, rows_t)
        scores = [s[start] - s[start + 1:start + 1 + n] for start, n in spans]
        return Attributions(level="word", scores=scores)
