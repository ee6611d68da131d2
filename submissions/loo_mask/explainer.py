"""Leave-one-out, operator ``mask``, in log-odds space (paper 003 sec. 2 and 4).

LOO_mask: each token of the word replaced by [MASK].  score_j = log2(p/(1-p))(x) - log2(p/(1-p))(x with word j removed), p the target-class
probability; all removals of the batch in one batched call.  Implementation shared with the
other LOO variants: :class:`harness.explainers.loo.LeaveOneOut`.
"""

from __future__ import annotations

from harness.explainers.loo import LeaveOneOut


class LooMask(LeaveOneOut):
    name = "loo_mask"
    version = "1.0.0"

    def __init__(self, operator: str = "mask", space: str = "log_odds") -> None:
        super().__init__(operator=operator, space=space)
