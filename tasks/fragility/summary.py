"""From attack results to per-example metrics and tables (the task's Evaluation).

Per input and objective, each level m (the selected candidate with m words changed) gets
the clipped Spearman correlation and the top-50% intersection between the original and
the candidate's map.  Levels are grouped into the ratio buckets of
:data:`tasks.fragility.metrics.BUCKETS`; an input's value in a bucket is the mean over
its levels in that bucket (an input longer than 10 words can have several).

- **Per-input score** of an objective: the mean over the buckets the input reached of its
  bucket values.  An input for which no valid candidate exists at all (nothing could be
  changed within the constraints) scores 1: its map is unchanged.  This cannot depend on
  the explainer (level 1 starts from the original text for every objective).
- **Strongest objective**: the one with the lowest mean per-input score over all inputs
  (among l2, delta_lom and random; ties in that order).
- **Main metric** ``fragility_rank_corr``: per input, its score under the strongest
  objective; the runner's mean of it is the leaderboard number (higher = more robust).
- Per-bucket table (``fragility_buckets``): per objective and bucket, the number of inputs
  that reached the bucket, the number of levels (candidates) in it, and the means over
  those inputs of their bucket values (clipped Spearman, top-50% intersection, model
  confidence in the target class).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tasks.fragility.attack import ExampleAttack
from tasks.fragility.metrics import BUCKETS, bucket_index, spearman_clipped, top_k_intersection

FAMILY = "fragility"


def _mean(xs) -> float | None:
    return float(np.mean(xs)) if len(xs) else None


def summarise(results: Sequence[ExampleAttack], example_ids: Sequence[str], objectives: Sequence[str],
              resources: list[dict] | None = None, perplexity=None, extra_details: dict | None = None):
    """Returns ``(per_example, higher_is_better, family, tables, details)``."""
    n = len(results)
    per_input_rows = []
    per_bucket: dict[str, dict[int, dict[str, list]]] = {o: {b: {"rho": [], "top": [], "conf": [], "n_levels": 0}
                                                             for b in range(len(BUCKETS))} for o in objectives}
    conf_rows: dict[str, dict[int, list[float]]] = {o: {} for o in objectives}
    score = {o: np.ones(n) for o in objectives}
    top50 = {o: np.ones(n) for o in objectives}
    reached = {o: np.zeros(n, dtype=int) for o in objectives}
    levels_used = {o: np.zeros(n, dtype=int) for o in objectives}
    for e, r in enumerate(results):
        nw = len(r.words)
        for o in objectives:
            conf_rows[o].setdefault(0, []).append(r.original_proba)
            buckets: dict[int, dict[str, list]] = {}
            for lv in r.levels.get(o, []):
                b = bucket_index(lv.m, nw)
                d = buckets.setdefault(b, {"rho": [], "top": [], "conf": []})
                d["rho"].append(spearman_clipped(r.original_map, lv.map))
                d["top"].append(top_k_intersection(r.original_map, lv.map))
                d["conf"].append(lv.proba)
                conf_rows[o].setdefault(lv.m, []).append(lv.proba)
                per_bucket[o][b]["n_levels"] += 1
            levels_used[o][e] = len(r.levels.get(o, []))
            if buckets:
                rho_b, top_b = [], []
                for b in sorted(buckets):
                    d = buckets[b]
                    rb, tb, cb = float(np.mean(d["rho"])), float(np.mean(d["top"])), float(np.mean(d["conf"]))
                    rho_b.append(rb)
                    top_b.append(tb)
                    per_bucket[o][b]["rho"].append(rb)
                    per_bucket[o][b]["top"].append(tb)
                    per_bucket[o][b]["conf"].append(cb)
                    per_input_rows.append({"objective": o, "bucket": BUCKETS[b], "example_id": example_ids[e],
                                           "n_words": nw, "n_levels": len(d["rho"]),
                                           "spearman_clipped": rb, "top50_intersection": tb,
                                           "confidence": cb})
                score[o][e] = float(np.mean(rho_b))
                top50[o][e] = float(np.mean(top_b))
                reached[o][e] = len(buckets)
    order = {o: k for k, o in enumerate(("l2", "delta_lom", "random"))}
    strongest = min(objectives, key=lambda o: (float(score[o].mean()) if n else 1.0, order.get(o, 9)))

    bucket_rows = []
    for o in objectives:
        for b, name in enumerate(BUCKETS):
            d = per_bucket[o][b]
            bucket_rows.append({
                "objective": o, "bucket": name, "n_inputs": len(d["rho"]), "n_candidates": d["n_levels"],
                "spearman_clipped_mean": _mean(d["rho"]),
                "spearman_clipped_std": float(np.std(d["rho"])) if d["rho"] else None,
                "top50_intersection_mean": _mean(d["top"]), "confidence_mean": _mean(d["conf"]),
            })
    confidence_rows = [{"objective": o, "n_changed": m, "n_inputs": len(v), "confidence_mean": float(np.mean(v))}
                       for o in objectives for m, v in sorted(conf_rows[o].items())]

    per_example = {"fragility_rank_corr": score[strongest], "fragility_top50": top50[strongest]}
    for o in objectives:
        per_example[f"rank_corr_{o}"] = score[o]
        per_example[f"top50_{o}"] = top50[o]
    higher = {k: True for k in per_example}
    family = {k: FAMILY for k in per_example}
    unperturbable = int(sum(1 for e in range(n) if all(levels_used[o][e] == 0 for o in objectives)))
    main_details = {f"strongest_is_{o}": float(o == strongest) for o in objectives}
    main_details.update({
        "n_inputs": float(n), "n_unperturbable": float(unperturbable),
        "mean_buckets_reached": float(reached[strongest].mean()) if n else 0.0,
        "mean_words_changed": float(levels_used[strongest].mean()) if n else 0.0,
    })
    for row in bucket_rows:
        if row["objective"] == strongest and row["spearman_clipped_mean"] is not None:
            main_details[f"bucket_{row['bucket'].replace('%', '').replace('-', '_')}"] = row["spearman_clipped_mean"]
    main_details.update({k: float(v) for k, v in (extra_details or {}).items()})
    details = {"fragility_rank_corr": main_details,
               "fragility_top50": {f"strongest_is_{o}": float(o == strongest) for o in objectives}}
    for o in objectives:
        details[f"rank_corr_{o}"] = {"mean_buckets_reached": float(reached[o].mean()) if n else 0.0,
                                     "mean_words_changed": float(levels_used[o].mean()) if n else 0.0}
    tables = {"fragility_buckets": bucket_rows, "fragility_per_input": per_input_rows,
              "fragility_confidence": confidence_rows,
              "fragility_summary": [{"strongest_objective": strongest, "n_inputs": n,
                                     "n_unperturbable": unperturbable,
                                     **{f"rank_corr_{o}_mean": float(score[o].mean()) if n else None for o in objectives}}]}
    if resources is not None:
        tables["fragility_resources"] = resources
    if perplexity is not None:
        tables["fragility_perplexity"] = perplexity
    return per_example, higher, family, tables, details


def perplexity_rows(lm, results: Sequence[ExampleAttack], objectives: Sequence[str]) -> list[dict]:
    """Paper 000 table 5: mean perplexity of the originals, of all valid candidates (C-avg)
    and of the selected candidates per objective."""
    def text(ws):
        return " ".join(ws)

    rows = [{"set": "original", "n": len(results),
             "perplexity_mean": float(np.mean(lm.perplexity([text(r.words) for r in results])))}]
    all_c = sorted({text(c) for r in results for c in r.candidate_texts})
    if all_c:
        rows.append({"set": "all_candidates", "n": len(all_c), "perplexity_mean": float(np.mean(lm.perplexity(all_c)))})
    for o in objectives:
        sel = [text(lv.words) for r in results for lv in r.levels.get(o, [])]
        if sel:
            rows.append({"set": f"selected_{o}", "n": len(sel), "perplexity_mean": float(np.mean(lm.perplexity(sel)))})
    return rows
