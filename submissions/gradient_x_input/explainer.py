"""Gradient x input (Shrikumar et al., 2016; Kindermans et al., 2016) via captum's ``InputXGradient``.

Score of token t = sum_d e_t[d] * d p(target | x) / d e_t[d], signed: the first-order
Taylor contribution of the input token (word) embedding e_t to the target-class
probability.  One batched forward + backward for the whole batch.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import InputXGradient

from harness.explain_utils import zero_specials
from harness.explainers.common import proba_of_embeds
from harness.protocols import Attributions, ExplainBatch, NotApplicableError


class GradientXInput:
    name = "gradient_x_input"
    version = "1.1.0"

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        fam = model.family_or_none
        if fam is not None and fam.embeddings_normalised(model.model):
            raise NotApplicableError(
                f"gradient x input is identically zero on {fam.name} models like this one: the word embeddings "
                "enter only through a LayerNorm (nothing added before it), so the model is invariant to scaling "
                "them and sum_d e_d dp/de_d = 0; a computed map is float rounding noise")
        with torch.no_grad():
            embeds = model.embeddings(batch.input_ids).detach().requires_grad_()
        ixg = InputXGradient(proba_of_embeds(model))
        attr = ixg.attribute(
            embeds,
            target=batch.targets,
            additional_forward_args=(batch.attention_mask, batch.token_type_ids),
        )
        scores = attr.detach().sum(dim=-1).cpu().numpy().astype(np.float64)
        return Attributions(level="token", scores=zero_specials(scores, batch))
