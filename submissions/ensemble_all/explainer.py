"""Ensemble (All Methods), paper 001 sec. 3.4: the mean of the L1-normalised word maps of paper
001's seven methods (gradient, gradient x input, integrated gradients, LIME, Kernel SHAP,
average attention, attention rollout), each run as its own built-in submission on the same
batch.  Shared implementation and the reading of the normalisation:
:mod:`harness.explainers.ensemble`.
"""

from __future__ import annotations

from harness.explainers.ensemble import ALL_METHODS, Ensemble


class EnsembleAll(Ensemble):
    name = "ensemble_all"
    version = "1.0.0"

    def __init__(self, members=ALL_METHODS, member_params=None) -> None:
        super().__init__(members=members, member_params=member_params)
