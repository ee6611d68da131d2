"""The on-disk result record: one JSON file per (submission, task, model), schema-validated.

Every model forbids extra fields, so a typo or a tampered file fails to load.  Every number
must be finite (JSON has no NaN or infinity): a non-finite float fails validation, and
:meth:`ResultRecord.write` refuses to write one.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from harness import RESULT_SCHEMA_VERSION


def non_finite_paths(obj: Any, where: str = "") -> list[str]:
    """Dotted paths of the NaN / infinite numbers in a JSON-like value."""
    if isinstance(obj, numbers.Real) and not isinstance(obj, numbers.Integral):
        return [] if math.isfinite(float(obj)) else [f"{where or '<value>'}={float(obj)!r}"]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in non_finite_paths(v, f"{where}.{k}" if where else str(k))]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in non_finite_paths(v, f"{where}[{i}]")]
    return []


def _finite_value(v: Any) -> Any:
    bad = non_finite_paths(v)
    if bad:
        raise ValueError(f"non-finite number(s) (JSON has no NaN or infinity): {', '.join(bad[:5])}")
    return v


Finite = Annotated[Any, AfterValidator(_finite_value)]
"""A free-form JSON value whose numbers must all be finite."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class MetricScore(_Strict):
    value: float
    ci_low: float
    ci_high: float
    higher_is_better: bool
    family: str
    n: int
    params: dict[str, Finite] = Field(default_factory=dict)
    details: dict[str, float] = Field(default_factory=dict)


class SubmissionInfo(_Strict):
    name: str
    version: str
    params: dict[str, Finite]
    code_hash: str
    level: Optional[Literal["token", "word"]] = None
    paper: Optional[str] = None
    """The paper its ``submission.toml`` declares (a URL or a citation), shown on the board."""
    code: Optional[str] = None
    """Its code repository as declared, shown on the board."""


class TaskInfo(_Strict):
    name: str
    version: str
    spec_hash: str
    main_metric: str
    n_examples: int
    data_hash: str
    data_source: str
    load_report: dict[str, Finite] = Field(default_factory=dict)
    overrides: dict[str, Finite] = Field(default_factory=dict)
    """The task parameters the run set (``--set``, ``--n-eval``, ...); ``attriboard verify``
    rebuilds the task from ``name`` and these."""
    """What loading did to the data (rows read, excluded and why), from the task's ``load_report``."""


class ModelInfo(_Strict):
    name: str
    description: str
    recipe_hash: str
    model_hash: str
    dev_accuracy: float
    num_labels: Optional[int] = None
    majority_dev_accuracy: Optional[float] = None
    """The dev split's most frequent label's share: the accuracy of always guessing it. With
    ``num_labels`` the board's chance level (:func:`harness.board.boards.chance_level`)."""
    dtype: Optional[str] = None
    """The reference model's parameter dtype during the run (``float32`` unless a lower
    precision is declared); timings and scores are only comparable at the same dtype."""


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
    cpu_total_s: Optional[float] = None
    """User + system CPU seconds of the explain calls (the worker's process tree, or this process)."""
    gpu_total_s: Optional[float] = None
    """SM-busy seconds of the worker's processes from NVML (CUDA, isolated runs, NVML present)."""
    measured_by: Optional[Literal["harness", "in-process"]] = None
    """``harness``: wall, CPU and memory measured by the parent from outside the worker (isolated
    runs: the submission cannot change them); ``in-process``: the explainer ran in the harness."""
    self_reported_total_s: Optional[float] = None
    """The worker's own clock (isolated runs): shown beside the measured time, never used for it."""
    evaluate_s: Optional[float] = None
    """Wall seconds of the whole cell evaluation (explain calls and metrics), measured around
    ``task.evaluate``: what ``attriboard plan`` extrapolates from."""
    composed_from: Optional[list[str]] = None
    """A built-in composite (ensemble) whose chunks were composed from its members' cached chunks
    of the same run: its time and passes are the sums of theirs (as when it runs them itself)."""


class Cost(_Strict):
    forward_passes: int
    backward_passes: int
    mlm_calls: int
    forward_per_example: float
    backward_per_example: float
    mlm_per_example: float
    self_reported: bool = False
    """True when the pass counts were reported by the submission's worker (isolated runs): the
    model it calls is in its own process, so the harness cannot count them; see
    ``pass_check`` for the cross-check against what the declared method needs."""
    pass_check: Optional[str] = None
    """Result of cross-checking self-reported counts: ``consistent``, ``inconsistent: ...`` or
    ``not checked`` (the method declares no predictable count)."""


class Memory(_Strict):
    peak_rss_mb: float
    peak_cuda_mb: Optional[float] = None
    """Isolated runs: the worker's GPU memory from NVML, measured by the parent (None: not measured)."""
    scope: Optional[Literal["process", "worker"]] = None
    """``worker``: peak RSS of the submission's own worker process tree (isolated runs);
    ``process``: of the harness process the explainer ran in (in-process runs)."""
    oom_backoffs: Optional[int] = None
    """Batches the harness's model bundle split because they did not fit the device (metrics, and
    the explainer's calls when it ran in-process; a sandboxed worker's own splits are not seen)."""
    max_batch_rows: Optional[int] = None
    """The largest batch that fitted after such a split (None: no batch failed)."""


class Truncation(_Strict):
    policy: str
    max_length: int
    n_inputs: int
    n_truncated: int


class ErrorInfo(_Strict):
    type: str
    message: str
    stage: Literal["load", "explain", "validate-output", "metric", "attack", "evaluate", "timeout", "crash",
                   "resource", "sandbox", "record"]
    """``timeout``: past the worker's wall-time limit; ``crash``: the worker died (signal, exit,
    ``sys.exit``); ``resource``: memory, output-size or process limits; ``sandbox``: a forbidden
    operation (reading hidden files, importing harness internals, network, processes);
    ``record``: the harness could not build or write a record from what the run produced."""
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


class RunSpec(_Strict):
    """Everything that defines a run, frozen and stored verbatim in its record: the run key is
    its hash (:meth:`key`) and ``attriboard verify`` rebuilds the run from it with no search.
    Content hashes (task spec, data, models, code) pin what the named inputs produced."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    harness_version: str
    task: str
    """The registered task name; the task is ``get_task(task, **task_overrides)``."""
    task_overrides: dict[str, Finite] = Field(default_factory=dict)
    task_spec_hash: str
    data_hash: str
    model_recipe: dict[str, Finite]
    """The reference model's recipe (:class:`harness.models.reference.ModelRecipe`), verbatim."""
    model_hash: str
    mlm: Optional[str] = None
    """The masked-LM choice (``tiny``, ``bert-base-uncased``, ``hf:NAME``); None: the run had none."""
    mlm_recipe_hash: Optional[str] = None
    mlm_hash: Optional[str] = None
    submission: str
    submission_version: str
    code_hash: str
    params: dict[str, Finite] = Field(default_factory=dict)
    members: Optional[dict[str, str]] = None
    """Code hashes of the built-ins a composite submission runs (an ensemble's ``members``)."""
    shared_code_hash: str
    aggregation: str
    batch_size: int
    seed: int
    device: str
    """The device class the run asked for (``cpu``, ``cuda``)."""
    isolation: dict[str, Finite]
    """``{"mode": "none"}`` or ``{"mode": "process", <the worker limits>}``."""
    official: Optional[dict[str, Finite]] = None
    """Official runs: the secret's commitment and the hidden-subset size (never the secret)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """The classifier's precision: float32, or a declared lower precision run as mixed precision
    (``--dtype``)."""

    def key(self) -> str:
        """sha256 of the canonical JSON (sorted keys), so a spec read back hashes the same.  The
        default float32 is left out, so the keys of runs recorded before ``dtype`` existed hold."""
        import hashlib

        d = self.model_dump(mode="json")
        if d.get("dtype") == "float32":
            del d["dtype"]
        canonical = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class Provenance(_Strict):
    harness_version: str
    git_sha: Optional[str]
    git_dirty: Optional[bool]
    packages: dict[str, str]
    python: str
    platform: str
    hardware: dict[str, Finite]
    seeds: dict[str, int]
    created_at: str


class ResultRecord(_Strict):
    schema_version: Literal["1"] = RESULT_SCHEMA_VERSION
    status: Literal["ok", "error"]
    run_key: str
    """The hash of :attr:`run_spec` (:meth:`RunSpec.key`)."""
    run_spec: Optional[RunSpec] = None
    """How the run was made, verbatim (None only in records written before run specs)."""
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
    tables: dict[str, list[dict[str, Finite]]] = Field(default_factory=dict)
    """Task-specific tables (e.g. the fragility task's per-bucket table)."""
    timing: Optional[Timing] = None
    cost: Optional[Cost] = None
    memory: Optional[Memory] = None
    truncation: Optional[Truncation] = None
    error: Optional[ErrorInfo] = None
    isolation: Optional[IsolationInfo] = None
    official: Optional[OfficialRun] = None
    provenance: Provenance

    @model_validator(mode="before")
    @classmethod
    def _current_metric_names(cls, data: Any) -> Any:
        """Old records stay readable: a renamed metric's old name
        (:data:`harness.metrics.names.RENAMED_METRICS`) is read as its current name in
        ``main_metric``, ``task.main_metric`` and the keys of ``scores`` and ``per_example``."""
        return current_metric_names(data)

    def to_json(self, where: str = "result record") -> str:
        """The record as the strict JSON text :meth:`write` writes; a NaN or infinite number
        anywhere (e.g. set on the record after validation) raises ``ValueError`` naming where."""
        bad = non_finite_paths(self.model_dump())
        if bad:
            raise ValueError(f"{where}: refusing to write a result record with non-finite numbers "
                             f"(JSON has no NaN or infinity): {', '.join(bad[:10])}"
                             + (f" and {len(bad) - 10} more" if len(bad) > 10 else ""))
        return json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=True, allow_nan=False) + "\n"

    def write(self, path: Path) -> None:
        """Write the record as strict JSON (:meth:`to_json`), atomically; on a ``ValueError``
        nothing is written."""
        path = Path(path)
        text = self.to_json(str(path))
        write_text_atomic(path, text)

    @classmethod
    def read(cls, path: Path) -> "ResultRecord":
        return cls.model_validate_json(Path(path).read_text())


def current_metric_names(data: Any) -> Any:
    """A record's JSON data (a dict) with every old metric name replaced by its current one; the
    values are untouched, so each score still equals the mean of its per-example values and the
    run key (the hash of the run spec, which names no metric) still matches.  A record holding a
    metric under both its old and its new name is refused.  Anything but a dict is returned as is."""
    from harness.metrics.names import RENAMED_METRICS

    if not isinstance(data, dict):
        return data

    def rename_keys(d: Any, where: str) -> Any:
        if not isinstance(d, dict) or not any(k in RENAMED_METRICS for k in d):
            return d
        out: dict = {}
        for k, v in d.items():
            new = RENAMED_METRICS.get(k, k)
            if new in out or (new != k and new in d):
                raise ValueError(f"{where}: metric {new!r} appears under both its old name {k!r} and its "
                                 f"current name")
            out[new] = v
        return out

    data = dict(data)
    if isinstance(data.get("main_metric"), str):
        data["main_metric"] = RENAMED_METRICS.get(data["main_metric"], data["main_metric"])
    if isinstance(data.get("task"), dict) and isinstance(data["task"].get("main_metric"), str):
        data["task"] = {**data["task"], "main_metric": RENAMED_METRICS.get(data["task"]["main_metric"],
                                                                            data["task"]["main_metric"])}
    for field in ("scores", "per_example"):
        if field in data:
            data[field] = rename_keys(data[field], field)
    return data


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: a reader (or a killed
    writer) never sees half a file."""
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def json_schema() -> dict:
    return ResultRecord.model_json_schema()
