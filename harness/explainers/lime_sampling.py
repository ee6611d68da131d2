"""LIME over the words of the input (Ribeiro et al. 2016), shared by ``lime`` and ``lime_bert``.

For each example, the perturbation set mirrors ``lime.lime_text.LimeTextExplainer``
(bag-of-words off, one feature per word position across all segments):

- row 0 is the original input (all words present);
- each further row picks a number of words to remove uniformly in 1..n (LIME's own
  ``randint(1, n + 1)``) and removes that many distinct random words;
- sample weights: LIME's text kernel ``sqrt(exp(-d^2 / width^2))`` on the cosine distance
  (x100) between the binary vectors and the original;
- surrogate: LIME's default ridge regression (alpha=1) on all words
  (``lime.lime_base.LimeBase``, ``feature_selection="none"``); the score of word j is its
  coefficient for the target class.

How removed words are removed (``replacement``):

- ``"delete"`` (``lime``): the words are deleted from the sequence;
- ``"mlm"`` (``lime_bert``, paper 003 sec. 2): every removed word of a sample is replaced by
  the masked LM's top-1 fill, all removed words of the sample masked at once (paper 003
  footnote 3: at once or one at a time give similar results).

Speed: the distinct perturbations of *all* examples of the batch are filled in one masked-LM
call (``mlm``) and the distinct resulting inputs go through the classifier in one batched
call (sorted by length).  Each example's sampling uses its own
``numpy.random.RandomState(example_seed(batch, i))``: deterministic and independent of the
rest of the batch.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from harness.explain_utils import example_seed, keep_words
from harness.explainers.common import proba_by_length
from harness.protocols import Attributions, ExplainBatch

REPLACEMENTS = ("delete", "mlm")


def lime_text_kernel(d, kernel_width):
    """LimeTextExplainer's kernel."""
    return np.sqrt(np.exp(-(d ** 2) / kernel_width ** 2))


def sample_masks(n_words: int, num_samples: int, random_state: np.random.RandomState) -> np.ndarray:
    """(num_samples, n_words) binary presence matrix, sampled exactly as LimeTextExplainer does."""
    data = np.ones((num_samples, n_words))
    sizes = random_state.randint(1, n_words + 1, num_samples - 1)
    for i, size in enumerate(sizes.tolist(), start=1):
        # RandomState.choice(range(n), size, replace=False) is permutation(n)[:size]: the same draws,
        # without converting the range to an array on every call
        data[i, random_state.permutation(n_words)[:size]] = 0
    return data


def cosine_distances_to_first(data: np.ndarray) -> np.ndarray:
    """LimeTextExplainer's distances: cosine distance to row 0, times 100."""
    from sklearn.metrics.pairwise import pairwise_distances

    return pairwise_distances(data, data[:1], metric="cosine").ravel() * 100


def fit_surrogate(data: np.ndarray, labels: np.ndarray, target: int, kernel_width: float,
                  random_state: np.random.RandomState) -> np.ndarray:
    """LIME's weighted ridge surrogate on all words; the target-class coefficients."""
    from lime.lime_base import LimeBase

    base = LimeBase(partial(lime_text_kernel, kernel_width=kernel_width), random_state=random_state)
    _, exp, _, _ = base.explain_instance_with_data(
        data, labels, cosine_distances_to_first(data), int(target),
        num_features=data.shape[1], feature_selection="none")
    w = np.zeros(data.shape[1])
    for j, coef in exp:
        w[int(j)] = coef
    return w


class LimeWords:
    """LIME over word presence; see the module docstring."""

    name = "lime"
    version = "1.1.0"

    def __init__(self, num_samples: int = 500, kernel_width: float = 25.0, replacement: str = "delete") -> None:
        if num_samples < 2:
            raise ValueError(f"num_samples must be >= 2 (the original plus perturbations), got {num_samples}")
        if kernel_width <= 0:
            raise ValueError(f"kernel_width must be > 0, got {kernel_width}")
        if replacement not in REPLACEMENTS:
            raise ValueError(f"replacement must be one of {REPLACEMENTS}, got {replacement!r}")
        self.num_samples = int(num_samples)
        self.kernel_width = float(kernel_width)
        self.replacement = replacement

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        if self.replacement == "mlm" and getattr(model, "mlm", None) is None:
            raise ValueError(f"{self.name}: replacement 'mlm' needs a masked LM, but the model bundle has none "
                             "(the runner attaches one; see harness.models.mlm)")
        B = len(batch)
        targets = batch.targets.cpu().numpy()
        plans = []  # per example: (random_state, data, row -> index into the distinct perturbations)
        distinct: dict = {}
        perturbations: list[tuple[int, np.ndarray]] = []  # (example, keep mask)
        for i in range(B):
            n = batch.n_words(i)
            if n == 0:
                plans.append(None)
                continue
            rs = np.random.RandomState(example_seed(batch, i))
            data = sample_masks(n, self.num_samples, rs)
            uniq, inverse = np.unique(data.astype(bool), axis=0, return_inverse=True)
            inverse = inverse.reshape(-1)
            ids = np.empty(len(uniq), dtype=np.int64)
            for u, keep in enumerate(uniq):
                key = (batch.segments[i], keep.tobytes())
                idx = distinct.get(key)
                if idx is None:
                    idx = distinct[key] = len(perturbations)
                    perturbations.append((i, keep))
                ids[u] = idx
            plans.append((rs, data, ids[inverse]))

        inputs = self._perturbed_inputs(model, batch, perturbations)
        # identical texts (e.g. a fill restoring the original word) are predicted once
        text_index: dict = {}
        rows = np.empty(len(inputs), dtype=np.int64)
        texts = []
        for k, segs in enumerate(inputs):
            j = text_index.get(segs)
            if j is None:
                j = text_index[segs] = len(texts)
                texts.append(segs)
            rows[k] = j
        proba = proba_by_length(model, texts)[rows] if texts else np.zeros((0, model.num_labels))

        scores = []
        for i, plan in enumerate(plans):
            if plan is None:
                scores.append(np.zeros(0))
                continue
            rs, data, idx = plan
            scores.append(fit_surrogate(data, proba[idx], int(targets[i]), self.kernel_width, rs))
        return Attributions(level="word", scores=scores)

    def _perturbed_inputs(self, model, batch: ExplainBatch, perturbations) -> list:
        if self.replacement == "delete":
            return [keep_words(batch.segments[i], keep) for i, keep in perturbations]
        from harness.models.removal import mlm_fill

        # one masked-LM call for every perturbation of the batch that removes something
        return mlm_fill(model, [batch.segments[i] for i, _ in perturbations], [~keep for _, keep in perturbations])
