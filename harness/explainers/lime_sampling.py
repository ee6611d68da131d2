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
  coefficient for the target class.  Solved in closed form by the same steps as scikit-learn's
  cholesky solver (equal to the library within float rounding; tested).

How removed words are removed (``replacement``):

- ``"delete"`` (``lime``): the words are deleted from the sequence;
- ``"mlm"`` (``lime_bert``, paper 003 sec. 2): every removed word of a sample is replaced by
  the masked LM's top-1 fill, all removed words of the sample masked at once (paper 003
  footnote 3: at once or one at a time give similar results).

Speed: the distinct perturbations of *all* examples of the batch are filled in one masked-LM
call (``mlm``) and the distinct resulting inputs go through the classifier in one batched
call (sorted by length).  Each example's sampling draws the stream of
``numpy.random.RandomState(example_seed(batch, i))`` (one RandomState re-seeded per example):
deterministic and independent of the rest of the batch.
"""

from __future__ import annotations

import numpy as np

from harness.explain_utils import example_seed, first_occurrences, first_of_permutations, legacy_permutations
from harness.explainers.common import kept_proba_grouped, proba_by_length, unique_bool_rows
from harness.protocols import Attributions, ExplainBatch

REPLACEMENTS = ("delete", "mlm")


def lime_text_kernel(d, kernel_width):
    """LimeTextExplainer's kernel."""
    return np.sqrt(np.exp(-(d ** 2) / kernel_width ** 2))


def sample_masks(n_words: int, num_samples: int, random_state: np.random.RandomState) -> np.ndarray:
    """(num_samples, n_words) binary presence matrix, sampled exactly as LimeTextExplainer does:
    ``sizes = randint(1, n + 1, num_samples - 1)``, then per row ``choice(range(n), size,
    replace=False)`` words set to 0.

    ``RandomState.choice(range(n), size, replace=False)`` is ``permutation(n)[:size]``, and
    ``permutation(n)`` shuffles ``arange(n)`` in place: :func:`legacy_permutations` makes the same
    draws in the same order (NEP 19 freezes RandomState's streams), and the zeros are set for all
    rows at once."""
    data = np.ones((num_samples, n_words))
    if num_samples < 2:
        return data
    sizes = random_state.randint(1, n_words + 1, num_samples - 1)
    data[1:][first_of_permutations(legacy_permutations(random_state, n_words, num_samples - 1), sizes)] = 0.0
    return data


def cosine_distances_to_first(data: np.ndarray) -> np.ndarray:
    """LimeTextExplainer's distances: cosine distance to row 0, times 100 (the steps of
    ``sklearn.metrics.pairwise_distances(data, data[:1], metric="cosine")``: rows scaled to unit
    norm, a zero row left at zero, ``1 - similarity`` clipped to [0, 2])."""
    x = np.asarray(data, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms == 0.0] = 1.0
    xn = x / norms[:, None]
    d = 1.0 - xn @ xn[0]
    return np.clip(d, 0.0, 2.0) * 100


def weighted_ridge(X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """The coefficients of ``sklearn.linear_model.Ridge(alpha, fit_intercept=True)`` fitted with
    ``sample_weight``, by the steps of its cholesky solver: centre X and y on their weighted
    means, scale rows by sqrt(weight), solve ``(X'X + alpha I) w = X'y`` (or the dual system
    when there are more features than samples)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    sw = np.asarray(sample_weight, dtype=np.float64)
    xc = X - np.average(X, axis=0, weights=sw)
    yc = y - np.average(y, weights=sw)
    root = np.sqrt(sw)
    xc *= root[:, None]
    yc = yc * root
    n, p = xc.shape
    if p > n:
        K = xc @ xc.T
        K.flat[:: n + 1] += alpha
        return xc.T @ _solve_pos(K, yc)
    A = xc.T @ xc
    A.flat[:: p + 1] += alpha
    return _solve_pos(A, xc.T @ yc)


def _solve_pos(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``scipy.linalg.solve(A, b, assume_a="pos")``: the LAPACK ``posv`` it calls, without its
    argument checks and condition estimate (~15 us a call); anything but a clean solve goes
    through scipy itself (its errors and warnings)."""
    from scipy import linalg
    from scipy.linalg import lapack

    if A.dtype == np.float64 and b.dtype == np.float64:
        _, x, info = lapack.dposv(A, b, lower=False)
        if info == 0 and np.all(np.isfinite(x)):
            return x
    return linalg.solve(A, b, assume_a="pos")


def fit_surrogate(data: np.ndarray, labels: np.ndarray, target: int, kernel_width: float,
                  random_state: np.random.RandomState | None = None) -> np.ndarray:
    """LIME's weighted ridge surrogate on all words (``lime.lime_base.LimeBase`` with
    ``feature_selection="none"``: ``Ridge(alpha=1)`` on the kernel weights); the target-class
    coefficients.  Computed in closed form (:func:`weighted_ridge`); tests check it against the
    library.  ``random_state`` is unused (LimeBase passes it to Ridge, whose cholesky solver
    draws nothing) and kept for callers."""
    weights = lime_text_kernel(cosine_distances_to_first(data), kernel_width)
    return weighted_ridge(data, np.asarray(labels)[:, int(target)], weights, alpha=1.0)


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
        sampled = []  # per example: (data, distinct keep masks, row -> distinct mask)
        rs = np.random.RandomState(0)  # re-seeded per example
        for i in range(B):
            n = batch.n_words(i)
            if n == 0:
                sampled.append(None)
                continue
            rs.seed(example_seed(batch, i))  # = RandomState(seed)'s stream; a new RandomState costs ~100 us
            data = sample_masks(n, self.num_samples, rs)
            uniq, inverse = unique_bool_rows(data.astype(bool))
            sampled.append((data, uniq, inverse))
        if self.replacement == "delete":
            plans, proba = self._deleted_proba(model, batch, sampled)
        else:
            plans, proba = self._filled_proba(model, batch, sampled)

        scores = []
        for i, plan in enumerate(plans):
            if plan is None:
                scores.append(np.zeros(0))
                continue
            data, idx = plan
            scores.append(fit_surrogate(data, proba[idx], int(targets[i]), self.kernel_width))
        return Attributions(level="word", scores=scores)

    @staticmethod
    def _deleted_proba(model, batch: ExplainBatch, sampled):
        """Probabilities of every distinct text of the batch with the unsampled words deleted,
        predicted once each (equal texts, e.g. deleting either of two equal words, share a row).
        Texts are keyed without word lists: per-segment kept counts and the kept words' ids."""
        vocab: dict = {}
        width = max((batch.n_words(i) for i in range(len(batch))), default=0)
        keys, owners = [], []
        for i, got in enumerate(sampled):
            if got is None:
                continue
            uniq = got[1]
            segs = batch.segments[i]
            wid = np.fromiter((vocab.setdefault(w, len(vocab)) for seg in segs for w in seg), dtype=np.int64,
                              count=uniq.shape[1])
            packed = np.full(uniq.shape, -1, dtype=np.int64)  # the kept words' ids first, in their order
            r, c = np.nonzero(uniq)
            packed[r, (np.cumsum(uniq, 1) - 1)[r, c]] = wid[c]
            bounds = np.cumsum([0] + [len(seg) for seg in segs])
            counts = np.stack([uniq[:, x:y].sum(1) for x, y in zip(bounds[:-1], bounds[1:])], 1)
            key = np.full((len(uniq), counts.shape[1] + width), -1, dtype=np.int64)
            key[:, :counts.shape[1]] = counts
            key[:, counts.shape[1]:counts.shape[1] + uniq.shape[1]] = packed
            keys.append(key)
            owners.append(np.stack([np.full(len(uniq), i), np.arange(len(uniq))], 1))
        if not keys:
            return [None] * len(sampled), np.zeros((0, model.num_labels))
        key = np.concatenate(keys)
        owner = np.concatenate(owners)
        chosen, text_of = first_occurrences(key)  # texts in order of first occurrence
        # the chosen texts grouped by the example they come from (chosen is sorted, owners in example order)
        ex, loc = owner[chosen, 0], owner[chosen, 1]
        cuts = np.flatnonzero(np.diff(ex)) + 1
        groups = [(batch.segments[int(e[0])], sampled[int(e[0])][1][lc])
                  for e, lc in zip(np.split(ex, cuts), np.split(loc, cuts))]
        proba = kept_proba_grouped(model, groups, counts=key[chosen, :key.shape[1] - width].sum(1))
        plans, at = [], 0
        for got in sampled:
            if got is None:
                plans.append(None)
                continue
            data, uniq, inv = got
            plans.append((data, text_of[at:at + len(uniq)][inv]))
            at += len(uniq)
        return plans, proba

    def _filled_proba(self, model, batch: ExplainBatch, sampled):
        """As :meth:`_deleted_proba`, with the removed words filled by the masked LM."""
        plans = []
        distinct: dict = {}
        perturbations: list[tuple[int, np.ndarray]] = []  # (example, keep mask)
        for i, got in enumerate(sampled):
            if got is None:
                plans.append(None)
                continue
            data, uniq, inverse = got
            ids = np.empty(len(uniq), dtype=np.int64)
            for u, keep in enumerate(uniq):
                key = (batch.segments[i], keep.tobytes())
                idx = distinct.get(key)
                if idx is None:
                    idx = distinct[key] = len(perturbations)
                    perturbations.append((i, keep))
                ids[u] = idx
            plans.append((data, ids[inverse]))
        inputs = self._perturbed_inputs(model, batch, perturbations)
        text_index: dict = {}
        rows = np.empty(len(inputs), dtype=np.int64)
        texts = []
        for k, segs in enumerate(inputs):
            j = text_index.get(segs)
            if j is None:
                j = text_index[segs] = len(texts)
                texts.append(segs)
            rows[k] = j
        proba = proba_by_length(model, texts) if texts else np.zeros((0, model.num_labels))
        plans = [None if p is None else (p[0], rows[p[1]]) for p in plans]
        return plans, proba

    @staticmethod
    def _perturbed_inputs(model, batch: ExplainBatch, perturbations) -> list:
        from harness.models.removal import mlm_fill

        # one masked-LM call for every perturbation of the batch that removes something
        return mlm_fill(model, [batch.segments[i] for i, _ in perturbations], [~keep for _, keep in perturbations])
