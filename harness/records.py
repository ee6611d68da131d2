"""The on-disk result record: one JSON file per (submission, task, model), schema-validated.

Every model forbids extra fields, so a typo or a tampered file fails to load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from harness import RESULT_SCHEMA_VERSION


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricScore(_Strict):
    value: float
    ci_low: float
    ci_high: float
    higher_is_better: bool
    family: str
    n: int
    params: dict[str, Any] = Field(default_factory=dict)
    details: dict[str, float] = Field(default_factory=dict)


class SubmissionInfo(_Strict):
    name: str
    version: str
    params: dict[str, Any]
    code_hash: str
    level: Optional[Literal["token", "word"]] = None


class TaskInfo(_Strict):
    name: str
    version: str
    spec_hash: str
    main_metric: str
    n_examples: int
    data_hash: str
    data_source: str
    load_report: dict[str, Any] = Field(default_factory=dict)
    overrides: dict[str, Any] = Field(default_factory=dict)
    """The task parameters the run set (``--set``, ``--n-eval``, ...); ``attriboard verify``
    rebuilds the task from ``name`` and these."""
    """What loading did to the data (rows read, excluded and why), from the task's ``load_report``."""


class ModelInfo(_Strict):
    name: str
    description: str
    recipe_hash: str
    model_hash: str
    dev_accuracy: float


class MaskedLMInfo(_Strict):
    """The masked LM attached to the run (IM, LIME_BERT and the ``mlm`` removal operator use it)."""

    name: str
    description: str
    model_hash: str
    recipe_hash: Optional[str] = None


class Timing(_Strict):
    total_s: float
    per_example_p50_s: float
    per_example_p95_s: float
    per_example_mean_s: float
    device: str
    cuda_synchronized: bool
    cached_chunks: int = 0


class Cost(_Strict):
    forward_passes: int
    backward_passes: int
    mlm_calls: int
    forward_per_example: float
    backward_per_example: float
    mlm_per_example: float


class Memory(_Strict):
    peak_rss_mb: float
    peak_cuda_mb: Optional[float] = None
    scope: Optional[Literal["process", "worker"]] = None
    """``worker``: peak RSS of the submission's own worker process tree (isolated runs);
    ``process``: of the harness process the explainer ran in (in-process runs)."""


class Truncation(_Strict):
    policy: str
    max_length: int
    n_inputs: int
    n_truncated: int


class ErrorInfo(_Strict):
    type: str
    message: str
    stage: Literal["load", "explain", "validate-output", "metric", "attack", "timeout", "crash", "resource",
                   "sandbox"]
    """``timeout``: past the worker's wall-time limit; ``crash``: the worker died (signal, exit,
    ``sys.exit``); ``resource``: memory, output-size or process limits; ``sandbox``: a forbidden
    operation (reading hidden files, importing harness internals, network, processes)."""
    traceback: str = ""


class IsolationInfo(_Strict):
    """How the submission was contained (docs/SECURITY.md)."""

    mode: Literal["none", "process"]
    layers: list[str] = Field(default_factory=list)
    """Containment layers the worker had, e.g. ``namespaces(user,mount,net,pid)``, ``audit-guard``."""
    limits: dict[str, float] = Field(default_factory=dict)


class OfficialRun(_Strict):
    """An official run: secret planted vocabulary and/or hidden example subset. The secret is
    never stored; ``secret_commitment`` (sha256 of it) lets maintainers prove which one was used."""

    secret_commitment: str
    secret_vocabulary: bool
    hidden_subset: Optional[int] = None
    """Number of examples drawn (with the secret) from the task's pool; None = all of them."""
    pool_size: Optional[int] = None


class Provenance(_Strict):
    harness_version: str
    git_sha: Optional[str]
    git_dirty: Optional[bool]
    packages: dict[str, str]
    python: str
    platform: str
    hardware: dict[str, Any]
    seeds: dict[str, int]
    created_at: str


class ResultRecord(_Strict):
    schema_version: Literal["1"] = RESULT_SCHEMA_VERSION
    status: Literal["ok", "error"]
    run_key: str
    submission: SubmissionInfo
    task: TaskInfo
    model: ModelInfo
    mlm: Optional[MaskedLMInfo] = None
    aggregation: str
    main_metric: str
    scores: dict[str, MetricScore] = Field(default_factory=dict)
    per_example: dict[str, list[float]] = Field(default_factory=dict)
    example_ids: list[str] = Field(default_factory=list)
    diagnostics: dict[str, float] = Field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    """Task-specific tables (e.g. the fragility task's per-bucket table)."""
    timing: Optional[Timing] = None
    cost: Optional[Cost] = None
    memory: Optional[Memory] = None
    truncation: Optional[Truncation] = None
    error: Optional[ErrorInfo] = None
    isolation: Optional[IsolationInfo] = None
    official: Optional[OfficialRun] = None
    provenance: Provenance

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=True) + "\n")
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> "ResultRecord":
        return cls.model_validate_json(Path(path).read_text())


def json_schema() -> dict:
    return ResultRecord.model_json_schema()
