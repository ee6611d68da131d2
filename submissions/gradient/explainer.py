"""Gradient saliency (Simonyan et al., 2014) via captum's ``Saliency``.

Score of token t = || d p(target | x) / d e_t ||_2, the L2 norm over the embedding
dimension of the gradient of the target-class probability with respect to the input
token (word) embedding e_t.  One batched forward + backward for the whole batch: the
examples are independent, so the gradient of the summed target probabilities gives every
example its own gradient.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import Saliency

from harness.explain_utils import zero_specials
from harness.protocols import Attributions, ExplainBatch


def proba_of_embeds(bundle):
    """captum forward function: (inputs_embeds, attention_mask, token_type_ids) -> (B, C) probabilities."""

    def forward(inputs_embeds, attention_mask, token_type_ids):
        return bundle.proba(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                            token_type_ids=token_type_ids)

    return forward


class GradientSaliency:
    name = "gradient"
    version = "1.0.0"

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        with torch.no_grad():
            embeds = model.embeddings(batch.input_ids).detach().requires_grad_()
        saliency = Saliency(proba_of_embeds(model))
        grads = saliency.attribute(
            embeds,
            target=batch.targets,
            abs=False,
            additional_forward_args=(batch.attention_mask, batch.token_type_ids),
        )
        scores = grads.detach().norm(dim=-1).cpu().numpy().astype(np.float64)
        return Attributions(level="token", scores=zero_specials(scores, batch))
