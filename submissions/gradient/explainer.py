"""Gradient saliency (Simonyan et al., 2014) via captum's ``Saliency``.

Score of token t = || d p(target | x) / d e_t ||_2, the L2 norm over the embedding
dimension of the gradient of the target-class probability with respect to the input
token (word) embedding e_t.  One batched forward + backward for the whole batch: the
examples are independent, so the gradient of the summed target probabilities gives every
example its own gradient.
"""

from __future__ import annotations

import numpy as np

from harness.explain_utils import zero_specials
from harness.explainers.common import embedding_gradients
from harness.protocols import Attributions, ExplainBatch


class GradientSaliency:
    name = "gradient"
    version = "1.0.0"

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        scores = embedding_gradients(model, batch).norm(dim=-1).cpu().numpy().astype(np.float64)
        return Attributions(level="token", scores=zero_specials(scores, batch))
