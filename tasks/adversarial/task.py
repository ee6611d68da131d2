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

**Embedding-space attack** (paper 001's own setting, :mod:`tasks.adversarial.embedding`): a
perturbation of the input's word-embedding rows, ``||delta||_inf <= eps`` with eps = budget x the
embedding table's standard deviation (``embedding_budgets``, default 0.25 / 0.5 / 1), found once
per task by gradient descent against the plain-gradient map (white-box for ``gradient``, a transfer
attack for every other explainer) under both objectives; each explainer then explains the input
through a copy of the model whose embedding rows moved, so it sees exactly x + delta.

Metrics: ``adv_rank_change`` (main; the unconstrained word-swap attack at the largest budget;
lower = more robust), ``adv_topk_sum_change``, ``adv_prob_change`` and their ``_constrained``
twins, ``adv_rank_change_random`` (the control), and the same six for the embedding-space attack
at its largest budget (``adv_emb_*``).  Per-budget means: tables ``adversarial_budgets`` and
``adversarial_embedding``.  See docs/ADVERSARIAL.md.
"""

from __future__ import annotations

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
EMB_METRICS = ("adv_emb_rank_change", "adv_emb_topk_sum_change", "adv_emb_prob_change",
               "adv_emb_rank_change_constrained", "adv_emb_topk_sum_change_constrained",
               "adv_emb_prob_change_constrained")


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
                 beta: float = 1.0, embedding_budgets: Sequence[float] = (0.25, 0.5, 1.0), embedding_steps: int = 200,
                 embedding_lr: float = 0.1, name: str = "adversarial_explanations", **fragility_overrides: Any):
        budgets = tuple(sorted(int(b) for b in budgets))
        if not budgets or budgets[0] < 1 or len(set(budgets)) != len(budgets):
            raise ValueError(f"budgets must be distinct word counts >= 1, got {list(budgets)}")
        if not 0 < topk_share <= 1 or alpha <= 0 or beta < 0:
            raise ValueError("topk_share must be in (0, 1], alpha > 0 and beta >= 0")
        embedding_budgets = tuple(sorted(float(b) for b in embedding_budgets))
        if any(b <= 0 for b in embedding_budgets) or len(set(embedding_budgets)) != len(embedding_budgets):
            raise ValueError(f"embedding_budgets must be distinct and > 0, got {list(embedding_budgets)}")
        if embedding_steps < 1 or embedding_lr <= 0:
            raise ValueError("embedding_steps must be >= 1 and embedding_lr > 0")
        for bad in ("objectives", "l2_normalize", "lom_signed"):
            if bad in fragility_overrides:
                raise ValueError(f"{bad!r} is the fragility task's; this task's objectives are {ATTACKS} + random")
        super().__init__(objectives=(*ATTACKS, "random"), name=name, **fragility_overrides)
        frag = self.spec
        params = {k: v for k, v in frag.params.items() if k not in ("l2_normalize", "lom_signed")}
        params.update(budgets=list(budgets), topk_share=topk_share, alpha=alpha, beta=beta,
                      search="fragility task's level-by-level search (tasks.fragility.attack)",
                      embedding_budgets=list(embedding_budgets), embedding_steps=embedding_steps,
                      embedding_lr=embedding_lr,
                      embedding_attack="white-box against the plain-gradient surrogate; eps = budget x the "
                                       "embedding table's std (tasks.adversarial.embedding)")
        self.spec = frag.model_copy(update=dict(
            version=VERSION,
            description="Adversarial explanations (paper 001 sec. 2.3, 3.5): constrained synonym swaps that keep the "
                        "prediction, chosen by the top-k attack (unconstrained and probability-constrained) to push "
                        "the original top-k words down; Rank Change, Top-k Sum Change, Probability Change per budget.",
            metrics=METRICS + (EMB_METRICS if embedding_budgets else ()), main_metric=MAIN_METRIC, params=params))
        self._emb: dict[str, Any] | None = None

    # -- the embedding-space perturbations (found once per reference model, before any explainer) --
    def on_prepared(self, ctx, config) -> None:
        self.bind(ctx.ref.bundle, ctx.data.examples, ctx.targets)

    def bind(self, bundle, examples: Sequence[Example], targets: Sequence[int]) -> None:
        from tasks.adversarial.embedding import attack

        p = self.spec.params
        t0 = time.perf_counter()
        std = float(bundle.embeddings.weight.detach().double().std())
        found, rows = {}, []
        for obj in ATTACKS:
            for b in p["embedding_budgets"]:
                eps = b * std
                advs = attack(bundle, [e.segments for e in examples], list(targets), obj, eps, p["topk_share"],
                              steps=p["embedding_steps"], lr=p["embedding_lr"], alpha=p["alpha"], beta=p["beta"])
                found[(obj, b)] = advs
                rows.append({"objective": obj, "budget": b, "eps": eps,
                             "surrogate_objective_mean": float(np.mean([a.objective_value for a in advs])),
                             "steps_mean": float(np.mean([a.steps for a in advs])),
                             "moved_inputs": int(sum(bool(a.rows) and any(np.any(v) for v in a.rows.values())
                                                     for a in advs)), "n_inputs": len(advs)})
        self._emb = {"bundle": bundle, "found": found, "rows": rows, "std": std, "seconds": time.perf_counter() - t0}

    def reference_cache_name(self) -> str:
        return "fragility"  # the same recipe and data: the fragility task's model and masked LM, trained once

    def explain_and_score(self, explainer, bundle, examples: Sequence[Example], targets: Sequence[int],
                          seed: int, on_explain_call=None) -> Evaluation:
        p = self.spec.params
        t0 = time.perf_counter()
        res, explanations, attack, results = self.run_attack(
            explainer, bundle, examples, targets, seed, {"topk_share": p["topk_share"], "alpha": p["alpha"],
                                                         "beta": p["beta"]},
            on_explain_call, max_levels=max(p["budgets"]))
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
        emb_rows = self._embedding_scores(explainer, bundle, examples, targets, results, seed, per_example,
                                          on_explain_call) if p["embedding_budgets"] else []
        per_example = {k: per_example[k] for k in self.spec.metrics}
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
                                  "adversarial_embedding": emb_rows,
                                  "adversarial_resources": res["report"].table()},
                          details=details, aggregation=p["aggregation"])


    def _embedding_scores(self, explainer, bundle, examples, targets, results, seed, per_example,
                          on_explain_call) -> list[dict]:
        """The explainer on every input read through its perturbed embedding table (one model per
        input, objective and budget); fills the ``adv_emb_*`` metrics, returns the per-budget rows."""
        from harness.models.bundle import ModelBundle
        from tasks.adversarial.embedding import perturbed_model
        from tasks.fragility.attack import Explanations

        p = self.spec.params
        if self._emb is None or self._emb["bundle"] is not bundle:
            raise RuntimeError("the embedding-space perturbations are not built for this bundle: the runner calls "
                               "on_prepared(ctx, config) (or call bind(...) yourself)")
        out = []
        top = max(p["embedding_budgets"])
        for obj in ATTACKS:
            for b in p["embedding_budgets"]:
                vals = []
                for e, t, r, adv in zip(examples, targets, results, self._emb["found"][(obj, b)]):
                    a0 = r.original_map
                    k = k_for(len(a0), p["topk_share"])
                    if not any(np.any(v) for v in adv.rows.values()):
                        vals.append((0.0, 0.0, 0.0))  # no perturbation kept the class: the input itself
                        continue
                    pb = ModelBundle(perturbed_model(bundle.model, adv.rows), bundle.tokenizer, f"{bundle.name}-adv",
                                     bundle.num_labels, bundle.max_length, device=bundle.device,
                                     predict_batch_size=bundle.predict_batch_size, counter=bundle.counter, dtype=bundle.dtype)
                    pb.model.to(bundle.device)
                    pb.mlm = bundle.mlm
                    ex = Explanations(explainer, pb, seed, p["aggregation"], p["max_explain_batch"],
                                      on_call=on_explain_call)
                    (m,) = ex.get([(e.segments, int(t))])
                    p1 = float(pb.proba_of_segments([e.segments])[0, int(t)])
                    vals.append((rank_change(a0, m, k), topk_sum_change(a0, m, k), float(r.original_proba - p1)))
                v = np.asarray(vals, dtype=np.float64)
                out.append({"objective": obj, "budget": b, "eps": b * self._emb["std"],
                            "rank_change_mean": float(v[:, 0].mean()), "topk_sum_change_mean": float(v[:, 1].mean()),
                            "prob_change_mean": float(v[:, 2].mean()), "n_inputs": len(vals),
                            **{k2: x for k2, x in next(rw for rw in self._emb["rows"]
                                                      if rw["objective"] == obj and rw["budget"] == b).items()
                               if k2 in ("surrogate_objective_mean", "moved_inputs")}})
                if b == top:
                    sfx = _suffix(obj)
                    per_example[f"adv_emb_rank_change{sfx}"] = v[:, 0]
                    per_example[f"adv_emb_topk_sum_change{sfx}"] = v[:, 1]
                    per_example[f"adv_emb_prob_change{sfx}"] = v[:, 2]
        return out


@register_task("adversarial_explanations")
def adversarial_explanations(**overrides) -> AdversarialTask:
    """Embedded default: the fragility task's generated corpus, its synonym table and constraints."""
    return AdversarialTask(source="generated", name="adversarial_explanations", **overrides)
