"""The runner: the grid of submissions x tasks (x reference model), timed, cached, resumable.

For each task it prepares the data, trains or loads the reference model (refusing one that
did not learn the task), fixes the target class of every example (the model's
prediction), then runs every submission in chunks.  Each finished chunk's raw attributions,
timing and call counts are cached under a content hash (model, data, explainer code and
version, parameters, seed), so an interrupted run resumes where it stopped and a finished
(submission, task) whose inputs did not change is not redone.  A submission that raises
or returns garbage gets an error record; the grid goes on.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import sys
import time
import traceback
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness import __version__
from harness.models.encoding import TRUNCATION_POLICY
from harness.engine.memory import PeakMemory
from harness.metrics.base import get_metric
from harness.models.reference import ReferenceModel, train_reference_model
from harness.core.outputs import OutputError, check_attributions, check_extras, word_maps
from harness.protocols import MetricInputs
from harness.core.provenance import REPO_ROOT, provenance
from harness.engine.records import (Cost, ErrorInfo, MaskedLMInfo, Memory, MetricScore, ModelInfo, ResultRecord,
                             RunSpec, SubmissionInfo, TaskInfo, Timing, Truncation)
from harness.metrics.stats import bootstrap_ci, percentile
from harness.core.submission import Submission
from harness.engine.task import Evaluation, ExplainerCallError, PreparedTask, Task

log = logging.getLogger(__name__)

DEFAULT_RESULTS_DIR = REPO_ROOT / "leaderboard" / "results"
DEFAULT_CACHE_DIR = REPO_ROOT / ".attriboard"


@dataclass
class RunConfig:
    results_dir: Path = DEFAULT_RESULTS_DIR
    cache_dir: Path = DEFAULT_CACHE_DIR
    seed: int = 0
    aggregation: str = "absmax"
    batch_size: int = 16
    force: bool = False
    device: str = "auto"
    all_submissions: bool = False
    """Run every submission on every task, also on tasks that declare ``default_submissions``."""
    threads: int | str | None = "auto"
    """torch intra-op threads on CPU: an int, None (torch's default), or ``"auto"``: 1 thread for
    a small reference model (recipe ``tiny-bert`` with hidden size <= 256, whose matmuls gain
    nothing from threads while extra threads spin-wait on shared cores), torch's default otherwise."""
    mlm: str | None = None
    """The run's masked LM: ``None`` = automatic (:func:`matching_mlm`: for a hub reference model
    (recipe kind ``hf``) the masked LM of the same pre-trained checkpoint, ``bert-base-uncased``
    for decoders, else the offline ``tiny`` one trained on the task's training corpus),
    a preset of :func:`harness.models.mlm.mlm_recipe_from` (``tiny``, ``bert-base-uncased``,
    ``hf:<name>``), or ``"none"`` (no masked LM: IM, LIME_BERT and ``mlm`` removal then fail)."""
    isolation: str = "none"
    """``"process"``: every (submission, task) runs in its own sandboxed worker process
    (:mod:`harness.sandbox.isolation`; the CLI default); ``"none"``: in this process (fast unit tests)."""
    isolation_settings: Any = None
    """:class:`harness.sandbox.isolation.IsolationSettings` (limits) for ``isolation="process"``; None = defaults."""
    secret: str | None = field(default=None, repr=False)
    """Official runs (:mod:`harness.engine.official`): tasks draw secret variants, never recorded."""
    hidden_subset: int | None = None
    """With ``secret``: evaluate this many examples drawn with the secret from each task's pool."""
    dtype: str = "float32"
    """The classifier's precision: ``float32`` (the default), or a declared lower precision
    (``bfloat16``, ``float16``) run as mixed precision (:meth:`ModelBundle.set_dtype`); recorded
    in the run spec, so its results are other cells than float32 ones."""


@dataclass
class TaskContext:
    task: Task
    data: PreparedTask
    ref: ReferenceModel
    targets: list[int]
    truncated: list[bool]
    mlm: Any = None
    """The task's masked LM (also attached to ``ref.bundle.mlm``), or None."""
    mlm_choice: str | None = None
    """Which masked LM (:func:`mlm_choice`), as recorded in the run spec."""
    secret_vocabulary: bool = False
    """Official runs: the task drew its secret variant (:meth:`Task.use_secret`)."""
    pool_size: int | None = None
    """Official runs with a hidden subset: the number of examples it was drawn from."""


@dataclass
class RunSummary:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    task_failures: dict[str, str] = field(default_factory=dict)


def _h(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_label(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"


def mlm_choice(task: Task, config: RunConfig) -> str | None:
    """Which masked LM a run of ``task`` uses (see :attr:`RunConfig.mlm`); None for none."""
    if config.mlm is not None:
        return None if config.mlm == "none" else config.mlm
    return matching_mlm(task.model_recipe())


def matching_mlm(recipe) -> str:
    """The default masked LM for a reference-model recipe: for a hub model fine-tuned from a
    pre-trained encoder (recipe kind ``hf``) that encoder's own masked LM (``hf:roberta-base``
    for ``roberta-base``: the same vocabulary and tokenizer type), ``bert-base-uncased`` for a
    family without one (decoders) and for a published checkpoint from the hub (the masked LM of
    the IM paper; a checkpoint's own pre-training LM is not named in it); the offline ``tiny``
    word-level masked LM otherwise (local checkpoint folders included: they run offline)."""
    if recipe.kind == "checkpoint":
        return "tiny" if Path(recipe.checkpoint).exists() else "bert-base-uncased"
    if recipe.kind != "hf":
        return "tiny"
    mlm = _matching_hub_mlm(recipe.hf_name)
    if recipe.revision and mlm in (f"hf:{recipe.hf_name}", recipe.hf_name):  # a pinned encoder's own masked LM:
        return f"hf:{recipe.hf_name}@{recipe.revision}"                        # from the same commit
    return mlm


@functools.lru_cache(maxsize=64)
def _matching_hub_mlm(hf_name: str) -> str:
    if hf_name == "bert-base-uncased":
        return "bert-base-uncased"
    try:
        from transformers import AutoConfig

        from harness.models.families import family_of

        fam = family_of(AutoConfig.from_pretrained(hf_name))
    except Exception:  # noqa: BLE001 - config unreachable: the paper's default masked LM
        return "bert-base-uncased"
    return f"hf:{hf_name}" if fam.mlm_class else "bert-base-uncased"


def prepare_task(task: Task, config: RunConfig) -> TaskContext:
    from harness.models.encoding import truncated_flags
    from harness.models.mlm import attach_mlm, build_task_mlm

    secret_vocabulary = task.use_secret(config.secret) if config.secret is not None else False
    data = task.prepare()
    pool_size = None
    if config.secret is not None and config.hidden_subset:
        from harness.engine.official import hidden_subset

        pool_size = len(data.examples)
        data = hidden_subset(data, config.secret, task.spec.name, config.hidden_subset)
    cache_name = task.reference_cache_name()
    ref = train_reference_model(task.model_recipe(), data.train, data.dev, task.spec.num_labels,
                                config.cache_dir, cache_name, label_names=task.label_names)
    bundle = ref.bundle
    dev = _device(config.device)
    bundle.model.to(dev)
    bundle.device = dev
    bundle.set_dtype(config.dtype)
    choice = mlm_choice(task, config)
    mlm = None
    if choice is not None:
        mlm = build_task_mlm(choice, data.train, config.cache_dir, cache_name, device=dev)
        log.info("task %s: masked LM %s (%s)", task.spec.name, mlm.name, mlm.description)
    attach_mlm(bundle, mlm)
    segs = [e.segments for e in data.examples]
    probs = bundle.proba_of_segments(segs)
    targets = probs.argmax(-1).astype(int).tolist()
    truncated = truncated_flags(bundle.tokenizer, segs, bundle.max_length)
    ctx = TaskContext(task, data, ref, targets, truncated, mlm, mlm_choice=choice,
                      secret_vocabulary=bool(secret_vocabulary), pool_size=pool_size)
    task.on_prepared(ctx, config)
    return ctx


def shared_code_hash() -> str:
    """Hash of the harness code a submission runs on (:func:`harness.sandbox.membership.result_code_paths`:
    the explainer API, shared explainers, the model bundle and masked LM, removal operators, the
    output checks): part of every run key, so editing it recomputes cached attributions."""
    from harness.core.provenance import hash_tree
    from harness.sandbox.membership import result_code_paths

    root = REPO_ROOT / "harness"
    return _h({str(Path(p).relative_to(root)): hash_tree(Path(p)) for p in result_code_paths(str(REPO_ROOT))})


def member_code_hashes(sub: Submission) -> dict[str, str] | None:
    """Code hashes of the submissions a composite submission (an ensemble) runs, named in its
    ``members`` parameter, so that editing a member recomputes the composite too."""
    members = sub.params.get("members")
    if not isinstance(members, (list, tuple)):
        return None
    from harness.core.submission import discover

    builtins = discover()  # members are built-in names: a path from a stranger's toml is never read here
    return {str(m): builtins.get(str(m)).code_hash if str(m) in builtins else "?" for m in members}


def run_spec(sub: Submission, ctx: TaskContext, config: RunConfig) -> RunSpec:
    """The frozen spec of running ``sub`` on the prepared task (stored in its record)."""
    spec = ctx.task.spec
    official = None
    if config.secret is not None:
        from harness.engine.official import commitment

        official = {"secret_commitment": commitment(config.secret), "hidden_subset": config.hidden_subset or None}
    return RunSpec(
        harness_version=__version__, task=spec.name, task_overrides=_jsonable(dict(ctx.task.overrides)),
        task_spec_hash=spec.hash(), data_hash=ctx.data.data_hash, model_recipe=_jsonable(ctx.task.model_recipe().model_dump()),
        model_hash=ctx.ref.model_hash, mlm=ctx.mlm_choice if ctx.mlm is not None else None,
        mlm_recipe_hash=getattr(ctx.mlm, "recipe_hash", None), mlm_hash=getattr(ctx.mlm, "model_hash", None),
        submission=sub.name, submission_version=sub.meta.version, code_hash=sub.code_hash,
        params=_jsonable(sub.params), members=member_code_hashes(sub), shared_code_hash=shared_code_hash(),
        aggregation=config.aggregation, batch_size=config.batch_size, seed=config.seed,
        device=ctx.ref.bundle.device.type, isolation=_isolation_spec(config), official=official,
        dtype=ctx.ref.bundle.dtype)


def run_key(sub: Submission, ctx: TaskContext, config: RunConfig) -> str:
    return run_spec(sub, ctx, config).key()


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _isolation_settings(config: RunConfig):
    """The worker settings of a sandboxed run (the defaults unless the config gives some)."""
    from harness.sandbox.isolation import IsolationSettings

    return config.isolation_settings or IsolationSettings()


def _isolation_spec(config: RunConfig) -> dict[str, Any]:
    if config.isolation == "none":
        return {"mode": "none"}
    settings = _isolation_settings(config)
    return {"mode": config.isolation, **settings.as_record(), "namespaces": settings.namespaces,
            "seccomp": bool(settings.seccomp)}


def result_path(config: RunConfig, ctx: TaskContext, sub: Submission) -> Path:
    return _result_file(config, ctx.task.spec.name, ctx.ref.bundle.name, sub.name)


def _result_file(config: RunConfig, task: str, model: str, submission: str) -> Path:
    """Where a record lives: ``results/<task>/<model label>/<submission>.json``."""
    return Path(config.results_dir) / task / model / f"{submission}.json"


def _worker_error(exc: BaseException):
    """``exc`` if it is the harness's own report of a worker failure, else None.  Checked by
    type, never by attributes: an exception raised by submission code in process cannot pick
    its own stage or error type."""
    from harness.sandbox.isolation import WorkerError

    return exc if isinstance(exc, WorkerError) else None


class _Failure(Exception):
    def __init__(self, stage: str, exc: BaseException, tb: str = ""):
        super().__init__(str(exc))
        w = _worker_error(exc)  # a worker failure carries its own stage (timeout, crash, resource, sandbox, ...)
        self.stage = w.stage if w is not None and w.stage else stage
        self.error_type = w.error_type if w is not None else type(exc).__name__
        self.exc, self.tb = exc, (w.remote_traceback if w is not None else "") or tb


def _hidden_paths(ctx: "TaskContext", config: RunConfig) -> tuple[str, ...]:
    """What a worker must not see for this run: results, caches, the task's data folder."""
    data_path = ctx.task.spec.dataset.path
    return (str(config.results_dir), str(config.cache_dir), *( [data_path] if data_path else []),
            *getattr(config.isolation_settings, "hidden_paths", ()))


@contextmanager
def open_explainer(sub: Submission, ctx: "TaskContext", config: RunConfig):
    """The submission's explainer: in a sandboxed worker (``config.isolation == "process"``)
    or in this process.  A failure to load raises :class:`_Failure` with its stage."""
    if config.isolation == "none":
        try:
            explainer = sub.instantiate()
        except Exception as e:
            raise _Failure("load", e, traceback.format_exc()) from e
        yield explainer
        return
    if config.isolation != "process":
        raise ValueError(f"isolation must be 'process' or 'none', got {config.isolation!r}")
    from harness.sandbox.isolation import open_explainer as open_isolated

    settings = dataclasses.replace(_isolation_settings(config), hidden_paths=_hidden_paths(ctx, config))
    if config.secret is not None and settings.namespaces == "auto":
        settings = dataclasses.replace(settings, namespaces="on")  # an official run never runs half-confined
    cm = open_isolated(sub, settings, bundle=ctx.ref.bundle)
    try:
        explainer = cm.__enter__()
    except Exception as e:
        raise _Failure("load", e, traceback.format_exc()) from e
    try:
        yield explainer
    except BaseException:
        if not cm.__exit__(*sys.exc_info()):
            raise
    else:
        cm.__exit__(None, None, None)


def _isolation_info(config: RunConfig, explainer=None):
    from harness.engine.records import IsolationInfo

    if config.isolation == "none":
        return IsolationInfo(mode="none")
    return IsolationInfo(mode="process", layers=list(explainer.layers) if explainer is not None else [],
                         limits=_isolation_settings(config).as_record())


class Run:
    """One submission on one prepared task, in progress: what :meth:`Task.evaluate` works with.

    It opens the explainer on first use (sandboxed or in process, per the run config),
    runs batched explain calls with caching and measurement (:meth:`explain_all`), and
    scores word maps with registered metrics (:meth:`score`).  Examples and targets are
    the task's inputs; gold annotations reach only metrics, never the explainer."""

    def __init__(self, sub: Submission, ctx: TaskContext, config: RunConfig, key: str, stack: ExitStack):
        self.sub, self.ctx, self.config, self.key, self._stack = sub, ctx, config, key, stack
        self.isolation = _isolation_info(config)
        self.chunks: list[dict] = []
        """The measured explain calls of :meth:`explain_all` (one per chunk, cached ones included)."""
        self._explainer = None

    @property
    def bundle(self):
        return self.ctx.ref.bundle

    @property
    def examples(self):
        return self.ctx.data.examples

    @property
    def targets(self) -> list[int]:
        return self.ctx.targets

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def opened(self):
        """The explainer if it was opened, else None."""
        return self._explainer

    def explainer(self):
        """The submission's explainer (opened on first use; a load failure is stage ``load``)."""
        if self._explainer is None:
            self._explainer = self._stack.enter_context(open_explainer(self.sub, self.ctx, self.config))
            self.isolation = _isolation_info(self.config, self._explainer)
        return self._explainer

    def explain_all(self) -> list[np.ndarray]:
        """Every example explained once, in chunks of the batch size (cached under the run key):
        the word maps, one per example."""
        self.chunks = _explain_chunks(self)
        return [np.asarray(m) for c in self.chunks for m in c["maps"]]

    def explain_inputs(self, examples: Sequence, targets: Sequence[int]) -> list[np.ndarray]:
        """More inputs explained exactly like the task's examples (chunks of the batch size,
        cached under the run key by the inputs' ids and words, measured into the record's cost):
        e.g. the training set ROAR retrains on.  ``targets``: the class to explain per input
        (the reference model's predictions; never a gold label)."""
        if len(examples) != len(targets):
            raise ValueError(f"{len(examples)} inputs but {len(targets)} targets")
        chunks = _explain_chunks(self, list(examples), [int(t) for t in targets])
        self.chunks = self.chunks + chunks
        return [np.asarray(m) for c in chunks for m in c["maps"]]

    def score(self, metric_names: Sequence[str], maps) -> Evaluation:
        """Score word maps with registered metrics (a failure is stage ``metric``)."""
        try:
            return _score(metric_names, maps, self.ctx, self.chunks)
        except Exception as e:
            raise _Failure("metric", e, traceback.format_exc()) from e


def _explain_chunks(run: Run, examples: Sequence | None = None, targets: Sequence[int] | None = None) -> list[dict]:
    """Run (or load from cache) every chunk of the task's examples (or of ``examples`` with
    ``targets``); returns the chunk records (maps, timing, counts)."""
    import torch

    from harness.core.progress import Progress

    sub, ctx, config, key, bundle = run.sub, run.ctx, run.config, run.key, run.bundle
    cache = chunk_folder(config, sub, key)
    own = examples is None
    examples = ctx.data.examples if own else examples
    targets = ctx.targets if own else targets
    chunks = []
    n_chunks = (len(examples) + config.batch_size - 1) // config.batch_size
    bar = Progress(n_chunks, f"explaining: {sub.name} on {ctx.task.spec.name}", log, unit="chunks", leave=True)
    members = _composable_members(sub, ctx, config) if own else []  # members' chunks cover the task's examples
    for c in range(n_chunks):
        if c:
            bar.update(1)
        lo, hi = c * config.batch_size, min(len(examples), (c + 1) * config.batch_size)
        ckey = _chunk_key(key, examples[lo:hi])
        cfile = cache / f"{ckey}.json"
        if cfile.exists() and not config.force:
            rec = _read_chunk(cfile, hi - lo)
            if rec is not None:
                rec["cached"] = True
                chunks.append(rec)
                continue
        rec = _composed_chunk(sub, members, ctx, config, lo, hi) if members else None
        if rec is not None:  # a built-in ensemble from its members' chunks of this very run: nothing recomputed
            _write_chunk(config, cfile, json.dumps(rec, allow_nan=False))
            rec["cached"] = False
            chunks.append(rec)
            continue
        explainer = run.explainer()
        batch = bundle.make_batch([e.segments for e in examples[lo:hi]], targets[lo:hi], seed=config.seed)
        torch.manual_seed(config.seed)
        before = bundle.counter.snapshot()
        with PeakMemory() as mem:
            if bundle.device.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                attr = explainer.explain(bundle, batch)
            except OutputError as e:  # an isolated explainer's output that could not even be read
                raise _Failure("validate-output", e, traceback.format_exc()) from e
            except Exception as e:
                raise _Failure("explain", e, traceback.format_exc()) from e
            if bundle.device.type == "cuda":
                torch.cuda.synchronize()
            seconds, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        after = bundle.counter.snapshot()
        bundle.model.eval()
        try:
            raw = check_attributions(attr, batch)
            extras = check_extras(attr, batch)
            maps = word_maps(attr, raw, batch, config.aggregation)
        except (OutputError, ValueError) as e:
            raise _Failure("validate-output", e, traceback.format_exc()) from e
        rec = {
            "level": attr.level, "maps": [m.tolist() for m in maps],
            "extras": {k: v.tolist() for k, v in extras.items()}, "seconds": seconds,
            "n": hi - lo, "forward": after[0] - before[0], "backward": after[1] - before[1],
            "mlm": after[2] - before[2], "peak_rss_mb": mem.peak_rss_mb, "peak_cuda_mb": mem.peak_cuda_mb,
            "cpu_s": cpu_s, "measured_by": "in-process",
        }
        worker_call = explainer.last_call if config.isolation == "process" else None
        if worker_call:  # isolated: every figure of the worker, measured from here (counts are its own)
            rec.update(seconds=worker_call["wall_s"], cpu_s=worker_call["cpu_s"], gpu_s=worker_call["gpu_s"],
                       peak_rss_mb=worker_call["peak_rss_mb"], peak_cuda_mb=worker_call["peak_gpu_mb"],
                       memory_scope="worker", measured_by="harness", self_reported=True,
                       reported_seconds=worker_call["reported"]["seconds"])
        rec["pass_check"] = pass_check(sub, batch, rec)
        _write_chunk(config, cfile, json.dumps(rec, allow_nan=False))
        rec["cached"] = False
        chunks.append(rec)
    if n_chunks:
        bar.update(1)
    bar.close()
    return chunks


_CHUNK_NUMBERS = ("seconds", "forward", "backward", "mlm", "peak_rss_mb")


def _chunk_key(run_key: str, examples) -> str:
    return _h({"run": run_key, "ids": [e.id for e in examples], "segments": [e.segments for e in examples]})


def composite_members(sub: Submission, builtins=None) -> list[str]:
    """The members of a built-in composite submission (an ensemble of built-ins, which the
    grid runs after its members and composes from their cached maps); [] for any other
    submission -- a stranger's folder declaring ``members`` is never composed by the harness.
    ``builtins``: the registry of :func:`harness.core.submission.discover` (found when None)."""
    members = sub.params.get("members")
    if not isinstance(members, (list, tuple)) or not members or sub.params.get("member_params"):
        return []
    if builtins is None:
        from harness.core.submission import discover

        builtins = discover()
    if sub.name not in builtins:
        return []
    b = builtins.get(sub.name)
    if Path(b.path).resolve() != Path(sub.path).resolve() or b.code_hash != sub.code_hash:
        return []
    try:
        from harness.explainers.ensemble import Ensemble

        if not issubclass(b.load_class(), Ensemble):  # built-in code: safe to import here
            return []
    except Exception:  # noqa: BLE001 - not composable: it runs as itself
        return []
    names = [str(m) for m in members]
    return names if all(m in builtins for m in names) else []


def _composable_members(sub: Submission, ctx: TaskContext, config: RunConfig) -> list[tuple[Submission, str]]:
    """``(member, member run key)`` when ``sub``'s chunks can be composed from its members'
    (:func:`composite_members`, the run's word aggregation equal to the ensemble's), else []."""
    if (not sub.params.get("members") or config.force
            or config.aggregation != sub.params.get("aggregation", "absmax")):
        return []  # not a composite; or --force, which recomputes: the composite then runs its members itself
    from harness.core.submission import discover

    builtins = discover()
    names = composite_members(sub, builtins)
    if not names:
        return []
    return [(builtins.get(m), run_spec(builtins.get(m), ctx, config).key()) for m in names]


def _composed_chunk(sub: Submission, members, ctx: TaskContext, config: RunConfig, lo: int, hi: int) -> dict | None:
    """The composite's chunk ``lo:hi`` from every member's cached chunk of the same examples
    (:func:`harness.explainers.ensemble.ensemble_maps`, checked like any explainer's output;
    time, passes and CPU summed, peaks the largest), or None when one is missing."""
    from harness.explainers.ensemble import ensemble_maps
    from harness.protocols import Attributions

    examples = ctx.data.examples[lo:hi]
    recs = []
    for m, mkey in members:
        f = chunk_folder(config, m, mkey) / f"{_chunk_key(mkey, examples)}.json"
        rec = _read_chunk(f, hi - lo) if f.exists() else None
        if rec is None:
            return None
        recs.append(rec)
    batch = ctx.ref.bundle.make_batch([e.segments for e in examples], ctx.targets[lo:hi], seed=config.seed)
    try:
        extras = {f"{m.name}.{k}": np.asarray(v) for (m, _), r in zip(members, recs) for k, v in r["extras"].items()}
        attr = Attributions(level="word", scores=ensemble_maps([[np.asarray(x) for x in r["maps"]] for r in recs]),
                            extras=extras)
        raw = check_attributions(attr, batch)
        maps = word_maps(attr, raw, batch, config.aggregation)
        extras = check_extras(attr, batch)
    except (OutputError, ValueError) as e:
        log.warning("%s: members' cached maps do not compose (%s): running it", sub.name, e)
        return None

    def total(k):
        vals = [r.get(k) for r in recs]
        return float(sum(vals)) if all(v is not None for v in vals) else None

    cuda = [r["peak_cuda_mb"] for r in recs if r.get("peak_cuda_mb") is not None]
    harness_measured = all(r.get("measured_by") == "harness" for r in recs)
    rec = {"level": attr.level, "maps": [x.tolist() for x in maps], "extras": {k: v.tolist() for k, v in extras.items()},
           "seconds": total("seconds"), "n": hi - lo, "forward": int(total("forward")),
           "backward": int(total("backward")), "mlm": int(total("mlm")),
           "peak_rss_mb": max(r["peak_rss_mb"] for r in recs), "peak_cuda_mb": max(cuda) if cuda else None,
           "cpu_s": total("cpu_s"), "measured_by": "harness" if harness_measured else "in-process",
           "composed_from": [m.name for m, _ in members]}
    if harness_measured:
        rec.update(gpu_s=total("gpu_s"), memory_scope="worker" if all(r.get("memory_scope") == "worker" for r in recs)
                   else None, self_reported=True, reported_seconds=total("reported_seconds"))
    rec["pass_check"] = pass_check(sub, batch, rec)
    return rec

#: where new chunks go instead of the cache folder (a grid worker returns them to the driver)
_CHUNK_SINK: dict | None = None


@contextmanager
def deferred_chunks(sink: dict | None):
    """While active with a dict, new attribution chunks are put into ``sink`` (path relative
    to the cache folder -> JSON text) instead of being written: the grid's workers send them
    to the driver, the only writer.  ``None``: written as usual."""
    global _CHUNK_SINK
    saved, _CHUNK_SINK = _CHUNK_SINK, sink
    try:
        yield sink
    finally:
        _CHUNK_SINK = saved


def chunk_folder(config: RunConfig, sub: Submission, key: str) -> Path:
    """The attribution-chunk folder of one run (submission x run key)."""
    return Path(config.cache_dir) / "attributions" / sub.name / key[:16]


def _write_chunk(config: RunConfig, path: Path, text: str) -> None:
    from harness.engine.records import write_text_atomic

    if _CHUNK_SINK is not None:
        _CHUNK_SINK[Path(path).relative_to(Path(config.cache_dir)).as_posix()] = text
    else:
        write_text_atomic(path, text)


def _read_chunk(path: Path, n: int) -> dict | None:
    """A cached chunk, or None (recomputed) when it is unreadable or not what this code writes:
    a bad cache file never stops a run."""
    import math

    from harness.sandbox.replies import refuse_constant

    try:
        rec = json.loads(path.read_text(), parse_constant=refuse_constant)
        ok = (isinstance(rec, dict) and rec.get("n") == n and isinstance(rec.get("maps"), list)
              and len(rec["maps"]) == n and isinstance(rec.get("extras"), dict)
              and all(isinstance(rec.get(k), (int, float)) and not isinstance(rec.get(k), bool)
                      and math.isfinite(rec[k]) and 0 <= rec[k] <= 1e15 for k in _CHUNK_NUMBERS)
              and "pass_check" in rec)
    except (OSError, ValueError, RecursionError):
        ok = False
    if not ok:
        log.warning("ignoring unusable cached chunk %s (recomputed)", path)
        return None
    return rec


def pass_check(sub: Submission, batch, rec: dict) -> str:
    """Cross-check of the pass counts against the submission's declared ``[passes]`` (per
    example, expressions of ``n_words``, ``n_tokens`` and its numeric parameters): the
    counts must be at least what the declared method needs.  ``not checked`` when nothing is
    declared."""
    declared = sub.meta.passes or {}
    if not declared:
        return "not checked"
    from harness.core.submission import eval_passes

    problems = []
    n_tokens = batch.attention_mask.sum(dim=1).tolist()
    params = {k: v for k, v in sub.params.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for kind, expr in sorted(declared.items()):
        need = 0.0
        for i in range(len(batch)):
            need += eval_passes(expr, {**params, "n_words": batch.n_words(i), "n_tokens": int(n_tokens[i])})
        got = rec.get(kind, 0)
        if got < need:
            problems.append(f"{kind} {got} < declared {expr!r} = {need:g}")
    return "consistent" if not problems else "inconsistent: " + "; ".join(problems)


def _official_info(ctx: TaskContext, config: RunConfig):
    if config.secret is None:
        return None
    from harness.engine.official import commitment
    from harness.engine.records import OfficialRun

    return OfficialRun(secret_commitment=commitment(config.secret), secret_vocabulary=ctx.secret_vocabulary,
                       hidden_subset=config.hidden_subset or None, pool_size=ctx.pool_size)


def _majority_share(dev) -> float | None:
    """The share of the most frequent label in the dev split (None: no dev split)."""
    from collections import Counter

    labels = Counter(int(y) for _, y in dev)
    return max(labels.values()) / len(dev) if dev else None


def _dtype(model) -> str | None:
    """The dtype of the model's parameters (``float32``), None for a model without any."""
    p = next(iter(model.parameters()), None)
    return None if p is None else str(p.dtype).removeprefix("torch.")


def _base_record(sub: Submission, ctx: TaskContext, config: RunConfig, spec: RunSpec, status: str, level=None,
                 isolation=None):
    tspec = ctx.task.spec
    return dict(
        isolation=isolation, official=_official_info(ctx, config),
        status=status, run_key=spec.key(), run_spec=spec,
        submission=SubmissionInfo(name=sub.name, version=sub.meta.version, params=sub.params,
                                  code_hash=sub.code_hash, level=level, paper=sub.meta.paper or None,
                                  code=sub.meta.code or None),
        task=TaskInfo(name=tspec.name, version=tspec.version, spec_hash=tspec.hash(), main_metric=tspec.main_metric,
                      n_examples=len(ctx.data.examples), data_hash=ctx.data.data_hash,
                      data_source=f"{tspec.dataset.source}:{tspec.dataset.id}",
                      load_report=dict(ctx.task.load_report or {}), overrides=spec.task_overrides),
        model=ModelInfo(name=ctx.ref.bundle.name, description=ctx.ref.description, recipe_hash=ctx.ref.recipe.hash(),
                        model_hash=ctx.ref.model_hash, dev_accuracy=ctx.ref.dev_accuracy,
                        num_labels=tspec.num_labels, majority_dev_accuracy=_majority_share(ctx.data.dev),
                        dtype=_dtype(ctx.ref.bundle.model)),
        mlm=None if ctx.mlm is None else MaskedLMInfo(
            name=ctx.mlm.name, description=ctx.mlm.description, model_hash=ctx.mlm.model_hash,
            recipe_hash=getattr(ctx.mlm, "recipe_hash", None)),
        aggregation=config.aggregation, main_metric=tspec.main_metric,
        truncation=Truncation(policy=TRUNCATION_POLICY, max_length=ctx.ref.bundle.max_length,
                              n_inputs=len(ctx.truncated), n_truncated=int(sum(ctx.truncated))),
        provenance=provenance({"explain": config.seed, "label": tspec.params.get("label_seed", 0),
                               "model": ctx.task.model_recipe().seed, "bootstrap": 0}),
    )


def _score(metric_names: Sequence[str], maps, ctx: TaskContext, chunks: Sequence[dict] = ()) -> Evaluation:
    """The default evaluation's scores: every metric's per-example values on the word maps,
    plus the explainer's extras (from the chunks) as diagnostics."""
    from harness.core.progress import Progress

    inputs = MetricInputs(examples=ctx.data.examples, word_scores=maps, gold=ctx.data.gold,
                          model=ctx.ref.bundle, targets=ctx.targets)
    ev = Evaluation(per_example={}, higher_is_better={}, family={}, level=chunks[0]["level"] if chunks else None)
    bar = Progress(len(metric_names), f"metrics on {ctx.task.spec.name}", log, unit="metrics")
    for i, name in enumerate(metric_names):
        bar.set_status(f"computing {name}")  # a slow metric (the masked LM's) says which it is
        if i:
            bar.update(1)
        params = dict(ctx.task.spec.metric_params.get(name, {}))
        metric = get_metric(name, **params)
        values = np.asarray(metric.per_example(inputs), dtype=np.float64)
        if values.shape != (len(maps),):
            raise ValueError(f"metric {name} returned {values.shape}, expected ({len(maps)},)")
        ev.per_example[name] = values
        ev.higher_is_better[name], ev.family[name], ev.params[name] = metric.higher_is_better, metric.family, params
        ev.details[name] = dict(getattr(metric, "details", {}))
    if metric_names:
        bar.set_status("")
        bar.update(1)
    bar.close()
    for k in sorted({k for c in chunks for k in c["extras"]}):
        vals = np.concatenate([np.asarray(c["extras"][k], dtype=float) for c in chunks if k in c["extras"]])
        ev.diagnostics[f"{k}_mean"] = float(vals.mean())
        ev.diagnostics[f"{k}_max"] = float(vals.max())
    return ev


def scores_of(ev: Evaluation, main_metric: str) -> tuple[dict[str, MetricScore], dict[str, list[float]]]:
    """Bootstrap mean and CI of every metric of an evaluation."""
    scores, per_example = {}, {}
    for name, vals in ev.per_example.items():
        values = np.asarray(vals, dtype=np.float64)
        mean, lo, hi = bootstrap_ci(values)
        scores[name] = MetricScore(value=mean, ci_low=lo, ci_high=hi, higher_is_better=ev.higher_is_better[name],
                                   family=ev.family[name], n=int(values.size), params=ev.params.get(name, {}),
                                   details={k: float(v) for k, v in sorted(ev.details.get(name, {}).items())})
        per_example[name] = values.tolist()
    if main_metric not in scores:
        raise ValueError(f"task evaluation returned no main metric {main_metric!r}")
    return scores, per_example


def _error_record(sub, ctx, config, spec: RunSpec, f: "_Failure", isolation=None) -> ResultRecord:
    log.error("%s on %s failed at %s: %s: %s", sub.name, ctx.task.spec.name, f.stage, f.error_type, f.exc)
    return ResultRecord(**_base_record(sub, ctx, config, spec, "error", isolation=isolation),
                        error=ErrorInfo(type=f.error_type,
                                        message=str(f.exc)[:2000],
                                        stage=f.stage, traceback=f.tb[-4000:]))


@dataclass
class _Outer:
    """The measurement around a whole :meth:`Task.evaluate` call."""

    seconds: float
    counts: tuple[int, int, int]
    mem: Any
    worker_peak_mb: float | None
    totals: dict


def _evaluate(run: Run) -> tuple[Evaluation, _Outer]:
    """``task.evaluate(run)``, timed and counted as a whole; failures become :class:`_Failure`
    with their stage (the explainer's, a metric's, or the task's own ``failure_stage``)."""
    import torch

    task, bundle = run.ctx.task, run.bundle
    torch.manual_seed(run.seed)
    before = bundle.counter.snapshot()
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        try:
            ev = task.evaluate(run)
        except _Failure:
            raise
        except ExplainerCallError as e:
            cause = e.__cause__ or e
            stage = "validate-output" if isinstance(cause, OutputError) else "explain"
            raise _Failure(stage, cause, traceback.format_exc()) from e
        except OutputError as e:
            raise _Failure("validate-output", e, traceback.format_exc()) from e
        except Exception as e:
            if _worker_error(e) is not None:  # a worker failure surfacing outside an explain call
                raise _Failure("explain", e, traceback.format_exc()) from e
            raise _Failure(task.failure_stage, e, traceback.format_exc()) from e
        if bundle.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    after = bundle.counter.snapshot()
    ex = run.opened if run.config.isolation == "process" else None  # the harness's worker handle, measured
    return ev, _Outer(seconds, tuple(a - b for a, b in zip(after, before)), mem,
                      None if ex is None else ex.peak_rss_mb, {} if ex is None else dict(ex.totals))


def _measured_chunks(chunks: list[dict], n: int, dev) -> tuple[Timing, Cost, Memory]:
    """Timing, cost and memory of the measured explain calls (one per chunk)."""
    per_ex_time = [c["seconds"] / c["n"] for c in chunks for _ in range(c["n"])]
    fwd, bwd, mlm = (sum(c[k] for c in chunks) for k in ("forward", "backward", "mlm"))
    cuda_peaks = [c["peak_cuda_mb"] for c in chunks if c.get("peak_cuda_mb") is not None]
    isolated = bool(chunks) and all(c.get("measured_by") == "harness" for c in chunks)
    checks = sorted({c.get("pass_check", "not checked") for c in chunks})
    bad = [x for x in checks if x.startswith("inconsistent")]
    gpu = [c["gpu_s"] for c in chunks if c.get("gpu_s") is not None]
    timing = Timing(total_s=float(sum(c["seconds"] for c in chunks)), per_example_p50_s=percentile(per_ex_time, 50),
                    per_example_p95_s=percentile(per_ex_time, 95), per_example_mean_s=float(np.mean(per_ex_time)),
                    device=device_label(dev), cuda_synchronized=dev.type == "cuda",
                    cached_chunks=sum(1 for c in chunks if c["cached"]),
                    cpu_total_s=float(sum(c.get("cpu_s") or 0.0 for c in chunks)),
                    gpu_total_s=float(sum(gpu)) if gpu else None,
                    measured_by="harness" if isolated else "in-process",
                    self_reported_total_s=float(sum(c.get("reported_seconds") or 0.0 for c in chunks))
                    if isolated else None,
                    composed_from=chunks[0]["composed_from"] if all(c.get("composed_from") for c in chunks) else None)
    cost = Cost(forward_passes=fwd, backward_passes=bwd, mlm_calls=mlm, forward_per_example=fwd / n,
                backward_per_example=bwd / n, mlm_per_example=mlm / n, self_reported=isolated,
                pass_check=bad[0] if bad else (checks[0] if len(checks) == 1 else "consistent"))
    memory = Memory(peak_rss_mb=max(c["peak_rss_mb"] for c in chunks),
                    peak_cuda_mb=max(cuda_peaks) if cuda_peaks else None,
                    scope="worker" if all(c.get("memory_scope") == "worker" for c in chunks) else "process")
    return timing, cost, memory


def _measured_loop(o: _Outer, n: int, dev) -> tuple[Timing, Cost, Memory]:
    """Timing, cost and memory of a task's own loop, measured as a whole: the total time is the
    loop's (the harness's own work included); isolated, CPU and GPU are the worker's explain
    calls, measured from here."""
    seconds, (fwd, bwd, mlm), totals = o.seconds, o.counts, o.totals
    timing = Timing(total_s=seconds, per_example_p50_s=seconds / n, per_example_p95_s=seconds / n,
                    per_example_mean_s=seconds / n, device=device_label(dev), cuda_synchronized=dev.type == "cuda",
                    cpu_total_s=totals.get("cpu_s", o.mem.cpu_s), gpu_total_s=totals.get("gpu_s") or None,
                    measured_by="harness" if totals else "in-process",
                    self_reported_total_s=totals.get("reported_s"))
    cost = Cost(forward_passes=fwd, backward_passes=bwd, mlm_calls=mlm, forward_per_example=fwd / n,
                backward_per_example=bwd / n, mlm_per_example=mlm / n, self_reported=bool(totals),
                pass_check="not checked")
    memory = (Memory(peak_rss_mb=o.mem.peak_rss_mb, peak_cuda_mb=o.mem.peak_cuda_mb, scope="process")
              if o.worker_peak_mb is None else Memory(peak_rss_mb=o.worker_peak_mb, scope="worker"))
    return timing, cost, memory


def run_submission(sub: Submission, ctx: TaskContext, config: RunConfig) -> ResultRecord:
    """The one loop that builds every record: ``task.evaluate`` on a :class:`Run`, then the
    scores, the measured cost and the run spec into a :class:`ResultRecord`."""
    spec = run_spec(sub, ctx, config)
    run = None
    backoffs = ctx.ref.bundle.oom_backoffs
    try:
        with ExitStack() as stack:
            run = Run(sub, ctx, config, spec.key(), stack)
            ev, outer = _evaluate(run)
        ctx.ref.bundle.model.eval()
        try:
            scores, per_example = scores_of(ev, ctx.task.spec.main_metric)
        except Exception as e:
            raise _Failure("metric", e, traceback.format_exc()) from e
    except _Failure as f:
        return _error_record(sub, ctx, config, spec, f, run.isolation if run else _isolation_info(config))
    # per example: per explained input (the task's examples, and any more of Run.explain_inputs)
    n = sum(c["n"] for c in run.chunks) if run.chunks else len(ctx.data.examples)
    dev = ctx.ref.bundle.device
    timing, cost, memory = (_measured_chunks(run.chunks, n, dev) if run.chunks else _measured_loop(outer, n, dev))
    timing = timing.model_copy(update={"evaluate_s": outer.seconds})
    memory = memory.model_copy(update={"oom_backoffs": ctx.ref.bundle.oom_backoffs - backoffs,
                                       "max_batch_rows": ctx.ref.bundle.max_rows})
    base = _base_record(sub, ctx, config, spec, "ok", level=ev.level, isolation=run.isolation)
    if ev.aggregation is not None:
        base["aggregation"] = ev.aggregation
    return ResultRecord(**base, scores=scores, per_example=per_example, example_ids=[e.id for e in ctx.data.examples],
                        diagnostics=ev.diagnostics, tables=ev.tables, timing=timing, cost=cost, memory=memory)


def _record_failure(sub: Submission, ctx: TaskContext, config: RunConfig, spec: RunSpec, e: Exception) -> ResultRecord:
    """The error record when the harness could not build or write a submission's record from
    what its run produced (e.g. values outside the record schema): stage ``record``; the
    submission's cached chunks are dropped so that a re-run recomputes them."""
    import shutil

    log.error("%s on %s: could not build its record: %s: %s", sub.name, ctx.task.spec.name, type(e).__name__, e)
    shutil.rmtree(chunk_folder(config, sub, spec.key()), ignore_errors=True)
    if _CHUNK_SINK is not None:
        _CHUNK_SINK.clear()
    return _error_record(sub, ctx, config, spec, _Failure("record", e, traceback.format_exc()),
                         _isolation_info(config))


_TORCH_DEFAULT_THREADS: int | None = None


def apply_threads(task: Task, config: RunConfig, share: int = 1) -> int:
    """Set torch's intra-op thread count for ``task`` (see :attr:`RunConfig.threads`); returns it.
    ``share``: processes running cells side by side (``--jobs``): torch's default becomes
    cores // share, so that they do not oversubscribe the cores."""
    import torch

    from harness.core.threads import limit_blas, set_threads

    want = config.threads
    if want == "auto":
        recipe = task.model_recipe()
        small = recipe.kind in ("tiny-bert", "tiny") and recipe.hidden_size <= 256
        want = 1 if small and _device(config.device).type == "cpu" else None
    global _TORCH_DEFAULT_THREADS
    if _TORCH_DEFAULT_THREADS is None:
        _TORCH_DEFAULT_THREADS = torch.get_num_threads()
    if want is None:  # torch's default, shared out between the processes running cells side by side
        want = _TORCH_DEFAULT_THREADS if share <= 1 else max(1, (os.cpu_count() or 1) // share)
    if want is not None:
        return set_threads(want)
    limit_blas()
    return torch.get_num_threads()


# --------------------------------------------------------------------------- the grid
# Cells (one submission on one prepared task) run by an executor of harness.engine.grid:
# serially here, in --jobs N local worker processes, or as Ray tasks (docs/EXECUTORS.md).

@dataclass(frozen=True)
class TaskRef:
    """What rebuilds a task in another process: its registered name and keyword overrides
    (:func:`harness.engine.task.get_task`), checked against the spec hash the driver saw."""

    name: str
    overrides: dict
    spec_hash: str
    model_label: str

    @classmethod
    def of(cls, task: Task) -> "TaskRef":
        return cls(task.spec.name, dict(task.overrides), task.spec.hash(), task.model_recipe().label)

    def build(self) -> Task:
        from harness.engine.task import get_task

        task = get_task(self.name, **self.overrides)
        if task.spec.hash() != self.spec_hash:
            raise RuntimeError(f"task {self.name} rebuilt in a worker has spec hash {task.spec.hash()}, "
                               f"not the driver's {self.spec_hash}: is the worker running other code?")
        return task

    @property
    def key(self) -> tuple:
        return (self.name, json.dumps(self.overrides, sort_keys=True, default=str), self.spec_hash)


@dataclass
class CellOutcome:
    """What a cell sends back to the driver (plain data: it crosses process and node borders)."""

    task: str
    submission: str
    kind: str
    """``written`` (``record`` holds the new record's JSON), ``skipped`` (up to date) or
    ``task-failed`` (the task could not be prepared: ``message``)."""
    path: str = ""
    record: str | None = None
    chunks: dict[str, str] = field(default_factory=dict)
    """New attribution chunks: path relative to the cache folder -> JSON text (the driver writes them)."""
    message: str = ""
    status: str = ""
    seconds: float = 0.0
    worker: str = ""


#: prepared tasks kept per process: a parallel run starts the longest cells first, across tasks,
#: so a worker meets each task several times (the default suite has five tiny models; a task of a
#: large model costs its weights' memory while kept)
_CONTEXTS: dict = {}
_KEEP_CONTEXTS = int(os.environ.get("ATTRIBOARD_KEEP_TASKS", "6"))
_THREAD_SHARE = 1
"""Processes running cells side by side on this machine (torch threads are shared out)."""


def _cell_context(task: Task | None, ref: TaskRef, config: RunConfig):
    """The prepared task of ``ref`` in this process (prepared once; a preparation failure is
    kept too, so every cell of the task reports it without preparing again)."""
    if ref.key in _CONTEXTS:
        ctx = _CONTEXTS.pop(ref.key)
        _CONTEXTS[ref.key] = ctx  # most recently used last
        if not isinstance(ctx, Exception):  # another task's cell may have set other threads since
            apply_threads(ctx.task, config, share=_THREAD_SHARE)
    else:
        while len(_CONTEXTS) >= _KEEP_CONTEXTS:
            _CONTEXTS.pop(next(iter(_CONTEXTS)))
        if task is None:
            task = ref.build()
        log.info("task %s: %d torch threads", ref.name, apply_threads(task, config, share=_THREAD_SHARE))
        try:
            ctx = prepare_task(task, config)
            log.info("task %s: %d examples, model %s (dev accuracy %.4f), %d inputs truncated", ref.name,
                     len(ctx.data.examples), ctx.ref.description, ctx.ref.dev_accuracy, sum(ctx.truncated))
        except Exception as e:  # noqa: BLE001 - reported as the task's failure, by every cell of it
            ctx = RuntimeError(f"task {ref.name} could not be prepared: {type(e).__name__}: {e}")
            log.error("%s", ctx)
            log.debug("%s", traceback.format_exc())
        _CONTEXTS[ref.key] = ctx
    if isinstance(ctx, Exception):
        return None, str(ctx)
    return ctx, ""


def run_cell(task: Task | None, ref: TaskRef, sub: Submission, config: RunConfig, path: Path, old: dict | None,
             defer_chunks: bool) -> CellOutcome:
    """Run one cell: prepare (or reuse) the task, skip the cell when ``old`` is an up-to-date
    ``ok`` record of the same run spec, else run the submission and return its record's JSON
    (and, with ``defer_chunks``, its new attribution chunks instead of writing them).  A
    submission's or a task's failure is an outcome, never an exception."""
    t0 = time.perf_counter()
    who = f"pid {os.getpid()}"
    ctx, failure = _cell_context(task, ref, config)
    if ctx is None:
        return CellOutcome(ref.name, sub.name, "task-failed", str(path), message=failure, worker=who)
    if result_path(config, ctx, sub) != Path(path):
        raise RuntimeError(f"cell result path {path} is not the runner's {result_path(config, ctx, sub)}")
    spec = run_spec(sub, ctx, config)
    if old is not None and not config.force:
        try:
            same = (old.get("run_key") == spec.key() and old.get("status") == "ok"
                    and RunSpec.model_validate(old.get("run_spec")) == spec)
        except Exception:  # noqa: BLE001 - an unreadable old spec: recompute
            same = False
        if same:
            return CellOutcome(ref.name, sub.name, "skipped", str(path), seconds=time.perf_counter() - t0, worker=who)
    chunks: dict[str, str] = {}
    with deferred_chunks(chunks if defer_chunks else None):
        try:
            record = run_submission(sub, ctx, config)
            text = record.to_json(str(path))
        except Exception as e:  # noqa: BLE001 - one submission never stops the grid
            record = _record_failure(sub, ctx, config, spec, e)
            text = record.to_json(str(path))
            chunks.clear()  # the failed cell's chunks are not kept
    if record.status == "error":
        msg = f"{sub.name} on {ref.name}: {record.error.stage}: {record.error.message}"
    else:
        main = record.scores[record.main_metric]
        msg = (f"{record.main_metric} = {main.value:.3f} [{main.ci_low:.3f}, {main.ci_high:.3f}], "
               f"{record.timing.per_example_mean_s:.4f}s/example")
    return CellOutcome(ref.name, sub.name, "written", str(path), record=text, chunks=chunks, message=msg,
                       status=record.status, seconds=time.perf_counter() - t0, worker=who)


def plan_cells(tasks: Sequence[Task], submissions: Sequence[Submission], config: RunConfig):
    """The grid's cells as executor jobs, in run order (a task's composites after their
    members, which they wait for), each with the existing record the driver found for it."""
    from harness.core.submission import discover
    from harness.engine.grid import Job

    builtins = discover() if any(s.params.get("members") for s in submissions) else None
    jobs = []
    for task in tasks:
        ref = TaskRef.of(task)
        allowed = task.default_submissions
        chosen = []
        for sub in submissions:
            if allowed is not None and not config.all_submissions and sub.name not in allowed:
                log.info("%s on %s: not in the task's default submissions %s, skipped (use --all-submissions)",
                         sub.name, ref.name, list(allowed))
                continue
            chosen.append(sub)
        names = {s.name for s in chosen}
        members = {s.name: [m for m in composite_members(s, builtins) if m in names] for s in chosen}
        chosen.sort(key=lambda s: bool(members[s.name]))  # stable: composites last, else the given order
        index: dict[str, int] = {}
        for sub in chosen:
            path = _result_file(config, ref.name, ref.model_label, sub.name)
            old, cost = None, None
            if path.exists():
                try:
                    rec = ResultRecord.read(path)
                    cost = rec.timing.total_s if rec.timing is not None else None
                    if not config.force:
                        old = {"run_key": rec.run_key, "status": rec.status,
                               "run_spec": rec.run_spec.model_dump(mode="json") if rec.run_spec else None}
                except Exception as e:  # noqa: BLE001 - an unreadable old record is replaced, and said so
                    log.warning("replacing unreadable result %s: %s", path, e)
            job = Job(len(jobs), f"{sub.name} on {ref.name}", (ref, sub, config, str(path), old),
                      tuple(index[m] for m in members[sub.name]), local=task, cost=cost, group=ref.key)
            index[sub.name] = job.index
            jobs.append(job)
    return jobs


#: thread-pool sizes a parallel run sets for its workers (numpy's OpenBLAS reads OMP_NUM_THREADS too)
_BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run_grid(tasks: Sequence[Task], submissions: Sequence[Submission], config: RunConfig, jobs: int = 1,
             executor: str = "local", ray_address: str | None = None) -> RunSummary:
    """Run every (task, submission) cell: serially in this process (``jobs=1``), in ``jobs``
    local worker processes, or as Ray tasks (``executor="ray"``; :mod:`harness.engine.grid`).
    Only this process writes records and attribution chunks; a killed run resumes."""
    if tasks and submissions:
        from harness.sandbox import forkserver

        forkserver.warm(config.isolation, jobs, executor)  # its imports run beside task preparation
    import torch

    from harness.core.submission import check_unique_names
    from harness.engine.grid import run_jobs

    check_unique_names(submissions)  # one name = one result file: refuse before any work, not overwrite
    summary = RunSummary()
    default_threads = torch.get_num_threads()
    saved_env = {k: os.environ.get(k) for k in _BLAS_THREAD_VARS}
    if int(jobs) > 1:  # the workers' (and their sandboxed workers') BLAS / OpenMP pools share the cores too
        for k in _BLAS_THREAD_VARS:
            os.environ.setdefault(k, str(max(1, (os.cpu_count() or 1) // int(jobs))))
    try:
        cells = plan_cells(tasks, submissions, config)

        def serial(job):
            ref, sub, cfg, path, old = job.args
            return run_cell(job.local, ref, sub, cfg, Path(path), old, False)

        def take(job, outcome):
            _take_outcome(outcome, config, summary, job, len(cells))

        run_jobs(cells, serial=serial, worker=_cell_in_worker, take=take, jobs=jobs, executor=executor,
                 ray_address=ray_address, initializer=_init_cell_worker,
                 initargs=(max(1, int(jobs)), logging.getLogger().getEffectiveLevel()))
        return summary
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _CONTEXTS.clear()
        torch.set_num_threads(default_threads)
        if config.isolation == "process":
            from harness.sandbox.isolation import close_spares

            close_spares()


def _take_outcome(outcome: CellOutcome, config: RunConfig, summary: RunSummary, job, total: int) -> None:
    """Write a cell's outcome (the driver only) and log its progress line."""
    from harness.engine.records import write_text_atomic

    where = f"[{job.index + 1}/{total}] {outcome.submission} on {outcome.task}"
    if outcome.kind == "task-failed":
        summary.task_failures.setdefault(outcome.task, outcome.message)
        log.info("%s: not run, %s", where, outcome.message)
        return
    path = Path(outcome.path)
    if outcome.kind == "skipped":
        summary.skipped.append(path)
        log.info("%s: up to date, skipped", where)
        return
    root = Path(config.cache_dir).resolve()
    for rel, text in outcome.chunks.items():
        target = (root / rel).resolve()
        if root not in target.parents:  # the worker's paths are relative to the cache folder
            raise RuntimeError(f"a cell returned a chunk outside the cache folder: {rel}")
        write_text_atomic(target, text)
    write_text_atomic(path, outcome.record)
    summary.written.append(path)
    if outcome.status == "error":
        summary.errors.append(outcome.message)
        log.info("%s: failed (%.1fs): %s", where, outcome.seconds, outcome.message)
    else:
        log.info("%s: %s (%.1fs%s)", where, outcome.message, outcome.seconds,
                 f", {outcome.worker}" if outcome.worker and outcome.worker != f"pid {os.getpid()}" else "")


def _init_cell_worker(share: int, level: int) -> None:
    """A grid worker process (local or Ray): share the cores, log like the driver, close its
    spare sandboxed workers when it exits."""
    import multiprocessing.util

    global _THREAD_SHARE
    _THREAD_SHARE = share
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s [w{os.getpid()}] %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def close():
        from harness.sandbox.isolation import close_spares

        close_spares()

    multiprocessing.util.Finalize(None, close, exitpriority=10)


def _cell_in_worker(ref: TaskRef, sub: Submission, config: RunConfig, path: str, old) -> CellOutcome:
    return run_cell(None, ref, sub, config, Path(path), old, True)
