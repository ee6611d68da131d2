"""Input Marginalization with the top-k likelihoods renormalised to sum to 1 (a variant).

Identical to ``input_marginalization`` (paper 003 eq. 3-4, top-10 fills, log2 odds) except that
the expectation of eq. 3 is taken over the top-k fills with their likelihoods divided by their
sum.  Paper 003 uses the masked LM's likelihoods as they are (the top-10 carry 81-92% of the mass
under BERT-base); with a weaker masked LM the missing mass varies a lot from position to
position (0.3-1.0 under the offline tiny MLM), and without renormalisation it, rather than the
classifier, dominates a_i.  This variant shows how much of IM's score is that one choice.
Implementation: :mod:`harness.explainers.marginalization`.
"""

from __future__ import annotations

from harness.explainers.marginalization import InputMarginalization as _IM


class InputMarginalizationRenorm(_IM):
    name = "input_marginalization_renorm"
    version = "1.0.0"

    def __init__(self, k: int = 10, renormalize: bool = True) -> None:
        super().__init__(k=k, renormalize=renormalize)
