"""Leave-one-out, operator ``unk``, in log-odds space (paper 003 sec. 2 and 4).

LOO_unk: each token of the word replaced by [UNK] (Kim et al. 2020; paper 003).  score_j = log2(p/(1-p))(x) - log2(p/(1-p))(x with word j removed), p the target-class
probability; all removals of the batch in one batched call.  Implementation shared with the
other LOO variants: :class:`harness.explainers.loo.LeaveOneOut`.
"""

from __future__ import annotations

from harness.explainers.loo import LeaveOneOut


class LooUnk(LeaveOneOut):
    name = "loo_unk"
    version = "1.0.0"

    def __init__(self, operator: str = "unk", space: str = "log_odds") -> None:
        super().__init__(operator=operator, space=space)
