"""Leave-one-out, operator ``pad``, in log-odds space (paper 003 sec. 2 and 4).

LOO_pad: each token of the word replaced by [PAD] (paper 003 and Kim et al. 2020 call this LOO_zero).  score_j = log2(p/(1-p))(x) - log2(p/(1-p))(x with word j removed), p the target-class
probability; all removals of the batch in one batched call.  Implementation shared with the
other LOO variants: :class:`harness.explainers.loo.LeaveOneOut`.
"""

from __future__ import annotations

from harness.explainers.loo import LeaveOneOut


class LooPad(LeaveOneOut):
    name = "loo_pad"
    version = "1.0.0"

    def __init__(self, operator: str = "pad", space: str = "log_odds") -> None:
        super().__init__(operator=operator, space=space)
