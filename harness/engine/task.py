"""Task specs and the task interface; the task registry.

A task owns its data loading, its reference-model recipe and its metrics wiring.  What it
hands the runner is split in two: :class:`~harness.protocols.Example` objects (words only;
these reach explainers) and a parallel list of gold annotations (these reach only metrics).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal, Sequence

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
    spec: TaskSpec

    @abstractmethod
    def prepare(self) -> PreparedTask:
        """Load or generate data: training rows for the reference model, eval examples, gold."""

    def metric_names(self) -> tuple[str, ...]:
        return self.spec.metrics


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


def get_task(name: str, **overrides) -> Task:
    load_builtin_tasks()
    task = TASKS.get(name)(**overrides)
    task.overrides = dict(overrides)  # recorded with every result (verify rebuilds the task from them)
    return task


@dataclass
class CustomEvaluation:
    """What a task with its own evaluation loop returns (e.g. the fragility attack, which
    calls the explainer many times on perturbed inputs).

    ``per_example``: metric name -> (n,) finite values, one per evaluated input (the runner
    aggregates them with bootstrap CIs like any metric).  ``higher_is_better`` and
    ``family`` per metric name.  ``tables``: named lists of flat rows (e.g. the per-bucket
    table) stored in the result record.  ``details``: extra floats per metric name.
    """

    per_example: dict[str, Any]
    higher_is_better: dict[str, bool]
    family: dict[str, str]
    tables: dict[str, list[dict[str, Any]]]
    details: dict[str, dict[str, float]]


class CustomTask(Task):
    """A task that runs its own evaluation loop instead of explain-once-then-score.

    The runner still builds the explainer, times the call, counts model passes and catches
    failures; the task must only ever hand the explainer :class:`~harness.protocols.ExplainBatch`
    objects built by ``bundle.make_batch`` (inputs and target classes, nothing gold).
    """

    @abstractmethod
    def evaluate(self, explainer, bundle, examples: Sequence[Example], targets: Sequence[int],
                 seed: int) -> CustomEvaluation:
        ...
