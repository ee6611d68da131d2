"""LIME_BERT (paper 003 sec. 2): LIME whose removed words are replaced by the masked LM's top-1 fill.

Same sampling, kernel and ridge surrogate as the ``lime`` submission (shared code:
:class:`harness.explainers.lime_sampling.LimeWords`, LimeTextExplainer-equivalent sampling
from ``RandomState(example_seed)``), but a perturbed input keeps its length: every removed
word is replaced by the masked LM's most likely whole-word fill (paper 003: top-1 only, as
it carries most of the likelihood), with all removed words of a sample masked at once
(paper 003 footnote 3).  The feature vector of a sample is still word presence (1 = the
original word, 0 = replaced), so the surrogate is the same as LIME's.

The masked LM is the run's (``bundle.mlm``; :mod:`harness.models.mlm`: the tiny word-level MLM
trained on the task's training corpus offline, ``bert-base-uncased`` for hub models).

Batching: the distinct perturbations of the whole batch are filled in one masked-LM call,
and the distinct filled inputs are classified in one batched call.  A fill may restore the
original word; such inputs are predicted once.
"""

from __future__ import annotations

from harness.explainers.lime_sampling import LimeWords


class LimeBert(LimeWords):
    name = "lime_bert"
    version = "1.0.0"

    def __init__(self, num_samples: int = 500, kernel_width: float = 25.0) -> None:
        super().__init__(num_samples=num_samples, kernel_width=kernel_width, replacement="mlm")
