"""Kernel SHAP (Lundberg & Lee, 2017) over word presence, with ``shap.KernelExplainer``.

Features are the words of the input (all segments).  A coalition z in {0,1}^n is the
input with the absent words deleted from the sequence
(:func:`harness.explain_utils.keep_words`); the background is the all-zeros vector, i.e.
every word deleted ([CLS] [SEP] alone, or [CLS] [SEP] [SEP] for pairs: a valid input).
The model function maps a matrix of coalitions to the target-class probability with one
batched :meth:`ModelBundle.proba_of_segments` call per call from shap (shap evaluates all
of an example's coalitions in one call).  Distinct coalitions are predicted once.

Regularisation: ``l1_reg`` is passed to shap.  shap >= 0.47 defaults to
``"num_features(10)"``, which gives every word beyond the 10 selected by LARS a score of
exactly 0; this submission defaults to ``False`` (plain weighted least squares over all
words, the estimator of the paper) so that every word is scored.

Determinism: shap's Kernel explainer samples coalitions from numpy's *global* RNG and
takes no seed.  Each example is explained right after ``np.random.seed(example_seed(batch,
i))`` (a seed that depends only on the batch seed and the example), and the caller's global
RNG state is restored afterwards, so results are reproducible, independent of batch
composition, and the global state is left as it was.  Not thread-safe (global RNG).
"""

from __future__ import annotations

import logging

import numpy as np
import shap

from harness.explain_utils import example_seed
from harness.explainers.common import coalition_proba_fn
from harness.protocols import Attributions, ExplainBatch


class KernelShap:
    name = "kernel_shap"
    version = "1.0.0"

    def __init__(self, nsamples: int = 500, l1_reg: str | float | bool = False) -> None:
        if nsamples < 1:
            raise ValueError(f"nsamples must be >= 1, got {nsamples}")
        self.nsamples = int(nsamples)
        self.l1_reg = l1_reg

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        targets = batch.targets.cpu().numpy()
        scores = []
        shap_log = logging.getLogger("shap")
        state = np.random.get_state()
        level = shap_log.level
        try:
            # once per batch: setLevel clears every logger's cache (~0.4 ms a call)
            shap_log.setLevel(max(level, logging.WARNING))
            for i in range(len(batch)):
                n = batch.n_words(i)
                if n == 0:
                    scores.append(np.zeros(0))
                    continue
                f = coalition_proba_fn(model, batch.segments[i], int(targets[i]))
                np.random.seed(example_seed(batch, i))
                explainer = shap.KernelExplainer(f, np.zeros((1, n)), link="identity")
                phi = explainer.shap_values(np.ones(n), nsamples=self.nsamples, l1_reg=self.l1_reg, silent=True)
                scores.append(np.asarray(phi, dtype=np.float64).reshape(n))
        finally:
            shap_log.setLevel(level)
            np.random.set_state(state)
        return Attributions(level="word", scores=scores)
