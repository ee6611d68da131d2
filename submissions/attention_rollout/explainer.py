"""Attention Rollout (Abnar & Zuidema 2020), aggregated as in paper 001 sec. 2.2.2.3.

Per layer l the head-averaged attention mixed with the residual connection,
Ã_l = r I + (1 - r) mean_h A_l (r = ``residual`` = 0.5 as in Abnar & Zuidema; rows renormalised),
rolled out through the layers, R = Ã_L ... Ã_1; the score of token i is the average over query
positions j of R[j, i] (paper 001's formula; ``source="cls"`` uses the [CLS] row R[0, i]).
Pure function: :func:`harness.explainers.attention.attention_rollout`.  One forward pass with
``output_attentions=True`` per batch; token level, unsigned, specials set to 0.
"""

from __future__ import annotations

from harness.explain_utils import zero_specials
from harness.explainers.attention import attention_rollout, forward_with_attentions, stack_attentions
from harness.protocols import Attributions, ExplainBatch


class AttentionRollout:
    name = "attention_rollout"
    version = "1.0.0"

    def __init__(self, residual: float = 0.5, source: str = "mean") -> None:
        if not 0.0 <= residual <= 1.0:
            raise ValueError(f"residual must be in [0, 1], got {residual}")
        if source not in ("mean", "cls"):
            raise ValueError(f"source must be 'mean' or 'cls', got {source!r}")
        self.residual = float(residual)
        self.source = source

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        _, attentions = forward_with_attentions(model, batch)
        scores = attention_rollout(stack_attentions(attentions), batch.attention_mask.cpu(),
                                   residual=self.residual, source=self.source)
        return Attributions(level="token", scores=zero_specials(scores, batch))
