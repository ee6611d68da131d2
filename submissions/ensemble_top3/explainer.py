"""Ensemble (Top 3), paper 001 sec. 3.4: the mean of the L1-normalised word maps of LIME, Kernel
SHAP and integrated gradients (the three methods paper 001 found consistently best), each run
as its own built-in submission on the same batch.  Shared implementation:
:mod:`harness.explainers.ensemble`.
"""

from __future__ import annotations

from harness.explainers.ensemble import TOP3, Ensemble


class EnsembleTop3(Ensemble):
    name = "ensemble_top3"
    version = "1.0.0"

    def __init__(self, members=TOP3, member_params=None) -> None:
        super().__init__(members=members, member_params=member_params)
