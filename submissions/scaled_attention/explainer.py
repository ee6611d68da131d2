"""Scaled attention, alpha * grad alpha (Serrano & Smith 2019; paper 004 sec. 4.1).

paper 004: "normalized attention scores alpha_i scaled by the corresponding gradients
grad alpha_i = d y_hat / d alpha_i".  As in the implementation paper 004 builds on
(Chrysostomou & Aletras 2021, "scaled attention"): alpha = the last layer's attention from
the [CLS] token (the position the classifier reads), averaged over heads; grad alpha = the
gradient of the target-class probability y_hat w.r.t. those attention weights, averaged over
heads; score_i = alpha_i * grad alpha_i (signed).  One forward pass with
``output_attentions=True`` and one backward pass per batch; the gradient is taken w.r.t. the
attention probabilities the model actually used (eval mode: dropout is the identity).
"""

from __future__ import annotations

import numpy as np
import torch

from harness.explain_utils import zero_specials
from harness.explainers.attention import forward_with_attentions
from harness.protocols import Attributions, ExplainBatch


class ScaledAttention:
    name = "scaled_attention"
    version = "1.0.0"

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        proba, attentions = forward_with_attentions(model, batch, grad=True)
        last = attentions[-1]  # (B, H, T, T)
        y = proba.gather(1, batch.targets.view(-1, 1).to(proba.device)).sum()
        (grad,) = torch.autograd.grad(y, last)
        alpha = last.detach()[:, :, 0, :].mean(1)
        scores = (alpha * grad[:, :, 0, :].mean(1)).double().cpu().numpy().astype(np.float64)
        return Attributions(level="token", scores=zero_specials(scores, batch))
