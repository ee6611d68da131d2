"""Integrated gradients (Sundararajan et al., 2017) via captum's ``LayerIntegratedGradients``.

Attributes the target-class probability to the output of the word-embedding layer along
the straight path from a baseline to the input.  The baseline is the input with every
non-special token replaced by [PAD], keeping [CLS]/[SEP] (and padding) in place, with the
same attention mask and segment ids.  Score of token t = sum over the embedding dimension.

The whole batch goes through captum at once; ``internal_batch_size`` bounds how many
(example, step) rows are evaluated per forward/backward.  captum expands the attention
mask / token type ids (passed as ``additional_forward_args``) and the targets along the
steps.  ``extras["convergence_delta"]`` is |f(x) - f(baseline) - sum_t attr_t| per example.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import LayerIntegratedGradients

from harness.explain_utils import zero_specials
from harness.protocols import Attributions, ExplainBatch


def pad_baseline(batch: ExplainBatch, pad_token_id: int) -> torch.Tensor:
    """The input ids with every non-special token replaced by [PAD] ([CLS]/[SEP] kept)."""
    baseline = batch.input_ids.clone()
    word_positions = ~batch.special_tokens_mask.bool()
    baseline[word_positions] = pad_token_id
    return baseline


class IntegratedGradients:
    name = "integrated_gradients"
    version = "1.0.0"

    def __init__(self, n_steps: int = 50, internal_batch_size: int = 512,
                 method: str = "gausslegendre") -> None:
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        if internal_batch_size < 1:
            raise ValueError(f"internal_batch_size must be >= 1, got {internal_batch_size}")
        self.n_steps = int(n_steps)
        self.internal_batch_size = int(internal_batch_size)
        self.method = method

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        def forward(input_ids, attention_mask, token_type_ids):
            return model.proba(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids)

        lig = LayerIntegratedGradients(forward, model.embeddings)
        # captum needs at least one step per example in a chunk; never ask for less
        internal = max(self.internal_batch_size, len(batch))
        attr, delta = lig.attribute(
            inputs=batch.input_ids,
            baselines=pad_baseline(batch, model.pad_token_id),
            target=batch.targets,
            additional_forward_args=(batch.attention_mask, batch.token_type_ids),
            n_steps=self.n_steps,
            method=self.method,
            internal_batch_size=internal,
            return_convergence_delta=True,
        )
        scores = attr.detach().sum(dim=-1).cpu().numpy().astype(np.float64)
        delta = np.abs(delta.detach().cpu().numpy().astype(np.float64)).reshape(-1)
        return Attributions(level="token", scores=zero_specials(scores, batch),
                            extras={"convergence_delta": delta})
