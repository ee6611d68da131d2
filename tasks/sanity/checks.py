"""The sanity task's evaluation loop: explain the reference model and its randomized or
re-trained variants, then compare the maps (:mod:`tasks.sanity.metrics`).

Model variants (every one explained with the run's explainer on the same inputs and the same
target classes, the reference model's predictions):

- ``original``: the reference model, explain seed s (the run seed);
- ``repeat``: the same model, another seed: the noise ceiling of a stochastic explainer
  (exactly 1 for a deterministic one; near 0 for the random baseline);
- ``head_<seed>``: the classification layer re-initialised with each of ``head_seeds``
  (paper 003 sec. 5.3, table A5);
- ``cascade_<k>``: the top k transformer blocks re-initialised, k = 1..L (cascading, from the
  top block down; paper 001 sec. 2.2.3.3 and 3.3, fig. 4.6);
- ``independent_<i>``: block i alone re-initialised, i = 1..L counted from the bottom
  (fig. 4.7).  ``independent_L`` is the same model state as ``cascade_1`` (block weights
  depend only on (layer_seed, block), :func:`tasks.sanity.randomize.module_seed`), so it is
  explained once;
- ``init_<seed>``: reference models trained with other seeds (same recipe and data; paper 004
  sec. 4.4 "different initialization");
- ``untrained``: the reference model with every fully connected layer on top of the encoder
  re-initialised (paper 004's "#Untrained").

Each variant is explained with its own batch seed (s + 1, s + 2, ...), so that a stochastic
explainer is compared under fresh noise and a seeded random explainer is not reported as
model-independent-but-identical; ``repeat`` tells how much of a drop is noise alone.  The
model is restored exactly after each randomization (checksum-checked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from tasks.sanity import metrics as M
from tasks.sanity.randomize import head_modules, randomized, top_fc_modules, transformer_blocks

FAMILY = "sanity"


@dataclass(frozen=True)
class SanityConfig:
    head_seeds: tuple[int, ...] = (1, 2, 3)
    layer_seed: int = 0
    untrained_seed: int = 0
    top_fraction: float = 0.25
    insensitive_rho: float = 0.9
    aggregation: str = "absmax"
    max_batch: int | None = 512


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # original | repeat | head | cascade | independent | init | untrained
    modules: tuple[str, ...] = ()
    randomize_seed: int = 0
    bundle_index: int = -1  # index into init bundles for kind == "init"
    label: str = ""


def plan_variants(model, n_init: int, cfg: SanityConfig, init_labels: Sequence[str] = ()) -> list[Variant]:
    """Every model state to explain, in order (see the module docstring)."""
    blocks = transformer_blocks(model)
    L = len(blocks)
    out = [Variant("original", "original", label="original"), Variant("repeat", "repeat", label="same model, other seed")]
    for s in cfg.head_seeds:
        out.append(Variant(f"head_{s}", "head", tuple(head_modules(model)), s, label=f"head re-init (seed {s})"))
    for k in range(1, L + 1):
        mods = tuple(blocks[L - k:])
        out.append(Variant(f"cascade_{k}", "cascade", mods, cfg.layer_seed,
                           label=f"blocks {L - k + 1}-{L}" if k > 1 else f"block {L}"))
    for i in range(1, L):  # independent_L == cascade_1
        out.append(Variant(f"independent_{i}", "independent", (blocks[i - 1],), cfg.layer_seed, label=f"block {i}"))
    for j in range(n_init):
        out.append(Variant(f"init_{j}", "init", bundle_index=j,
                           label=init_labels[j] if j < len(init_labels) else f"init {j}"))
    out.append(Variant("untrained", "untrained", tuple(top_fc_modules(model)), cfg.untrained_seed,
                       label="fully connected layers on top re-initialised"))
    return out


def explain_variants(explainer, bundle, items: Sequence[tuple[Any, int]], seed: int, variants: Sequence[Variant],
                     init_bundles: Sequence[Any], cfg: SanityConfig,
                     on_call: Callable[[Any], None] | None = None) -> tuple[dict[str, list[np.ndarray]], dict[str, float]]:
    """Maps per variant name, and call statistics."""
    from tasks.fragility.attack import Explanations

    maps: dict[str, list[np.ndarray]] = {}
    stats = {"explainer_calls": 0.0, "explained_inputs": 0.0, "explainer_seconds": 0.0}
    for offset, v in enumerate(variants):
        target_bundle = init_bundles[v.bundle_index] if v.kind == "init" else bundle
        ex = Explanations(explainer, target_bundle, seed + offset, cfg.aggregation, cfg.max_batch, on_call=on_call)
        if v.modules:
            with randomized(bundle.model, v.modules, v.randomize_seed):
                maps[v.name] = ex.get(items)
        else:
            maps[v.name] = ex.get(items)
        stats["explainer_calls"] += ex.n_calls
        stats["explained_inputs"] += ex.n_explained
        stats["explainer_seconds"] += ex.seconds
    return maps, stats


def _per_example(fn, a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    return np.array([fn(x, y) for x, y in zip(a, b)], dtype=np.float64)


def summarise(maps: dict[str, list[np.ndarray]], variants: Sequence[Variant], example_ids: Sequence[str],
              cfg: SanityConfig, n_blocks: int, extra_details: dict[str, float] | None = None):
    """Returns ``(per_example, higher_is_better, family, tables, details)`` of one explainer."""
    orig = maps["original"]
    n = len(orig)
    by_kind: dict[str, list[Variant]] = {}
    for v in variants:
        by_kind.setdefault(v.kind, []).append(v)

    heads = by_kind.get("head", [])
    sign = np.mean([_per_example(M.sign_change_share, orig, maps[v.name]) for v in heads], axis=0)
    mag = np.mean([_per_example(M.magnitude_change, orig, maps[v.name]) for v in heads], axis=0)
    absd = np.mean([_per_example(M.absolute_change, orig, maps[v.name]) for v in heads], axis=0)

    rho = {v.name: _per_example(M.spearman, orig, maps[v.name])
           for v in variants if v.kind in ("repeat", "cascade", "independent")}
    L = n_blocks
    independent = {i: rho[f"independent_{i}"] for i in range(1, L)}
    independent[L] = rho["cascade_1"]
    rho_top, rho_all = rho["cascade_1"], rho[f"cascade_{L}"]
    rho_ind = np.mean([independent[i] for i in range(1, L + 1)], axis=0)

    trained = ["original"] + [v.name for v in by_kind.get("init", [])]
    labels = {"original": "reference"} | {v.name: v.label for v in variants}
    pair = {}
    names = trained + ["untrained"]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            pair[(a, b)] = _per_example(lambda x, y: M.jaccard_top(x, y, cfg.top_fraction), maps[a], maps[b])
    dit_pairs = [pair[(a, b)] for i, a in enumerate(trained) for b in trained[i + 1:]]
    dit = np.mean(dit_pairs, axis=0) if dit_pairs else None
    uit = np.mean([pair[(a, "untrained")] for a in trained], axis=0)

    per_example = {"head_sign_change": sign, "head_magnitude_change": mag, "head_absolute_change": absd,
                   "rho_repeat": rho["repeat"], "rho_top_block": rho_top, "rho_all_blocks": rho_all,
                   "rho_independent_mean": rho_ind, "uit_jaccard": uit}
    if dit is not None:
        per_example["dit_jaccard"] = dit
    higher = {"head_sign_change": True, "head_magnitude_change": True, "head_absolute_change": True,
              "rho_repeat": True, "rho_top_block": False, "rho_all_blocks": False, "rho_independent_mean": False,
              "uit_jaccard": False, "dit_jaccard": True}
    higher = {k: higher[k] for k in per_example}
    family = {k: FAMILY for k in per_example}

    insensitive = bool(rho_all.mean() >= cfg.insensitive_rho) if n else False

    def row(mode, step, label, n_rand, vals):
        return {"mode": mode, "step": step, "label": label, "n_blocks_randomized": n_rand,
                "spearman_mean": float(vals.mean()) if n else None,
                "spearman_std": float(vals.std()) if n else None, "n_inputs": n}

    layer_rows = [row("full", 0, "original (other seed)", 0, rho["repeat"])]
    for k in range(1, L + 1):
        layer_rows.append(row("cascading", k, next(v.label for v in variants if v.name == f"cascade_{k}"), k,
                              rho[f"cascade_{k}"]))
    for i in range(L, 0, -1):
        layer_rows.append(row("independent", L - i + 1, f"block {i}", 1, independent[i]))
    head_rows = [{"head_seed": v.randomize_seed,
                  "sign_change_mean": float(_per_example(M.sign_change_share, orig, maps[v.name]).mean()),
                  "magnitude_change_mean": float(_per_example(M.magnitude_change, orig, maps[v.name]).mean()),
                  "n_inputs": n} for v in heads]
    consistency_rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            vals = pair[(a, b)]
            consistency_rows.append({"model_a": labels[a], "model_b": labels[b],
                                     "kind": "DIT" if b != "untrained" else "UIT",
                                     "jaccard_mean": float(vals.mean()), "jaccard_std": float(vals.std()),
                                     "n_inputs": n})
    per_input = [{"example_id": example_ids[e], **{k: float(v[e]) for k, v in per_example.items()}}
                 for e in range(n)]
    summary = {"insensitive": insensitive, "insensitive_rule": f"mean rho_all_blocks >= {cfg.insensitive_rho}",
               "n_blocks": L, "n_head_seeds": len(heads), "n_init_models": len(by_kind.get("init", [])),
               "top_fraction": cfg.top_fraction,
               **{f"{k}_mean": float(v.mean()) if n else None for k, v in per_example.items()}}
    tables = {"sanity_layers": layer_rows, "sanity_head": head_rows, "sanity_consistency": consistency_rows,
              "sanity_per_input": per_input, "sanity_summary": [summary]}
    main_details = {"insensitive": float(insensitive), "n_blocks": float(L), "n_head_seeds": float(len(heads)),
                    "n_init_models": float(len(by_kind.get("init", [])))}
    main_details.update({k: float(v) for k, v in (extra_details or {}).items()})
    details = {"head_sign_change": main_details,
               "rho_all_blocks": {"insensitive": float(insensitive), "threshold": cfg.insensitive_rho}}
    for r in layer_rows[1:]:
        details.setdefault("rho_top_block", {})[f"{r['mode']}_{r['step']}"] = r["spearman_mean"]
    return per_example, higher, family, tables, details


def mlm_predictability(mlm, segments: Sequence[Any], gold_words: Sequence[Sequence[int]] | None = None,
                       batch: int = 512) -> dict[str, float]:
    """Paper 003 appendix B, table A3: each word masked alone (one [MASK]), the masked LM's top-1
    fill compared with the original word (uncased).

    Returns ``exact_match`` (share of words restored exactly, A3a), ``top1_likelihood_exact``
    (mean top-1 likelihood over the exactly restored words, A3c), ``top1_likelihood_all``
    (mean top-1 likelihood over all words), ``n_words``, and, with ``gold_words`` (per input the
    indices of its gold words), ``exact_match_gold`` (A3b: over the gold words) and ``n_gold``."""
    if mlm is None:
        raise ValueError("masked-LM predictability needs a masked LM (the run has none: --mlm none?)")
    queries = [(i, j) for i, s in enumerate(segments) for j in range(sum(len(x) for x in s))]
    hits, probs = [], []
    for start in range(0, len(queries), batch):
        chunk = queries[start:start + batch]
        fills = mlm.top_fills([segments[i] for i, _ in chunk], [[j] for _, j in chunk], k=1)
        for (i, j), f in zip(chunk, fills):
            word = [w for seg in segments[i] for w in seg][j]
            top, p = f[0][0]
            hits.append(top.lower() == word.lower())
            probs.append(float(p))
    hits_a, probs_a = np.array(hits, dtype=bool), np.array(probs)
    out = {"exact_match": float(hits_a.mean()) if hits else 0.0,
           "top1_likelihood_exact": float(probs_a[hits_a].mean()) if hits_a.any() else 0.0,
           "top1_likelihood_all": float(probs_a.mean()) if hits else 0.0, "n_words": float(len(hits)),
           "n_exact": float(hits_a.sum())}
    if gold_words is not None:
        idx = {q: k for k, q in enumerate(queries)}
        g = [hits_a[idx[(i, j)]] for i, js in enumerate(gold_words) for j in js]
        out["exact_match_gold"] = float(np.mean(g)) if g else 0.0
        out["n_gold"] = float(len(g))
    return out


def variant_behaviour(bundle, init_bundles: Sequence[Any], variants: Sequence[Variant], segments: Sequence[Any],
                      targets: Sequence[int]) -> list[dict]:
    """How each model variant behaves on the inputs (explainer-independent): the share of
    inputs whose predicted class is still the target (the reference's prediction) and the
    mean target-class probability.  Tells whether a randomization changed the model's
    function at all (e.g. a re-initialised top block that the residual stream bypasses)."""
    rows = []
    tgt = np.asarray(list(targets), dtype=int)
    seen: set[tuple] = set()
    for v in variants:
        key = (v.kind == "init", v.bundle_index, v.modules, v.randomize_seed)
        if v.kind == "repeat" or key in seen:
            continue
        seen.add(key)
        b = init_bundles[v.bundle_index] if v.kind == "init" else bundle
        if v.modules:
            with randomized(bundle.model, v.modules, v.randomize_seed):
                p = b.proba_of_segments(list(segments))
        else:
            p = b.proba_of_segments(list(segments))
        p_t = p[np.arange(len(tgt)), tgt]
        rows.append({"variant": v.name, "label": v.label, "modules": ", ".join(v.modules),
                     "prediction_agreement": float((p.argmax(-1) == tgt).mean()) if len(tgt) else None,
                     "p_target_mean": float(p_t.mean()) if len(tgt) else None, "n_inputs": int(len(tgt))})
    return rows
