"""T5 sanity checks (paper 003 sec. 5.3 and appendix B/E; paper 001 sec. 2.2.3.3, 3.3; paper 004 sec. 4.4).

A task with its own :meth:`~harness.engine.task.Task.evaluate` loop: per explainer it explains the reference model and its
variants (:mod:`tasks.sanity.checks`) and reports

- classifier-head sanity check (paper 003 table A5): share of words whose attribution changes
  sign (``head_sign_change``, main metric, higher = more sensitive = better) and the mean
  change of magnitude (``head_magnitude_change``) after re-initialising the classification
  layer, averaged over ``head_seeds``;
- layer randomization (paper 001 fig. 4.6-4.7): Spearman correlation with the original map
  after cascading (top block down) and independent re-initialisation of whole transformer
  blocks (``rho_top_block``, ``rho_all_blocks``, ``rho_independent_mean``, per step in the
  ``sanity_layers`` table and the per-explainer plot; lower = more sensitive), and the noise
  ceiling ``rho_repeat`` (same model, another seed);
- initialization consistency (paper 004 table 3): Jaccard@25% between the maps of reference
  models trained with other seeds (``dit_jaccard``, higher = more consistent) and between the
  trained models and the untrained-head model (``uit_jaccard``, lower = better);
- masked-LM predictability of the task's words (paper 003 table A3; explainer-independent,
  in the ``sanity_mlm`` table of every record).

An explainer whose map stays put when every block is randomized (mean ``rho_all_blocks`` >=
``insensitive_rho``) is flagged insensitive.

Registered tasks:

- ``sanity``: on the planted-SST generated corpus (the data and reference-model recipe of
  ``planted_sst``), ``n_eval`` = 16 inputs;
- ``sanity_nli``: on the generated MultiNLI-style corpus of ``mnli_faithfulness``.

See docs/SANITY.md for the definitions, parameters and deviations.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

from harness.protocols import Example
from harness.engine.task import Evaluation, Task, PreparedTask, TaskSpec, hash_prepared, register_task

log = logging.getLogger(__name__)

VERSION = "1.0"
METRICS = ("head_sign_change", "head_magnitude_change", "head_absolute_change", "rho_repeat", "rho_top_block",
           "rho_all_blocks", "rho_independent_mean", "dit_jaccard", "uit_jaccard")
MAIN_METRIC = "head_sign_change"
BASES = ("planted_sst", "mnli_faithfulness")


class SanityTask(Task):
    #: Each explainer is run on 11 model variants (2-block tiny-bert, 3 head seeds, 2 extra
    #: seeds).  By default the grid runs every built-in baseline except the slowest ones
    #: (partition_shap ~45 s, lime_bert ~70 s, input_marginalization_renorm ~25 s and the two
    #: ensembles, which re-run their members); ``--all-submissions`` runs every submission.
    default_submissions = ("random", "gradient", "gradient_x_input", "integrated_gradients", "smoothgrad",
                           "deeplift", "lime", "kernel_shap", "occlusion", "leave_one_out", "loo_empty", "loo_unk",
                           "loo_mask", "loo_pad", "input_marginalization", "average_attention", "attention_rollout",
                           "scaled_attention")

    def __init__(self, base: str = "planted_sst", n_eval: int = 16, min_words: int = 4, mlm_n_eval: int = 300,
                 head_seeds: Sequence[int] = (1, 2, 3), layer_seed: int = 0, untrained_seed: int = 0,
                 init_seeds: Sequence[int] = (1, 2), top_fraction: float = 0.25, insensitive_rho: float = 0.9,
                 aggregation: str = "absmax", max_explain_batch: int = 512, name: str = "sanity",
                 **base_overrides: Any):
        from harness.engine.task import get_task

        if base not in BASES:
            raise ValueError(f"base must be one of {BASES}, got {base!r}")
        if not head_seeds:
            raise ValueError("head_seeds must name at least one seed")
        if len(set(init_seeds)) != len(init_seeds):
            raise ValueError(f"init_seeds must be distinct, got {list(init_seeds)}")
        if not 0 < top_fraction <= 1:
            raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
        if min_words < 2:
            raise ValueError("min_words must be >= 2 (a rank correlation needs two words)")
        self.base = get_task(base, n_eval=max(mlm_n_eval, 4 * n_eval), **base_overrides)
        recipe = self.base.spec.model
        if recipe.seed in init_seeds:
            raise ValueError(f"init_seeds {list(init_seeds)} must differ from the reference model's seed {recipe.seed}")
        self.spec = TaskSpec(
            name=name, version=VERSION,
            description="Sanity checks: sign/magnitude change under classifier-head re-initialisation, Spearman "
                        "correlation under cascading and independent block randomization, Jaccard@25% across "
                        "initialisations and against an untrained head, masked-LM predictability.",
            dataset=self.base.spec.dataset, fields=self.base.spec.fields, num_labels=self.base.spec.num_labels,
            model=recipe, metrics=METRICS if init_seeds else tuple(m for m in METRICS if m != "dit_jaccard"),
            main_metric=MAIN_METRIC, n_eval=n_eval,
            params=dict(base=base, base_spec_hash=self.base.spec.hash(), min_words=min_words, mlm_n_eval=mlm_n_eval,
                        head_seeds=list(head_seeds), layer_seed=layer_seed, untrained_seed=untrained_seed,
                        init_seeds=list(init_seeds), top_fraction=top_fraction, insensitive_rho=insensitive_rho,
                        aggregation=aggregation, max_explain_batch=max_explain_batch),
        )
        """The runner caches the reference model and masked LM under the base task's name, so that
        this task checks the very model ``planted_sst`` (``mnli_faithfulness``) explains, trained once."""
        self._data: PreparedTask | None = None
        self._mlm_inputs: list = []
        self._mlm_gold: list | None = None
        self._bound: dict[str, Any] | None = None

    def config(self):
        from tasks.sanity.checks import SanityConfig

        p = self.spec.params
        return SanityConfig(head_seeds=tuple(p["head_seeds"]), layer_seed=p["layer_seed"],
                            untrained_seed=p["untrained_seed"], top_fraction=p["top_fraction"],
                            insensitive_rho=p["insensitive_rho"], aggregation=p["aggregation"],
                            max_batch=p["max_explain_batch"])

    # -- data -------------------------------------------------------------------------------
    def prepare(self) -> PreparedTask:
        p = self.spec.params
        data = self.base.prepare()
        keep = [i for i, e in enumerate(data.examples) if e.n_words >= p["min_words"]][: self.spec.n_eval]
        if len(keep) < self.spec.n_eval:
            raise ValueError(f"only {len(keep)} inputs of >= {p['min_words']} words for n_eval={self.spec.n_eval}")
        examples = [Example(id=f"{self.spec.name}-{data.examples[i].id}", segments=data.examples[i].segments)
                    for i in keep]
        gold = [data.gold[i] for i in keep]
        # masked-LM predictability runs over the base task's scored inputs (explainer-independent)
        self._mlm_inputs = [e.segments for e in data.examples[: p["mlm_n_eval"]]]
        self._mlm_gold = ([list(g) for g in data.gold[: p["mlm_n_eval"]]] if p["base"] == "planted_sst" else None)
        self._data = PreparedTask(data.train, data.dev, examples, gold,
                                  hash_prepared(data.train, data.dev, examples, gold))
        return self._data

    # -- extra models (called by the runner once the reference model is ready) -----------------
    def on_prepared(self, ctx, config) -> None:
        """Train (or load from the run's cache) the reference models of ``init_seeds`` and measure
        the masked LM's predictability; called by :func:`harness.engine.runner.prepare_task`."""
        from harness.models.reference import train_reference_model

        if self._data is None:
            raise RuntimeError("prepare() must run before on_prepared()")
        t0 = time.perf_counter()
        ref = ctx.ref
        init = []
        for s in self.spec.params["init_seeds"]:
            recipe = self.spec.model.model_copy(update={"seed": int(s)})
            other = train_reference_model(recipe, self._data.train, self._data.dev, self.spec.num_labels,
                                          config.cache_dir, self.reference_cache_name())
            init.append((int(s), other))
        self.bind(ref.bundle, init, ctx.mlm, model_seconds=time.perf_counter() - t0,
                  reference=(self.spec.model.seed, ref), examples=ctx.data.examples, targets=ctx.targets)

    def bind(self, bundle, init: Sequence[tuple[int, Any]], mlm, model_seconds: float = 0.0,
             reference: tuple[int, Any] | None = None, examples: Sequence[Example] = (),
             targets: Sequence[int] = ()) -> None:
        """Attach the models of a run: ``init`` = (seed, :class:`~harness.models.reference.ReferenceModel`)
        pairs trained with other seeds; ``mlm`` = the run's masked LM or None; ``examples`` and
        ``targets``: the scored inputs, on which each model variant's behaviour is measured once
        (before any explainer runs, so no record's cost includes it)."""
        from harness.models.bundle import ModelBundle
        from tasks.sanity.checks import mlm_predictability, plan_variants, variant_behaviour

        bundles, rows = [], []
        if reference is not None:
            rows.append({"model": "reference", "seed": reference[0], "dev_accuracy": reference[1].dev_accuracy,
                         "model_hash": reference[1].model_hash})
        for s, other in init:
            if other.bundle.tokenizer.get_vocab() != bundle.tokenizer.get_vocab():
                raise ValueError(f"the seed-{s} model has another vocabulary than the reference model")
            other.bundle._hook.remove()  # count its passes in the run's counter instead
            b = ModelBundle(other.bundle.model, other.bundle.tokenizer, f"{bundle.name}-seed{s}", bundle.num_labels,
                            bundle.max_length, device=bundle.device, predict_batch_size=bundle.predict_batch_size,
                            counter=bundle.counter, dtype=bundle.dtype)
            b.model.to(bundle.device)
            b.mlm = bundle.mlm
            bundles.append(b)
            rows.append({"model": f"seed {s}", "seed": s, "dev_accuracy": other.dev_accuracy,
                         "model_hash": other.model_hash})
        if mlm is not None:
            # before any explainer runs, so no record's cost includes these masked-LM calls
            stats = mlm_predictability(mlm, self._mlm_inputs, self._mlm_gold)
            mlm_rows = [{"masked_lm": getattr(mlm, "name", "?"), "status": "measured", **stats}]
        else:
            mlm_rows = [{"masked_lm": "", "status": "unavailable: the run has no masked LM (--mlm none)"}]
        labels = [f"seed {s}" for s, _ in init]
        variants = plan_variants(bundle.model, len(bundles), self.config(), labels)
        behaviour = variant_behaviour(bundle, bundles, variants, [e.segments for e in examples], targets)
        self._bound = {"bundle": bundle, "init": bundles, "init_labels": labels, "models": rows, "mlm": mlm_rows,
                       "variants": behaviour, "model_seconds": model_seconds}

    # -- evaluation ------------------------------------------------------------------------
    failure_stage = "attack"

    def reference_cache_name(self) -> str:
        return self.base.spec.name  # the base task's cached reference models

    def evaluate(self, run) -> Evaluation:
        """The task's own loop: the explainer on the reference model and on its variants."""
        return self.explain_and_score(run.explainer(), run.bundle, run.examples, run.targets, run.seed)

    def explain_and_score(self, explainer, bundle, examples: Sequence[Example], targets: Sequence[int], seed: int,
                          on_explain_call=None) -> Evaluation:
        from tasks.sanity.checks import explain_variants, plan_variants, summarise
        from tasks.sanity.randomize import transformer_blocks

        if self._bound is None or self._bound["bundle"] is not bundle:
            raise RuntimeError("the sanity task's extra models are not built for this bundle: the runner calls "
                               "on_prepared(ctx, config) (or call bind(...) yourself)")
        t0 = time.perf_counter()
        cfg = self.config()
        variants = plan_variants(bundle.model, len(self._bound["init"]), cfg, self._bound["init_labels"])
        items = [(e.segments, int(t)) for e, t in zip(examples, targets)]
        maps, stats = explain_variants(explainer, bundle, items, seed, variants, self._bound["init"], cfg,
                                       on_call=on_explain_call)
        extra = {**stats, "n_variants": float(len(variants)), "evaluate_seconds": time.perf_counter() - t0,
                 "model_seconds": self._bound["model_seconds"]}
        per_example, higher, family, tables, details = summarise(
            maps, variants, [e.id for e in examples], cfg, len(transformer_blocks(bundle.model)), extra)
        tables["sanity_mlm"] = self._bound["mlm"]
        tables["sanity_models"] = self._bound["models"]
        tables["sanity_variants"] = self._bound["variants"]
        return Evaluation(per_example=per_example, higher_is_better=higher, family=family, tables=tables,
                          details=details, aggregation=self.spec.params["aggregation"])


@register_task("sanity")
def sanity(**overrides) -> SanityTask:
    """Embedded default: planted-SST generated corpus and its tiny-bert recipe, offline."""
    return SanityTask(base="planted_sst", name="sanity", **overrides)


@register_task("sanity_nli")
def sanity_nli(**overrides) -> SanityTask:
    """The generated MultiNLI-style corpus of ``mnli_faithfulness`` and its tiny-bert recipe."""
    return SanityTask(base="mnli_faithfulness", name="sanity_nli", **overrides)
