"""ROAR and ROAR_BERT (paper 003 sec. 5.1, after Hooker et al. 2019): remove the words an
explainer ranks highest from every training and test input, retrain the reference model on the
modified training set, and measure its accuracy on the modified test set.  A more faithful
explainer removes more of what the task needs, so the retrained model is less accurate.

Per explainer, for every removal share ``N`` in ``levels`` (default 10/20/30%, the paper's):

- the explainer's word maps of the ROAR training inputs and of the scored (test) inputs, each
  explained once against the reference model's predicted class (cached like every explain call;
  the explainer never sees a label);
- ROAR: the top ``ceil(N% * words)`` words by signed score (greatest first, ties in input order:
  :func:`harness.metrics.removal.attribution_order`) deleted; ROAR_BERT: each of them replaced by
  the run's masked LM's top-1 fill (all of an input's removed words masked at once, one masked-LM
  call per input: :func:`harness.models.removal.mlm_fill`);
- ``n_models`` models retrained with the task's own recipe (seeds ``seed, seed + 1, ...``, no
  accuracy bar; cached by recipe and data like the reference model), scored on the modified test set;
- the same with a **random-removal control**: a seeded random ranking of each input's words,
  retrained once per task and shared by every explainer's record.

Metrics, per test input (so bootstrap CIs and the board's paired tests apply):

- ``roar_acc_<N>`` / ``roar_bert_acc_<N>``: whether the retrained model classifies it right
  (mean over the models): the dev-set accuracy of the paper's table 2 (lower = better);
- ``roar_gain`` (main) / ``roar_bert_gain``: mean over N of (control correct - explainer correct),
  the accuracy drop beyond random removal (higher = better).

The ``roar_curve`` table holds every accuracy (explainer, control, and the model retrained on
the unmodified data); the board ranks explainers by both gains and flags where ROAR and ROAR_BERT
disagree about the order (the bias paper 003 describes).  Definitions and deviations:
docs/ROAR.md.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import numpy as np

from harness.engine.task import Evaluation, PreparedTask, Task, TaskSpec, hash_prepared, register_task
from harness.protocols import Example, Segments

log = logging.getLogger(__name__)

VERSION = "1.0"
FAMILY = "roar"
MAIN_METRIC = "roar_gain"
BASES = ("planted_sst", "mnli_faithfulness")
KINDS = ("roar", "roar_bert")


def metric_names(levels: Sequence[int]) -> tuple[str, ...]:
    out = [MAIN_METRIC, "roar_bert_gain"]
    for kind in KINDS:
        out += [f"{kind}_acc_{n}" for n in levels]
    return tuple(out)


def n_removed(share_percent: int, n_words: int) -> int:
    """``ceil(N% * n)`` words (at least 1, at most n), 9-decimal rounded as the removal metrics do."""
    from harness.metrics.removal import n_words_for

    return n_words_for(share_percent / 100.0, n_words)


def removal_mask(order: np.ndarray, k: int, n_words: int) -> np.ndarray:
    """(n_words,) bool: the first ``k`` words of ``order`` removed."""
    mask = np.zeros(n_words, dtype=bool)
    mask[np.asarray(order[:k], dtype=int)] = True
    return mask


def delete_words(segments: Segments, remove: np.ndarray) -> Segments:
    """The input without its removed words (each segment keeps its remaining words, in order)."""
    from harness.explain_utils import keep_words

    return keep_words(segments, ~np.asarray(remove, dtype=bool))


def random_orders(inputs: Sequence[Segments], seed: int) -> list[np.ndarray]:
    """The control's ranking: a seeded random permutation of each input's words."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(sum(len(s) for s in segs)) for segs in inputs]


class RoarTask(Task):
    #: the planted task's informative explainers and the random baseline (each explainer costs its
    #: explanations of the training and test inputs plus 2 x len(levels) retrainings);
    #: ``--all-submissions`` runs every submission
    default_submissions = ("random", "gradient", "integrated_gradients", "lime")
    failure_stage = "retrain"

    def __init__(self, base: str = "planted_sst", roar_train: int = 800, n_eval: int = 100, min_words: int = 4,
                 levels: Sequence[int] = (10, 20, 30), n_models: int = 1, control_seed: int = 0,
                 name: str = "roar", **base_overrides: Any):
        from harness.engine.task import get_task

        if base not in BASES:
            raise ValueError(f"base must be one of {BASES}, got {base!r}")
        levels = tuple(int(n) for n in levels)
        if not levels or any(not 0 < n < 100 for n in levels) or len(set(levels)) != len(levels):
            raise ValueError(f"levels must be distinct percentages in (0, 100), got {list(levels)}")
        if n_models < 1 or roar_train < 10 or n_eval < 2 or min_words < 2:
            raise ValueError("n_models must be >= 1, roar_train >= 10, n_eval >= 2 and min_words >= 2")
        self.base = get_task(base, **base_overrides)
        recipe = self.base.spec.model
        self.spec = TaskSpec(
            name=name, version=VERSION,
            description="ROAR / ROAR_BERT (paper 003 sec. 5.1): the top N% words of every training and test input "
                        "deleted (ROAR) or replaced by the masked LM's top-1 fill (ROAR_BERT), the reference model "
                        "retrained on the modified data; test accuracy against a random-removal control.",
            dataset=self.base.spec.dataset, fields=self.base.spec.fields, num_labels=self.base.spec.num_labels,
            model=recipe, metrics=metric_names(levels), main_metric=MAIN_METRIC, n_eval=n_eval,
            params=dict(base=base, base_spec_hash=self.base.spec.hash(), roar_train=roar_train, min_words=min_words,
                        levels=list(levels), n_models=n_models, control_seed=control_seed,
                        retrain_recipe="the reference recipe, seeds seed..seed+n_models-1, no accuracy bar"))
        self._data: PreparedTask | None = None
        self._train: list[tuple[Segments, int]] = []
        self._bound: dict[str, Any] | None = None

    def reference_cache_name(self) -> str:
        return self.base.spec.name  # explain the very model the base task explains

    # -- data -------------------------------------------------------------------------------
    def prepare(self) -> PreparedTask:
        """ROAR's training inputs: the first ``roar_train`` training rows of the base task with at
        least ``min_words`` words; its test inputs (the scored examples): the first ``n_eval``
        such rows of the base task's dev split, gold = their labels (never shown to an explainer)."""
        from harness.models.reference import hash_examples

        p = self.spec.params
        data = self.base.prepare()
        ok = [r for r in data.train if sum(len(s) for s in r[0]) >= p["min_words"]][: p["roar_train"]]
        test = [r for r in data.dev if sum(len(s) for s in r[0]) >= p["min_words"]][: self.spec.n_eval]
        if len(ok) < p["roar_train"] or len(test) < self.spec.n_eval:
            raise ValueError(f"the base task has {len(ok)} training and {len(test)} dev rows of >= "
                             f"{p['min_words']} words; ROAR needs roar_train={p['roar_train']} and n_eval={self.spec.n_eval}")
        self._train = ok
        examples = [Example(id=f"{self.spec.name}-test-{i}", segments=s) for i, (s, _) in enumerate(test)]
        gold = [int(y) for _, y in test]
        self._data = PreparedTask(data.train, data.dev, examples, gold,
                                  hash_prepared(data.train, data.dev, examples, gold) + f"-{hash_examples(ok)}")
        return self._data

    @property
    def train_examples(self) -> list[Example]:
        return [Example(id=f"{self.spec.name}-train-{i}", segments=s) for i, (s, _) in enumerate(self._train)]

    # -- the control and the unmodified retrain (once per task) --------------------------------
    def on_prepared(self, ctx, config) -> None:
        self.bind(ctx.ref.bundle, ctx.data.examples, ctx.data.gold, config.cache_dir)

    def bind(self, bundle, examples: Sequence[Example], gold: Sequence[int], cache_dir) -> None:
        """Fix the training inputs' targets (the reference model's predictions) and retrain the
        models of the unmodified data and of the random-removal control (ROAR_BERT fills with the
        bundle's masked LM)."""
        p = self.spec.params
        t0 = time.perf_counter()
        train_segs = [s for s, _ in self._train]
        train_targets = bundle.proba_of_segments(train_segs).argmax(-1).astype(int).tolist()
        self._bound = {"bundle": bundle, "cache_dir": cache_dir, "train_targets": train_targets,
                       "test": [e.segments for e in examples], "gold": np.asarray(gold, dtype=int)}
        base_correct = self._retrain_correct(list(self._train), list(self._bound["test"]))
        test_orders = random_orders(self._bound["test"], p["control_seed"])
        train_orders = random_orders(train_segs, p["control_seed"] + 1)
        control = self._curves(train_orders, test_orders)
        self._bound.update(base_correct=base_correct, control=control, seconds=time.perf_counter() - t0)
        log.info("ROAR control retrained: unmodified accuracy %.3f, %s", base_correct.mean(),
                 ", ".join(f"{k} {n}%: {v.mean():.3f}" for (k, n), v in control.items()))

    def _retrain_correct(self, train_rows: list[tuple[Segments, int]], test_inputs: list[Segments]) -> np.ndarray:
        """(n_test,) mean correctness over the ``n_models`` retrained models."""
        from harness.models.reference import train_reference_model

        b = self._bound
        gold = b["gold"]
        recipe = self.spec.model
        # the retrained model is scored on the modified test set (its dev split is where the
        # reference recipe measures accuracy; no bar: a low accuracy is the measurement)
        dev_rows = [(s, int(y)) for s, y in zip(test_inputs, gold)]
        correct = np.zeros(len(test_inputs), dtype=np.float64)
        for k in range(self.spec.params["n_models"]):
            r = recipe.model_copy(update={"seed": recipe.seed + k, "min_dev_accuracy": 0.0})
            ref = train_reference_model(r, train_rows, dev_rows, self.spec.num_labels, b["cache_dir"],
                                        f"{self.spec.name}-retrain")
            pred = ref.bundle.proba_of_segments(test_inputs).argmax(-1)
            correct += (pred == gold)
        return correct / self.spec.params["n_models"]

    def _modified(self, kind: str, inputs: Sequence[Segments], masks: Sequence[np.ndarray]) -> list[Segments]:
        if kind == "roar":
            return [delete_words(s, m) for s, m in zip(inputs, masks)]
        from harness.models.removal import mlm_fill

        bundle = self._bound["bundle"]
        if getattr(bundle, "mlm", None) is None:
            raise ValueError("ROAR_BERT needs the run's masked LM, but the run has none (--mlm none)")
        return list(mlm_fill(bundle, list(inputs), list(masks)))

    def _curves(self, train_orders: Sequence[np.ndarray], test_orders: Sequence[np.ndarray]) -> dict:
        """(kind, N) -> (n_test,) correctness of the models retrained on that removal."""
        b, out = self._bound, {}
        train_segs = [s for s, _ in self._train]
        labels = [int(y) for _, y in self._train]
        for n in self.spec.params["levels"]:
            tr_masks = [removal_mask(o, n_removed(n, len(o)), len(o)) for o in train_orders]
            te_masks = [removal_mask(o, n_removed(n, len(o)), len(o)) for o in test_orders]
            for kind in KINDS:
                tr = self._modified(kind, train_segs, tr_masks)
                te = self._modified(kind, b["test"], te_masks)
                out[(kind, n)] = self._retrain_correct(list(zip(tr, labels)), te)
        return out

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, run) -> Evaluation:
        b = self._bound
        if b is None or b["bundle"] is not run.bundle:
            raise RuntimeError("the ROAR task's control is not built for this bundle: the runner calls "
                               "on_prepared(ctx, config) (or call bind(...) yourself)")
        test_maps = run.explain_all()
        train_maps = run.explain_inputs(self.train_examples, b["train_targets"])
        for segs, m in zip([s for s, _ in self._train] + list(b["test"]), train_maps + test_maps):
            if len(m) != sum(len(s) for s in segs):
                raise ValueError("ROAR needs untruncated inputs: an input exceeds the model's max_length")
        return self.score(train_maps, test_maps)

    def score(self, train_maps: Sequence[np.ndarray], test_maps: Sequence[np.ndarray]) -> Evaluation:
        """The explainer's curves from its maps, against the bound control."""
        from harness.metrics.removal import attribution_order

        b, p = self._bound, self.spec.params
        t0 = time.perf_counter()
        curves = self._curves([attribution_order(m) for m in train_maps], [attribution_order(m) for m in test_maps])
        per_example: dict[str, np.ndarray] = {}
        rows = []
        for kind in KINDS:
            gains = []
            for n in p["levels"]:
                per_example[f"{kind}_acc_{n}"] = curves[(kind, n)]
                gains.append(b["control"][(kind, n)] - curves[(kind, n)])
                rows.append({"kind": kind, "share_percent": n, "accuracy": float(curves[(kind, n)].mean()),
                             "control_accuracy": float(b["control"][(kind, n)].mean()),
                             "unmodified_accuracy": float(b["base_correct"].mean()),
                             "n_models": p["n_models"], "n_test": len(b["test"]), "n_train": len(self._train)})
            per_example["roar_gain" if kind == "roar" else "roar_bert_gain"] = np.mean(gains, axis=0)
        per_example = {k: per_example[k] for k in self.spec.metrics}
        higher = {k: k.endswith("gain") for k in per_example}
        family = {k: FAMILY for k in per_example}
        details = {MAIN_METRIC: {"retrain_seconds": time.perf_counter() - t0, "control_seconds": b["seconds"],
                                 "unmodified_accuracy": float(b["base_correct"].mean())}}
        return Evaluation(per_example=per_example, higher_is_better=higher, family=family,
                          tables={"roar_curve": rows}, details=details)


@register_task("roar")
def roar(**overrides) -> RoarTask:
    """Embedded default: the planted-SST generated corpus and its tiny-bert recipe, offline."""
    return RoarTask(base="planted_sst", name="roar", **overrides)


@register_task("roar_nli")
def roar_nli(**overrides) -> RoarTask:
    """The generated MultiNLI-style corpus of ``mnli_faithfulness`` and its tiny-bert recipe."""
    return RoarTask(base="mnli_faithfulness", name="roar_nli", **overrides)
