"""Vanilla gradient reduced by a signed sum over the embedding dimension.

Score of token t = sum_d d p(target | x) / d e_t[d], signed: the gradient of the target-class
probability with respect to the input token (word) embedding e_t, summed over its dimensions
(captum's ``Saliency`` with ``abs=False``, then ``.sum(-1)``, the pooling over the hidden size
that captum's BERT tutorial and ferret apply to their attributions).  This is the reading of
paper 001 sec. 2.2.2.1 under which its vanilla gradients are reduced like its gradient*input
("a dot product between the token embedding and its gradient", i.e. a sum over the embedding
dimension); the baseline ``gradient`` takes the L2 norm instead (docs/METRICS.md, "Planted-token
SST": on ``planted_sst_easy`` the norm scores 0.983, the signed sum 0.363, random 0.043).  One
batched forward + backward.
"""

from __future__ import annotations

import numpy as np

from harness.explain_utils import zero_specials
from harness.explainers.common import embedding_gradients
from harness.protocols import Attributions, ExplainBatch


class GradientSum:
    name = "gradient_sum"
    version = "1.0.0"

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        scores = embedding_gradients(model, batch).sum(dim=-1).cpu().numpy().astype(np.float64)
        return Attributions(level="token", scores=zero_specials(scores, batch))
