"""Average Attention (paper 001 sec. 2.2.2.3).

score_i = 1/(L H T) sum_l sum_h sum_j A[l, h, j, i]: the attention paid to token i, averaged
over all layers, all heads and all (real) query positions j of the input, from one forward
pass with ``output_attentions=True`` (pure function:
:func:`harness.explainers.attention.average_attention`).  Token level, unsigned; [CLS]/[SEP]
(which draw much of the attention) are set to 0 like every special token.  The target class
plays no role: attention does not depend on it.
"""

from __future__ import annotations

from harness.explain_utils import zero_specials
from harness.explainers.attention import average_attention, forward_with_attentions, stack_attentions
from harness.protocols import Attributions, ExplainBatch


class AverageAttention:
    name = "average_attention"
    version = "1.0.0"

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        _, attentions = forward_with_attentions(model, batch)
        scores = average_attention(stack_attentions(attentions), batch.attention_mask.cpu())
        return Attributions(level="token", scores=zero_specials(scores, batch))
