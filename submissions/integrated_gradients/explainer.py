"""Integrated gradients (Sundararajan et al., 2017) at the word-embedding layer.

Attributes the target-class probability to the word embeddings along the straight path from a
baseline to the input.  The baseline is the input with every non-special token replaced by
[PAD], keeping [CLS]/[SEP] (and padding) in place, with the same attention mask and segment
ids.  Score of token t = sum over the embedding dimension of
(e_t - e'_t) * sum_k w_k dp/de_t(e' + alpha_k (e - e')), with captum's Gauss-Legendre nodes
alpha_k and weights w_k for ``n_steps`` (default 50): the quantity captum's
``LayerIntegratedGradients`` computes on the word-embedding layer (checked in
``tests/test_zoo.py``), here evaluated with :func:`harness.explainers.gradients.integrated_gradients`:

- all (example, step) rows of the batch in as few passes as possible (``internal_batch_size``
  rows per forward/backward, whole examples per pass), examples sorted by length and each pass
  cut to its longest input;
- the embeddings of input and baseline are looked up once, not recomputed by forward passes;
  f(x) and f(baseline) for the convergence check come from one extra pass of 2B rows;
- parameters frozen during the backward (input gradients only), and for a BERT classifier the
  last layer evaluated at [CLS] only (the pooler reads nothing else; exact), the other layers
  as fused, cache-sized tiles with a hand-written input-gradient backward, and the position /
  segment embeddings added once per point batch (see :mod:`harness.explainers.gradients`).

``extras["convergence_delta"]`` is |f(x) - f(baseline) - sum_t attr_t| per example.
"""

from __future__ import annotations

import numpy as np

from harness.explain_utils import zero_specials
from harness.explainers.common import pad_baseline
from harness.explainers.gradients import integrated_gradients
from harness.protocols import Attributions, ExplainBatch


class IntegratedGradients:
    name = "integrated_gradients"
    version = "1.1.0"

    def __init__(self, n_steps: int = 50, internal_batch_size: int = 300,
                 method: str = "gausslegendre") -> None:
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        if internal_batch_size < 1:
            raise ValueError(f"internal_batch_size must be >= 1, got {internal_batch_size}")
        from harness.explainers.gradients import gauss_legendre

        gauss_legendre(1, method)  # unknown methods fail at construction
        self.n_steps = int(n_steps)
        self.internal_batch_size = int(internal_batch_size)
        self.method = method

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        attr, gap = integrated_gradients(model, batch, pad_baseline(batch, model.pad_token_id), self.n_steps,
                                         self.method, self.internal_batch_size)
        return Attributions(level="token", scores=zero_specials(attr, batch),
                            extras={"convergence_delta": np.abs(gap).astype(np.float64)})
