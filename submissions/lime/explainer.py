"""LIME (Ribeiro et al., 2016) over the words of the input, with ``lime.lime_base.LimeBase``.

For each example, the perturbation set mirrors ``lime.lime_text.LimeTextExplainer``
(bag-of-words off, one feature per word position across all segments):

- row 0 is the original input (all words present);
- each further row picks a number of words to remove uniformly in 1..n (LIME's own
  ``randint(1, n + 1)``, so the empty input can occur: it is still [CLS] [SEP], a valid
  model input) and removes that many distinct random words;
- removed words are deleted from the sequence (:func:`harness.explain_utils.keep_words`);
- sample weights: LIME's text kernel ``sqrt(exp(-d^2 / width^2))`` on the cosine distance
  (x100) between the binary vectors and the original;
- surrogate: LIME's default ridge regression (alpha=1) on all words; the score of word j
  is its coefficient for the target class.

With the same seed, sampling, predictions and fit are exactly those of
``LimeTextExplainer(bow=False, mask_string="", split_expression=<split on " ">,
random_state=seed, feature_selection="none")`` on the space-joined words (checked in
``tests/test_explainers.py``).  Note ``LimeTextExplainer(bow=False)`` *replaces* removed
words by ``"UNKWORDZ"`` unless ``mask_string=""``; this submission deletes them.

Speed: the distinct perturbed inputs of *all* examples of the batch go through the model
in one :meth:`ModelBundle.proba_of_segments` call (large no-grad batches, sorted by
length so that each chunk carries little padding), then each
example's surrogate is fitted.  Each example's sampling uses its own
``numpy.random.RandomState(example_seed(batch, i))``: deterministic and independent of the
rest of the batch.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from lime.lime_base import LimeBase
from sklearn.metrics.pairwise import pairwise_distances

from harness.explain_utils import example_seed, keep_words
from harness.protocols import Attributions, ExplainBatch


def proba_by_length(model, inputs):
    """``model.proba_of_segments(inputs)``, evaluated in order of length (less padding per chunk)."""
    order = sorted(range(len(inputs)), key=lambda k: sum(len(s) for s in inputs[k]))
    out = model.proba_of_segments([inputs[k] for k in order])
    proba = np.empty_like(out)
    proba[order] = out
    return proba


def lime_text_kernel(d, kernel_width):
    """LimeTextExplainer's kernel."""
    return np.sqrt(np.exp(-(d ** 2) / kernel_width ** 2))


def sample_masks(n_words: int, num_samples: int, random_state: np.random.RandomState) -> np.ndarray:
    """(num_samples, n_words) binary presence matrix, sampled exactly as LimeTextExplainer does."""
    data = np.ones((num_samples, n_words))
    sizes = random_state.randint(1, n_words + 1, num_samples - 1)
    features_range = range(n_words)
    for i, size in enumerate(sizes, start=1):
        inactive = random_state.choice(features_range, size, replace=False)
        data[i, inactive] = 0
    return data


def cosine_distances_to_first(data: np.ndarray) -> np.ndarray:
    """LimeTextExplainer's distances: cosine distance to row 0, times 100."""
    return pairwise_distances(data, data[:1], metric="cosine").ravel() * 100


class Lime:
    name = "lime"
    version = "1.0.0"

    def __init__(self, num_samples: int = 500, kernel_width: float = 25.0) -> None:
        if num_samples < 2:
            raise ValueError(f"num_samples must be >= 2 (the original plus perturbations), got {num_samples}")
        if kernel_width <= 0:
            raise ValueError(f"kernel_width must be > 0, got {kernel_width}")
        self.num_samples = int(num_samples)
        self.kernel_width = float(kernel_width)

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        B = len(batch)
        targets = batch.targets.cpu().numpy()
        plans = []  # per example: (random_state, data, row -> index into the batch's distinct inputs)
        distinct: dict = {}
        inputs = []
        for i in range(B):
            n = batch.n_words(i)
            if n == 0:
                plans.append(None)
                continue
            rs = np.random.RandomState(example_seed(batch, i))
            data = sample_masks(n, self.num_samples, rs)
            rows = np.empty(len(data), dtype=np.int64)
            uniq, inverse = np.unique(data.astype(bool), axis=0, return_inverse=True)
            for u, keep in enumerate(uniq):
                segs = keep_words(batch.segments[i], keep)
                idx = distinct.get(segs)
                if idx is None:
                    idx = distinct[segs] = len(inputs)
                    inputs.append(segs)
                rows[inverse.reshape(-1) == u] = idx
            plans.append((rs, data, rows))

        proba = proba_by_length(model, inputs) if inputs else np.zeros((0, model.num_labels))

        scores = []
        for i, plan in enumerate(plans):
            if plan is None:
                scores.append(np.zeros(0))
                continue
            rs, data, rows = plan
            labels = proba[rows]
            base = LimeBase(partial(lime_text_kernel, kernel_width=self.kernel_width), random_state=rs)
            _, exp, _, _ = base.explain_instance_with_data(
                data, labels, cosine_distances_to_first(data), int(targets[i]),
                num_features=data.shape[1], feature_selection="none")
            w = np.zeros(data.shape[1])
            for j, coef in exp:
                w[int(j)] = coef
            scores.append(w)
        return Attributions(level="word", scores=scores)
