"""Ensembles of explanations (paper 001 sec. 3.4).

EnsembleImportance(A)_j = 1/|A| sum_i A_ij: the mean over the member methods of their word-level
attribution maps, each "normalized to sum to 1, so that contributions to the average are
independent of the relative magnitudes of the values produced by different methods"
(paper 001 sec. 3.4, footnote 1).

Normalisation, read for signed maps: each member map a is divided by sum_j |a_j| (its L1
norm), so that its absolute values sum to 1 and its signs are kept (for a non-negative map this
is exactly "sums to 1"; dividing a signed map by its plain sum could flip or blow it up when
the sum is near 0).  An all-zero map stays zero.

Members are built from the built-in submissions by name (``harness.core.submission.resolve``)
with their declared parameters (``member_params`` overrides them) and run on the same bundle
and batch, so their maps equal their own leaderboard entries.  Token-level members are merged
into words with the harness's default rule (``absmax``).  Member diagnostics (extras) are
passed on as ``<member>.<name>``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from harness.protocols import Attributions, ExplainBatch

#: paper 001's seven methods ("Ensemble (All Methods)") and its top three ("Ensemble (Top 3)")
ALL_METHODS = ("gradient", "gradient_x_input", "integrated_gradients", "lime", "kernel_shap",
               "average_attention", "attention_rollout")
TOP3 = ("lime", "kernel_shap", "integrated_gradients")


def normalise_map(a) -> np.ndarray:
    """``a / sum(|a|)`` (L1), zeros left as zeros."""
    a = np.asarray(a, dtype=np.float64)
    total = float(np.abs(a).sum())
    return a / total if total > 0 else np.zeros_like(a)


def ensemble_maps(maps_per_member: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """Per example, the mean over members of the L1-normalised maps (members x examples input)."""
    if not maps_per_member:
        raise ValueError("an ensemble needs at least one member")
    n = len(maps_per_member[0])
    out = []
    for i in range(n):
        ms = [normalise_map(m[i]) for m in maps_per_member]
        shapes = {x.shape for x in ms}
        if len(shapes) != 1:
            raise ValueError(f"example {i}: members disagree on the number of words: {sorted(shapes)}")
        out.append(np.mean(ms, axis=0) if ms[0].size else np.zeros(0))
    return out


class Ensemble:
    name = "ensemble"
    version = "1.0.0"

    def __init__(self, members: Sequence[str] = ALL_METHODS, member_params: dict | None = None,
                 aggregation: str = "absmax") -> None:
        from harness.core.submission import resolve

        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if len(set(members)) != len(members):
            raise ValueError(f"duplicate ensemble members: {members}")
        member_params = dict(member_params or {})
        unknown = set(member_params) - set(members)
        if unknown:
            raise ValueError(f"member_params for non-members: {sorted(unknown)}")
        self.members = members
        self.aggregation = aggregation
        self._explainers = [resolve(m).instantiate(**member_params.get(m, {})) for m in members]

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        from harness.core.outputs import check_attributions, check_extras, word_maps

        maps, extras = [], {}
        for name, explainer in zip(self.members, self._explainers):
            attr = explainer.explain(model, batch)
            raw = check_attributions(attr, batch)
            maps.append(word_maps(attr, raw, batch, self.aggregation))
            for k, v in check_extras(attr, batch).items():
                extras[f"{name}.{k}"] = v
        return Attributions(level="word", scores=ensemble_maps(maps), extras=extras)
