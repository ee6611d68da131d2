"""Leave-one-out / erasure (Li, Monroe & Jurafsky, 2016) at the word level.

The shared implementation is :class:`harness.explainers.loo.LeaveOneOut` (also used by the
``loo_*`` variants): score_j = s(x) - s(x with word j removed), with the removal ``operator``
(``delete``, ``unk``, ``mask``, ``pad``, ``zero``, ``mlm``; see :mod:`harness.models.removal`) and the
``space`` of s (``prob``: the target-class probability, this submission's default; ``log_odds``:
log2(p / (1 - p)) as in paper 003).  The original and all n single-word removals of every
example of the batch go through the model in one batched no-grad call (sorted by length).
Deterministic, no sampling.
"""

from __future__ import annotations

from harness.explainers.loo import LeaveOneOut as _LeaveOneOut


class LeaveOneOut(_LeaveOneOut):
    name = "leave_one_out"
    version = "1.1.0"
