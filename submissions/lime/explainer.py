"""LIME (Ribeiro et al., 2016) over the words of the input, with ``lime.lime_base.LimeBase``.

The implementation is shared with ``lime_bert`` (:class:`harness.explainers.lime_sampling.LimeWords`):

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
in one batched call (large no-grad batches, sorted by length so that each chunk carries
little padding), then each example's surrogate is fitted.  Each example's sampling uses its
own ``numpy.random.RandomState(example_seed(batch, i))``: deterministic and independent of
the rest of the batch.
"""

from __future__ import annotations

from harness.explainers.lime_sampling import LimeWords


class Lime(LimeWords):
    name = "lime"
    version = "1.0.0"

    def __init__(self, num_samples: int = 500, kernel_width: float = 25.0) -> None:
        super().__init__(num_samples=num_samples, kernel_width=kernel_width, replacement="delete")
