"""Task specs and the task interface; the task registry.

A task owns its data loading, its reference-model recipe and its metrics wiring.  What it
hands the runner is split in two: :class:`~harness.protocols.Example` objects (words only;
these reach explainers) and a parallel list of gold annotations (these reach only metrics).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from harness.models.reference import ModelRecipe
from harness.protocols import Example, Segments
from harness.core.registry import Registry


class DatasetRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["generated", "hub", "local"]
    id: str
    revision: str | None = None
    split: str = ""
    path: str | None = None


class TaskSpec(BaseModel):
    """A frozen task spec. Bump ``version`` whenever results would change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str
    description: str
    dataset: DatasetRef
    fields: tuple[str, ...]
    num_labels: int
    model: ModelRecipe
    metrics: tuple[str, ...]
    metric_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Keyword arguments per metric name (e.g. the removal operator of a removal metric)."""
    main_metric: str
    n_eval: int
    params: dict[str, Any] = Field(default_factory=dict)

    def hash(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


@dataclass
class PreparedTask:
    """Loaded data for one run of a task."""

    train: list[tuple[Segments, int]]
    dev: list[tuple[Segments, int]]
    examples: list[Example]
    gold: list[Any]
    data_hash: str


def hash_prepared(train, dev, examples: Sequence[Example], gold: Sequence[Any]) -> str:
    h = hashlib.sha256()
    for part in (train, dev, [(e.id, e.segments) for e in examples], gold):
        h.update(json.dumps(part, default=list).encode())
    return h.hexdigest()[:16]


class Task(ABC):
    """The task contract.  A task owns its data, its reference-model recipe, its metrics and,
    optionally, its own evaluation loop and board sections; the engine calls only these hooks
    (and never writes state onto a task):

    - :meth:`prepare` (required): training rows, evaluated examples, gold annotations.
    - :meth:`model_recipe`: the reference model it needs (default: ``spec.model``).
    - :meth:`reference_cache_name`: the cache folder of its reference models.
    - :meth:`use_secret`: official runs switch to a secret variant.
    - :meth:`on_prepared`: builds more from the prepared run (sanity: models of other seeds).
    - :meth:`evaluate`: explain-then-score by default; fragility and sanity run their own loops
      and return the same :class:`Evaluation`, from which the one record builder makes the record.

    Board sections of a task live in its package (``tasks/<name>/board.py``).
    """

    spec: TaskSpec
    #: the built-in submissions this task runs unless ``--all-submissions`` (None = every one)
    default_submissions: tuple[str, ...] | None = None
    #: the names of the task's labels, in label order (a fine-tuned checkpoint whose own label
    #: names are these is checked against its declared label map)
    label_names: tuple[str, ...] = ()
    #: the error stage of a failure inside :meth:`evaluate` that is neither the explainer's nor a metric's
    failure_stage: str = "evaluate"
    #: the keyword overrides the task was built with (set once by :func:`get_task`)
    overrides: Mapping[str, Any] = MappingProxyType({})
    #: what loading real data found (rows read, excluded, files); recorded with every result
    load_report: Mapping[str, Any] = MappingProxyType({})

    @abstractmethod
    def prepare(self) -> PreparedTask:
        """Load or generate data: training rows for the reference model, eval examples, gold."""

    def metric_names(self) -> tuple[str, ...]:
        return self.spec.metrics

    def model_recipe(self) -> ModelRecipe:
        """The reference model the engine trains or loads for this task (the spec's recipe)."""
        return self.spec.model

    def reference_cache_name(self) -> str:
        """Cache folder name of the reference models (sanity shares its base task's)."""
        return self.spec.name

    def use_secret(self, secret: str) -> bool:
        """Official runs: switch to the variant drawn with ``secret`` before :meth:`prepare`;
        returns whether the task has one (recorded as ``official.secret_vocabulary``)."""
        return False

    def on_prepared(self, ctx, config) -> None:
        """Called once the reference model, masked LM and targets are ready (``ctx``: the
        engine's :class:`~harness.engine.runner.TaskContext`)."""

    def evaluate(self, run) -> "Evaluation":
        """Evaluate one submission (``run``: :class:`~harness.engine.runner.Run`, which opens
        the explainer, runs and caches batched explain calls, and scores).  The default:
        explain every example once, then score it with :meth:`metric_names`."""
        maps = run.explain_all()
        return run.score(self.metric_names(), maps)


@dataclass
class Evaluation:
    """What :meth:`Task.evaluate` returns; the engine turns it into a result record.

    ``per_example``: metric name -> (n,) finite values, one per evaluated input (aggregated
    with bootstrap CIs).  ``higher_is_better``, ``family``, ``params`` and ``details`` per
    metric name.  ``tables``: named lists of flat rows stored in the record (e.g. the
    fragility per-bucket table).  ``level``: the explainer's attribution level, when known.
    ``aggregation``: the token-to-word aggregation the task used, when it is the task's own.
    """

    per_example: dict[str, Any]
    higher_is_better: dict[str, bool]
    family: dict[str, str]
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    details: dict[str, dict[str, float]] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    diagnostics: dict[str, float] = field(default_factory=dict)
    level: str | None = None
    aggregation: str | None = None


class ExplainerCallError(RuntimeError):
    """A task's own loop: the explainer failed (its ``__cause__`` is the original error, an
    :class:`~harness.core.outputs.OutputError` when the output was invalid)."""


TASKS: Registry = Registry("task")


def register_task(name: str):
    """Register a task factory ``f(**overrides) -> Task`` under ``name``."""

    def wrap(factory):
        TASKS.register(name, factory)
        return factory

    return wrap


def load_builtin_tasks() -> None:
    import tasks

    tasks.load_all()  # every task package under tasks/ registers its tasks


def declared_default_submissions(name: str) -> tuple[str, ...] | None:
    """The task's declared :attr:`Task.default_submissions`, read from its factory's return type
    without building the task (None: every submission, or an unknown task)."""
    import typing

    load_builtin_tasks()
    if name not in TASKS:
        return None
    factory = TASKS.get(name)
    cls = factory if isinstance(factory, type) else typing.get_type_hints(factory).get("return")
    subset = getattr(cls, "default_submissions", None) if isinstance(cls, type) else None
    return tuple(subset) if subset is not None else None


def task_parameters(name: str) -> list[str] | None:
    """The parameters ``--set`` may give task ``name`` (its class's constructor keywords that its
    factory does not fix), or None when they cannot be read (a factory taking ``**kwargs`` only)."""
    import inspect
    import typing

    load_builtin_tasks()
    factory = TASKS.get(name)
    cls = factory if isinstance(factory, type) else typing.get_type_hints(factory).get("return")
    if not isinstance(cls, type):
        return None
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    fixed = {"name", "source"}  # what the registered factories set themselves
    return sorted(k for k, p in params.items() if k != "self" and k not in fixed
                  and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def get_task(name: str, **overrides) -> Task:
    import difflib

    from harness.core.errors import TaskParameterError

    load_builtin_tasks()
    factory = TASKS.get(name)
    valid = task_parameters(name)
    unknown = sorted(set(overrides) - set(valid)) if valid is not None else []
    if unknown:
        close = difflib.get_close_matches(unknown[0], valid, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise TaskParameterError(f"task {name!r} has no parameter {unknown[0]!r}{hint} (valid: {', '.join(valid)})")
    task = factory(**overrides)
    task.overrides = MappingProxyType(dict(overrides))  # recorded in the run spec; verify rebuilds from them
    return task
