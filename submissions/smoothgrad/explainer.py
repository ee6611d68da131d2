"""SmoothGrad (Smilkov et al., 2017) of the target-class probability at the word embeddings.

M(x) = d p(target | x) / d e (the gradient saliency of the ``gradient`` submission);
SmoothGrad averages it over noisy copies, M^(x) = 1/n sum_s M(x + eps_s), eps_s ~ N(0, sigma^2)
on every real token's embedding, sigma = ``noise_level`` * (max - min) of the example's
embedding values (Smilkov et al.: noise level 10-20%, n = 50).  Score of token t = the L2 norm
over the embedding dimension of the averaged gradient (the postprocessing of ``gradient``);
unsigned.  This is captum's ``NoiseTunnel(Saliency, nt_type="smoothgrad")`` with
``abs=False``, except for where the noise comes from: captum draws one noise tensor for the
whole (expanded) batch from torch's global RNG, so an example's noise would depend on its
batch; here example i's noise comes from ``torch.Generator().manual_seed(example_seed(batch,
i))`` over its own real tokens.

Batching (:func:`harness.explainers.gradients.smoothgrad`): all n noisy copies of every example
of the batch in as few forward/backward passes as memory allows (``internal_batch_size``
rows), sorted by length, each pass cut to its longest input, input gradients only, and for a
BERT classifier the last layer at [CLS] only, the other layers as fused, cache-sized tiles
with a hand-written input-gradient backward (exact up to float rounding; see
:mod:`harness.explainers.gradients`).  The noise of an example is drawn right before its pass.
"""

from __future__ import annotations

import numpy as np

from harness.explain_utils import example_seed, zero_specials
from harness.explainers.gradients import smoothgrad
from harness.protocols import Attributions, ExplainBatch


class SmoothGrad:
    name = "smoothgrad"
    version = "1.0.0"

    def __init__(self, n_samples: int = 50, noise_level: float = 0.15, internal_batch_size: int = 300) -> None:
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        if noise_level < 0:
            raise ValueError(f"noise_level must be >= 0, got {noise_level}")
        if internal_batch_size < 1:
            raise ValueError(f"internal_batch_size must be >= 1, got {internal_batch_size}")
        self.n_samples = int(n_samples)
        self.noise_level = float(noise_level)
        self.internal_batch_size = int(internal_batch_size)

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        seeds = [example_seed(batch, i) for i in range(len(batch))]
        grad = smoothgrad(model, batch, seeds, self.n_samples, self.noise_level, self.internal_batch_size)
        scores = np.linalg.norm(grad, axis=-1)
        return Attributions(level="token", scores=zero_specials(scores, batch))
