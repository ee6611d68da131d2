"""Random baseline: a standard-normal score per word, from a per-example seed."""

from __future__ import annotations

from harness.explain_utils import example_rng
from harness.protocols import Attributions, ExplainBatch


class RandomExplainer:
    name = "random"
    version = "1.0.0"

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        scores = [example_rng(batch, i).standard_normal(batch.n_words(i)) for i in range(len(batch))]
        return Attributions(level="word", scores=scores)
