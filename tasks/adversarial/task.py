"""Adversarial explanations (paper 001 sec. 2.3 and 3.5): inputs changed as little as possible,
with the model's prediction kept, chosen to move the explanation itself.

The search is the fragility task's (:mod:`tasks.fragility.attack`, ExplainFooler's level-by-level
greedy search over constrained synonym swaps: the same substitutes, stop-word, word-embedding,
part-of-speech and sentence-encoder constraints, batched across inputs), with the **top-k
attack** of paper 001 eq. 2.4 as its objective:

- ``topk`` (paper 001's "Unconstrained"): maximise D(a_x, a_x', k) = -sum_{i in topk(a_x, k)} a_x'_i
  among candidates that keep the predicted class;
- ``topk_constrained`` ("Constrained", paper 001 eq. 2.5): maximise alpha D - beta (p(x) - p(x'))^2,
  alpha = beta = 1, the target-class probability kept close too;
- ``random``: a random valid swap per level (the control).

``k = floor(15% of the words)`` (at least 1); maps L1-normalised (:mod:`tasks.adversarial.measures`).
The budget is the number of words swapped (``budgets``, default 1, 2, 3).  Per input and budget b
(the input's last level when it ran out of valid swaps before b; the input itself when it had
none): Rank Change (share of the k top ranks whose word changed), Top-k Sum Change (attribution
the original top k lost) and Probability Change (p(x) - p(x'), the target class).

Metrics: ``adv_rank_change`` (main; the unconstrained attack at the largest budget; lower = more
robust), ``adv_topk_sum_change``, ``adv_prob_change`` and their ``_constrained`` twins, and
``adv_rank_change_random`` (the control).  Per-budget means: table ``adversarial_budgets``.

Not here: the paper's embedding-space attack (gradient descent on a perturbation of the input
embeddings, ||delta||_inf <= 2, 500 steps).  It differentiates through the explanation method,
which a sandboxed submission is not: the harness sees only its maps.  See docs/ADVERSARIAL.md.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Sequence

import numpy as np

from harness.engine.task import Evaluation, register_task
from harness.protocols import Example
from tasks.adversarial.measures import k_for, rank_change, topk_sum_change
from tasks.fragility.task import FragilityTask

VERSION = "1.0"
FAMILY = "adversarial"
MAIN_METRIC = "adv_rank_change"
ATTACKS = ("topk", "topk_constrained")
METRICS = ("adv_rank_change", "adv_topk_sum_change", "adv_prob_change", "adv_rank_change_constrained",
           "adv_topk_sum_change_constrained", "adv_prob_change_constrained", "adv_rank_change_random")


def _suffix(objective: str) -> str:
    return {"topk": "", "topk_constrained": "_constrained", "random": "_random"}[objective]


def at_budget(levels: Sequence, budget: int):
    """The level with ``budget`` words changed, or the last one before it (None: no valid swap)."""
    reached = [lv for lv in levels if lv.m <= budget]
    return reached[-1] if reached else None


def measures(attack, objective: str, budget: int, share: float) -> tuple[float, float, float, bool]:
    """(rank change, top-k sum change, probability change, budget reached) of one input."""
    a0 = attack.original_map
    k = k_for(len(a0), share)
    lv = at_budget(attack.levels.get(objective, []), budget)
    if lv is None:
        return 0.0, 0.0, 0.0, False
    return (rank_change(a0, lv.map, k), topk_sum_change(a0, lv.map, k), float(attack.original_proba - lv.proba),
            lv.m == budget)


class AdversarialTask(FragilityTask):
    """The fragility task's data, model, resources and constraints; the top-k attack's objectives
    and measures."""

    default_submissions = ("random", "gradient", "gradient_x_input", "integrated_gradients", "lime")

    def __init__(self, budgets: Sequence[int] = (1, 2, 3), topk_share: float = 0.15, alpha: float = 1.0,
                 beta: float = 1.0, name: str = "adversarial_explanations", **fragility_overrides: Any):
        budgets = tuple(sorted(int(b) for b in budgets))
        if not budgets or budgets[0] < 1 or len(set(budgets)) != len(budgets):
            raise ValueError(f"budgets must be distinct word counts >= 1, got {list(budgets)}")
        if not 0 < topk_share <= 1 or alpha <= 0 or beta < 0:
            raise ValueError("topk_share must be in (0, 1], alpha > 0 and beta >= 0")
        for bad in ("objectives", "l2_normalize", "lom_signed"):
            if bad in fragility_overrides:
                raise ValueError(f"{bad!r} is the fragility task's; this task's objectives are {ATTACKS} + random")
        super().__init__(objectives=(*ATTACKS, "random"), name=name, **fragility_overrides)
        frag = self.spec
        params = {k: v for k, v in frag.params.items() if k not in ("l2_normalize", "lom_signed")}
        params.update(budgets=list(budgets), topk_share=topk_share, alpha=alpha, beta=beta,
                      search="fragility task's level-by-level search (tasks.fragility.attack)")
        self.spec = frag.model_copy(update=dict(
            version=VERSION,
            description="Adversarial explanations (paper 001 sec. 2.3, 3.5): constrained synonym swaps that keep the "
                        "prediction, chosen by the top-k attack (unconstrained and probability-constrained) to push "
                        "the original top-k words down; Rank Change, Top-k Sum Change, Probability Change per budget.",
            metrics=METRICS, main_metric=MAIN_METRIC, params=params))

    def reference_cache_name(self) -> str:
        return "fragility"  # the same recipe and data: the fragility task's model and masked LM, trained once

    def explain_and_score(self, explainer, bundle, examples: Sequence[Example], targets: Sequence[int],
                          seed: int, on_explain_call=None) -> Evaluation:
        from tasks.fragility.attack import Explanations, ExplainFooler

        p = self.spec.params
        t0 = time.perf_counter()
        res = self.resources(bundle, examples)
        explanations = Explanations(explainer, bundle, seed, p["aggregation"], p["max_explain_batch"],
                                    on_call=on_explain_call)
        attack = ExplainFooler(res["backend"], bundle, explanations, objectives=p["objectives"],
                               max_ratio=p["max_ratio"], seed=seed, max_levels=max(p["budgets"]),
                               objective_params={"topk_share": p["topk_share"], "alpha": p["alpha"],
                                                 "beta": p["beta"]})
        ex_seeds = [int.from_bytes(hashlib.sha256(f"{seed}:{e.id}".encode()).digest()[:4], "little") for e in examples]
        results = attack.run([e.segments for e in examples], list(targets), ex_seeds)
        top = max(p["budgets"])
        per_example: dict[str, np.ndarray] = {}
        rows = []
        for obj in (*ATTACKS, "random"):
            for b in p["budgets"]:
                vals = np.array([measures(r, obj, b, p["topk_share"]) for r in results], dtype=np.float64)
                rows.append({"objective": obj, "budget": b, "rank_change_mean": float(vals[:, 0].mean()),
                             "topk_sum_change_mean": float(vals[:, 1].mean()),
                             "prob_change_mean": float(vals[:, 2].mean()),
                             "prob_change_abs_max": float(np.abs(vals[:, 2]).max()),
                             "inputs_reaching_budget": int(vals[:, 3].sum()), "n_inputs": len(results)})
                if b == top:
                    sfx = _suffix(obj)
                    per_example[f"adv_rank_change{sfx}"] = vals[:, 0]
                    if obj != "random":
                        per_example[f"adv_topk_sum_change{sfx}"] = vals[:, 1]
                        per_example[f"adv_prob_change{sfx}"] = vals[:, 2]
        per_example = {k: per_example[k] for k in METRICS}
        st = attack.stats
        details = {MAIN_METRIC: {
            "explainer_calls": explanations.n_calls, "explained_inputs": explanations.n_explained,
            "explainer_seconds": explanations.seconds, "attack_forward_passes": st.attack_forward,
            "candidates_proposed": st.n_proposed, "candidates_valid": st.n_valid,
            "budget": float(top), "resource_seconds": res["seconds"], "evaluate_seconds": time.perf_counter() - t0}}
        per_input = [{"example_id": e.id, "n_words": len(r.original_map), "k": k_for(len(r.original_map), p["topk_share"]),
                      **{k: float(v[i]) for k, v in per_example.items()}} for i, (e, r) in enumerate(zip(examples, results))]
        return Evaluation(per_example=per_example, higher_is_better={k: False for k in per_example},
                          family={k: FAMILY for k in per_example},
                          tables={"adversarial_budgets": rows, "adversarial_per_input": per_input,
                                  "adversarial_resources": res["report"].table()},
                          details=details, aggregation=p["aggregation"])


@register_task("adversarial_explanations")
def adversarial_explanations(**overrides) -> AdversarialTask:
    """Embedded default: the fragility task's generated corpus, its synonym table and constraints."""
    return AdversarialTask(source="generated", name="adversarial_explanations", **overrides)
