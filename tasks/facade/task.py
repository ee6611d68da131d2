"""FACADE stress test (paper 002, Wang et al. 2020, sec. 3-4): is an explainer fooled by a model
built to mislead gradients?

The task's reference model is merged with a facade (:mod:`harness.models.facade`) whose input
gradients point at the input's **stop words** (lexical variant, ``stop``) or at its **first
word** (positional variant, ``first``), while the merged model's output equals the original's on
every real input.  Per explainer it explains the original model and each merged model on the
same inputs (same seed) and reports, per variant ``v``:

- ``facade_<v>_p_at_1``: P@1, the share of inputs whose top-ranked word (largest ``|a|``) is a
  facade target (paper 002 sec. 4.1; ties at the top count by the share of targets among the
  tied words); ``facade_<v>_p_at_1_original``: the same on the original model (the base rate);
- ``facade_<v>_mass``: the mean attribution on the targets, as a share of the input's total
  ``|a|`` (paper 002's "mean attribution", summed over the stop words), and ``..._original``;
- ``facade_<v>_rho``: Spearman correlation between the explainer's ``|a|`` on the merged and on
  the original model (1 = unaffected).

The main metric ``facade_rho`` is the mean of the variants' rho (higher = less affected).  An
explainer is **fooled** by a variant when its P@1 on the merged model exceeds its P@1 on the
original by at least ``fooled_margin``.  The board is diagnostic (shown, not counted in the
overall rank): an explainer that ignores the model is unaffected by construction.

Registered tasks: ``facade`` (planted-SST generated corpus and its tiny-bert reference model,
``n_eval`` = 32) and ``facade_nli`` (the generated MultiNLI-style corpus).  Definitions and the
differences from the paper: docs/FACADE.md.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import numpy as np

from harness.engine.task import Evaluation, PreparedTask, Task, TaskSpec, hash_prepared, register_task
from harness.protocols import Example

log = logging.getLogger(__name__)

VERSION = "1.0"
FAMILY = "facade"
MAIN_METRIC = "facade_rho"
BASES = ("planted_sst", "mnli_faithfulness")
VARIANTS = ("stop", "first")


def metric_names(variants: Sequence[str]) -> tuple[str, ...]:
    out = [MAIN_METRIC]
    for v in variants:
        out += [f"facade_{v}_p_at_1", f"facade_{v}_mass", f"facade_{v}_rho", f"facade_{v}_p_at_1_original",
                f"facade_{v}_mass_original"]
    return tuple(out)


# -- the per-input measures (hand-checked in tests/test_facade.py) --------------------------------
def _importance(m: np.ndarray) -> np.ndarray:
    imp = np.abs(np.asarray(m, dtype=np.float64))
    return np.ones_like(imp) if imp.size and imp.max() == 0 else imp  # an all-zero map ranks nothing: all tied


def p_at_1(m: np.ndarray, targets: np.ndarray) -> float:
    """Whether the top word (largest ``|a|``) is a target; with ties at the top, the share of the
    tied words that are targets (the expected P@1 under a random tie-break)."""
    imp = _importance(m)
    top = imp == imp.max()
    return float(np.asarray(targets, bool)[top].mean())


def target_mass(m: np.ndarray, targets: np.ndarray) -> float:
    """The share of the input's total ``|a|`` on the targets (an all-zero map: the targets' share of words)."""
    imp = _importance(m)
    return float(imp[np.asarray(targets, bool)].sum() / imp.sum())


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of ``|a|`` and ``|b|`` (average ranks for ties); 1 when both are
    constant, 0 when only one is."""
    from scipy.stats import spearmanr

    x, y = np.abs(np.asarray(a, np.float64)), np.abs(np.asarray(b, np.float64))
    cx, cy = bool(np.all(x == x[0])), bool(np.all(y == y[0]))
    if cx or cy:
        return 1.0 if cx and cy else 0.0
    return float(spearmanr(x, y).statistic)


def target_words(example: Example, variant: str, stopwords) -> np.ndarray:
    """(n_words,) bool: the facade's targets among the input's words (all segments, in order)."""
    words = [w for seg in example.segments for w in seg]
    if variant == "first":
        return np.arange(len(words)) == 0
    return np.array([w.lower() in stopwords for w in words], dtype=bool)


class FacadeTask(Task):
    #: gradient explainers (expected fooled), integrated gradients (expected to resist),
    #: perturbation methods (unaffected: the predictions do not change), attention and random;
    #: ``--all-submissions`` runs every submission
    default_submissions = ("random", "gradient", "gradient_x_input", "smoothgrad", "integrated_gradients",
                           "deeplift", "lime", "kernel_shap", "leave_one_out", "average_attention")
    failure_stage = "attack"

    def __init__(self, base: str = "planted_sst", n_eval: int = 32, min_words: int = 4,
                 variants: Sequence[str] = VARIANTS, strength: float = 10.0, sharpness: int = 8,
                 width_per_class: int = 4, tolerance: float = 1e-4, fooled_margin: float = 0.3,
                 aggregation: str = "absmax", max_explain_batch: int = 512, name: str = "facade",
                 **base_overrides: Any):
        from harness.engine.task import get_task

        if base not in BASES:
            raise ValueError(f"base must be one of {BASES}, got {base!r}")
        variants = tuple(variants)
        if not variants or any(v not in VARIANTS for v in variants) or len(set(variants)) != len(variants):
            raise ValueError(f"variants must be distinct names from {VARIANTS}, got {list(variants)}")
        if min_words < 2:
            raise ValueError("min_words must be >= 2 (a rank correlation needs two words)")
        if strength <= 0 or tolerance <= 0 or not 0 < fooled_margin <= 1:
            raise ValueError("strength and tolerance must be > 0 and fooled_margin in (0, 1]")
        self.base = get_task(base, n_eval=max(300, 4 * n_eval), **base_overrides)
        self.spec = TaskSpec(
            name=name, version=VERSION,
            description="FACADE (paper 002): the reference model merged with a facade whose input gradients point "
                        "at the stop words or the first word while its predictions stay the same; P@1 and "
                        "attribution mass on the facade's targets, rank correlation with the original model's map.",
            dataset=self.base.spec.dataset, fields=self.base.spec.fields, num_labels=self.base.spec.num_labels,
            model=self.base.spec.model, metrics=metric_names(variants), main_metric=MAIN_METRIC, n_eval=n_eval,
            params=dict(base=base, base_spec_hash=self.base.spec.hash(), min_words=min_words,
                        variants=list(variants), strength=strength, sharpness=sharpness,
                        width_per_class=width_per_class, tolerance=tolerance, fooled_margin=fooled_margin,
                        stopwords="project English list (tasks/fragility/resources.py)",
                        aggregation=aggregation, max_explain_batch=max_explain_batch))
        self._data: PreparedTask | None = None
        self._bound: dict[str, Any] | None = None

    @property
    def stopwords(self) -> frozenset[str]:
        from tasks.fragility.resources import ENGLISH_STOPWORDS

        return ENGLISH_STOPWORDS

    def reference_cache_name(self) -> str:
        return self.base.spec.name  # the very model the base task explains, trained once

    # -- data -------------------------------------------------------------------------------
    def prepare(self) -> PreparedTask:
        """The base task's inputs with at least ``min_words`` words, at least one stop word and one
        other word (so P@1 can go either way), the first ``n_eval`` of them."""
        p = self.spec.params
        data = self.base.prepare()
        keep = []
        for i, e in enumerate(data.examples):
            t = target_words(e, "stop", self.stopwords)
            if e.n_words >= p["min_words"] and t.any() and not t.all():
                keep.append(i)
        keep = keep[: self.spec.n_eval]
        if len(keep) < self.spec.n_eval:
            raise ValueError(f"only {len(keep)} inputs of >= {p['min_words']} words with a stop word and another "
                             f"word for n_eval={self.spec.n_eval}")
        examples = [Example(id=f"{self.spec.name}-{data.examples[i].id}", segments=data.examples[i].segments)
                    for i in keep]
        gold = [data.gold[i] for i in keep]
        self._data = PreparedTask(data.train, data.dev, examples, gold,
                                  hash_prepared(data.train, data.dev, examples, gold))
        return self._data

    # -- the merged models (built once the reference model is ready) ----------------------------
    def on_prepared(self, ctx, config) -> None:
        self.bind(ctx.ref.bundle, ctx.data.examples, ctx.targets)

    def bind(self, bundle, examples: Sequence[Example], targets: Sequence[int]) -> None:
        """Merge ``bundle``'s model with each variant's facade, and check on the scored inputs that
        every merged model predicts the original's class with probabilities within ``tolerance``."""
        from harness.models.bundle import ModelBundle
        from harness.models.facade import logit_gradient_scale, merge_facade

        p = self.spec.params
        t0 = time.perf_counter()
        segs = [e.segments for e in examples]
        scale = logit_gradient_scale(bundle, segs, targets)
        amplitude = p["strength"] * scale / np.sqrt(p["width_per_class"])
        before = bundle.proba_of_segments(segs)
        merged, rows = {}, []
        for v in p["variants"]:
            model = merge_facade(bundle.model, bundle.tokenizer, v, amplitude, sharpness=p["sharpness"],
                                 width_per_class=p["width_per_class"], stopwords=self.stopwords)
            mb = ModelBundle(model, bundle.tokenizer, f"{bundle.name}-facade-{v}", bundle.num_labels,
                             bundle.max_length, device=bundle.device, predict_batch_size=bundle.predict_batch_size,
                             counter=bundle.counter, dtype=bundle.dtype)
            mb.model.to(bundle.device)
            mb.mlm = bundle.mlm
            after = mb.proba_of_segments(segs)
            diff = float(np.abs(after - before).max())
            same = float((after.argmax(-1) == before.argmax(-1)).mean())
            if diff > p["tolerance"] or same < 1.0:
                raise RuntimeError(f"the {v!r} facade changes the model's output on the scored inputs (largest "
                                   f"probability difference {diff:.3g}, tolerance {p['tolerance']:g}; same class on "
                                   f"{same:.1%}): the merge is not prediction-preserving for this model")
            dominance = _dominance(bundle, mb, examples, targets, v, self.stopwords)
            merged[v] = mb
            rows.append({"variant": v, "target": "stop words" if v == "stop" else "first word",
                         "amplitude": float(amplitude), "gradient_scale": float(scale),
                         "marked_tokens": int(model.attriboard_facade_marked), "max_prob_diff": diff,
                         "same_class_share": same, "gradient_p_at_1": dominance, "n_inputs": len(segs)})
            log.info("facade %s: largest probability difference %.2g, plain-gradient P@1 %.2f", v, diff, dominance)
        self._bound = {"bundle": bundle, "merged": merged, "models": rows, "seconds": time.perf_counter() - t0}

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, run) -> Evaluation:
        return self.explain_and_score(run.explainer(), run.bundle, run.examples, run.targets, run.seed)

    def explain_and_score(self, explainer, bundle, examples: Sequence[Example], targets: Sequence[int], seed: int,
                          on_explain_call=None) -> Evaluation:
        from tasks.fragility.attack import Explanations

        if self._bound is None or self._bound["bundle"] is not bundle:
            raise RuntimeError("the facade task's merged models are not built for this bundle: the runner calls "
                               "on_prepared(ctx, config) (or call bind(...) yourself)")
        p = self.spec.params
        items = [(e.segments, int(t)) for e, t in zip(examples, targets)]
        t0 = time.perf_counter()
        stats = {"explainer_calls": 0.0, "explained_inputs": 0.0, "explainer_seconds": 0.0}
        maps = {}
        for name, b in [("original", bundle), *self._bound["merged"].items()]:
            ex = Explanations(explainer, b, seed, p["aggregation"], p["max_explain_batch"], on_call=on_explain_call)
            maps[name] = ex.get(items)  # the same seed on every model: a model-blind explainer gives equal maps
            stats["explainer_calls"] += ex.n_calls
            stats["explained_inputs"] += ex.n_explained
            stats["explainer_seconds"] += ex.seconds
        per_example: dict[str, np.ndarray] = {}
        summary = []
        for v in p["variants"]:
            tg = [target_words(e, v, self.stopwords) for e in examples]
            cols = {
                f"facade_{v}_p_at_1": [p_at_1(m, t) for m, t in zip(maps[v], tg)],
                f"facade_{v}_mass": [target_mass(m, t) for m, t in zip(maps[v], tg)],
                f"facade_{v}_rho": [rank_correlation(a, b) for a, b in zip(maps[v], maps["original"])],
                f"facade_{v}_p_at_1_original": [p_at_1(m, t) for m, t in zip(maps["original"], tg)],
                f"facade_{v}_mass_original": [target_mass(m, t) for m, t in zip(maps["original"], tg)],
            }
            per_example.update({k: np.asarray(x, dtype=np.float64) for k, x in cols.items()})
            p1, p1o = per_example[f"facade_{v}_p_at_1"].mean(), per_example[f"facade_{v}_p_at_1_original"].mean()
            summary.append({"variant": v, "p_at_1": float(p1), "p_at_1_original": float(p1o),
                            "mass": float(per_example[f"facade_{v}_mass"].mean()),
                            "mass_original": float(per_example[f"facade_{v}_mass_original"].mean()),
                            "rho": float(per_example[f"facade_{v}_rho"].mean()),
                            "fooled": bool(p1 - p1o >= p["fooled_margin"]),
                            "fooled_rule": f"P@1 - P@1 original >= {p['fooled_margin']}", "n_inputs": len(items)})
        per_example[MAIN_METRIC] = np.mean([per_example[f"facade_{v}_rho"] for v in p["variants"]], axis=0)
        per_example = {k: per_example[k] for k in self.spec.metrics}
        higher = {k: k.endswith("rho") for k in per_example}
        family = {k: FAMILY for k in per_example}
        per_input = [{"example_id": e.id, **{k: float(x[i]) for k, x in per_example.items()}}
                     for i, e in enumerate(examples)]
        details = {MAIN_METRIC: {**stats, "evaluate_seconds": time.perf_counter() - t0,
                                 "merge_seconds": self._bound["seconds"],
                                 "fooled_variants": float(sum(r["fooled"] for r in summary))}}
        tables = {"facade_summary": summary, "facade_models": self._bound["models"], "facade_per_input": per_input}
        return Evaluation(per_example=per_example, higher_is_better=higher, family=family, tables=tables,
                          details=details, aggregation=p["aggregation"])


def _dominance(bundle, merged, examples: Sequence[Example], targets: Sequence[int], variant: str,
               stopwords) -> float:
    """Plain-gradient P@1 on the merged model (the harness's own L2-norm gradient, word level by
    absmax): how far the facade dominates the input gradients, measured once per model."""
    from harness.core.aggregation import aggregate
    from harness.explainers.common import embedding_gradients

    batch = merged.make_batch([e.segments for e in examples], list(targets))
    grad = embedding_gradients(merged, batch)  # d p(target) / d e_t, the baseline `gradient`'s
    norms = grad.norm(dim=-1).masked_fill(batch.special_tokens_mask.bool(), 0.0).cpu().double().numpy()
    hits = []
    for i, e in enumerate(examples):
        words = aggregate(norms[i], batch.word_ids[i][: norms.shape[1]], batch.n_words(i), "absmax")
        hits.append(p_at_1(words, target_words(e, variant, stopwords)))
    return float(np.mean(hits))


@register_task("facade")
def facade(**overrides) -> FacadeTask:
    """Embedded default: the planted-SST generated corpus and its tiny-bert reference model, offline."""
    return FacadeTask(base="planted_sst", name="facade", **overrides)


@register_task("facade_nli")
def facade_nli(**overrides) -> FacadeTask:
    """The generated MultiNLI-style corpus of ``mnli_faithfulness`` and its tiny-bert reference model."""
    return FacadeTask(base="mnli_faithfulness", name="facade_nli", **overrides)
