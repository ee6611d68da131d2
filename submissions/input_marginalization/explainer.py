"""Input Marginalization (Kim et al. 2020) as specified by paper 003, eq. 3-4 (top-10 variant).

a_i = log2-odds f(x) - log2-odds(sum over the masked LM's top-10 fills w of p(w | x_-i) f(x with w)),
the likelihoods used as the masked LM gives them (not renormalised; paper 003).  All masked
variants of the batch in one masked-LM call, all filled variants in one batched classifier call.
Implementation and the reading of the paper: :mod:`harness.explainers.marginalization`.
"""

from __future__ import annotations

from harness.explainers.marginalization import InputMarginalization as _IM


class InputMarginalization(_IM):
    name = "input_marginalization"
    version = "1.0.0"

    def __init__(self, k: int = 10, renormalize: bool = False) -> None:
        super().__init__(k=k, renormalize=renormalize)
