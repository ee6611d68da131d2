"""Suites: which tasks run on which models, declared as data (``suites/<name>.toml``).

A suite is a versioned TOML file validated by a strict schema (:class:`Suite`): for every task
entry the registered task, its parameters (as ``--set`` gives them), the number of scored
examples, the dataset it reads (hub id, pinned revision, split: stated, and checked against the
task's own dataset reference when the task is built), and the reference models (model specs as
``--model`` takes them: a preset, ``hf:<name>[@revision]``, ``checkpoint:<hub id or
folder>[@revision]#<label map>``, ``tiny-<family>``; an empty list means the task's own
default recipe).  The suite also declares the reference hardware, the expected runtime and,
for official runs, the size of the secret-drawn hidden subset.

``attriboard run --suite default`` is the embedded default (offline); ``--suite official`` the
benchmark on published checkpoints and real data; ``--suite PATH`` any file of this schema (the
tests run a copy of the official suite whose hub ids are replaced by local checkpoint folders
and data folders).  :func:`build_tasks` turns a suite into the tasks of a run grid.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.core.errors import UserError
from harness.core.provenance import REPO_ROOT

SUITES_DIR = REPO_ROOT / "suites"

Scalar = Union[bool, int, float, str]
Param = Union[Scalar, list[Union[Scalar, list[Scalar]]]]


class SuiteError(UserError, ValueError):
    """A suite that cannot be read, or names a task, model or parameter that does not exist."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class SuiteDataset(_Strict):
    """What a task entry reads.  ``source`` "generated" (the project's own corpus), "hub" (``id``
    at ``revision``), or "local" (a folder given by the task's ``data_dir`` parameter)."""

    source: Literal["generated", "hub", "local", "url"]
    id: str
    revision: Optional[str] = None
    split: str
    note: str = ""

    @field_validator("revision")
    @classmethod
    def _pinned(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and v in ("main", "master", "latest", ""):
            raise ValueError(f"revision {v!r} is a moving branch: pin a commit (or leave it out for generated data)")
        return v


class SuiteTask(_Strict):
    task: str
    """A registered task name (``attriboard list``)."""
    dataset: SuiteDataset
    n_eval: Optional[int] = Field(default=None, ge=1)
    params: dict[str, Param] = Field(default_factory=dict)
    """Task parameters, exactly as ``--set KEY=VALUE`` gives them (``n_eval`` and ``model`` have
    their own fields)."""
    models: list[str] = Field(default_factory=list)
    """Model specs (as ``--model``); empty: the task's own default recipe."""
    expected_minutes: Optional[float] = Field(default=None, ge=0)
    """Wall time of this entry on the suite's reference hardware, all submissions, all models."""


class Suite(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    version: str
    description: str
    hardware: str
    """The reference hardware its timings are quoted on."""
    expected_runtime_minutes: float = Field(ge=0)
    masked_lm: Literal["task", "none"] = "task"
    """``task``: each task's own masked LM (``--mlm task``); ``none``: metrics needing one are off."""
    hidden_subset: Optional[int] = Field(default=None, ge=1)
    """Official runs (with a secret): the number of scored examples drawn with the secret."""
    tasks: list[SuiteTask] = Field(min_length=1)
    explainers: dict[str, dict[str, Param]] = Field(default_factory=dict)
    """The built-in explainers the suite runs (``run --suite`` without ``--submissions``), each
    with its parameters: checked against the built-in's own ``[parameters]``, so a change of an
    explainer's parameters is a new suite version, not a silent change of the board.  Empty:
    every built-in, as declared by its submission."""


def suite_path(name_or_path: str) -> Path:
    """``suites/<name>.toml`` for a suite name (``official``: its newest version,
    ``suites/official-v<N>.toml``), else the path as given."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        return p
    exact = SUITES_DIR / f"{name_or_path}.toml"
    versions = sorted(SUITES_DIR.glob(f"{name_or_path}-v*.toml"), key=lambda q: _version_key(q.stem))
    return exact if exact.is_file() or not versions else versions[-1]


def _version_key(stem: str) -> tuple:
    tail = stem.rsplit("-v", 1)[-1]
    return tuple(int(x) if x.isdigit() else x for x in tail.split("."))


def available() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def load_suite(name_or_path: str) -> Suite:
    """The suite ``name_or_path`` (a name under ``suites/`` or a TOML path), checked: the schema,
    then every task name, task parameter and model spec it names."""
    path = suite_path(name_or_path)
    if not path.is_file():
        raise SuiteError(f"suite {name_or_path!r}: no file {path} (suites: {', '.join(available()) or 'none'})")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(f"suite {path}: not valid TOML: {e}") from None
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise SuiteError(f"suite {path}: {where}: {first['msg']} ({len(e.errors())} error(s))") from None
    check_suite(suite, str(path))
    return suite


def check_suite(suite: Suite, where: str) -> None:
    """Every task is registered, every parameter is one the task takes, every model spec parses,
    no two entries would write the same board (task and model label), and every declared
    explainer is a built-in with exactly the declared parameters."""
    from harness.engine.task import TASKS, load_builtin_tasks, task_parameters
    from harness.models.reference import recipe_from

    load_builtin_tasks()
    boards: dict[tuple[str, str], int] = {}
    for i, entry in enumerate(suite.tasks):
        at = f"suite {where}: tasks[{i}] ({entry.task})"
        if entry.task not in TASKS:
            import difflib

            close = difflib.get_close_matches(entry.task, list(TASKS), n=2)
            raise SuiteError(f"{at}: unknown task" + (f"; did you mean {', '.join(close)}?" if close else ""))
        valid = task_parameters(entry.task)
        bad = [k for k in entry.params if k in ("n_eval", "model") or (valid is not None and k not in valid)]
        if bad:
            raise SuiteError(f"{at}: parameter(s) {bad} not allowed here (n_eval and model have their own fields; "
                             f"valid: {', '.join(k for k in (valid or []) if k not in ('n_eval', 'model'))})")
        labels = []
        for m in entry.models or [None]:
            try:
                labels.append(recipe_from(m).label if m is not None else "default")
            except ValueError as e:
                raise SuiteError(f"{at}: model {m!r}: {e}") from None
        for label in labels:
            key = (entry.task, label)
            if key in boards:
                raise SuiteError(f"{at}: task {entry.task} on model {label} is also tasks[{boards[key]}]: "
                                 "their results would collide")
            boards[key] = i
    _check_explainers(suite, where)


def _check_explainers(suite: Suite, where: str) -> None:
    if not suite.explainers:
        return
    from harness.core.registry import RegistryError
    from harness.core.submission import SubmissionError, discover

    builtins = discover()
    for name, declared in suite.explainers.items():
        try:
            sub = builtins.get(name)
        except (SubmissionError, RegistryError) as e:
            raise SuiteError(f"suite {where}: explainers.{name}: {e}") from None
        actual = dict(sub.params)
        if _canon(actual) != _canon(declared):
            diff = sorted(k for k in set(actual) | set(declared) if _canon(actual.get(k)) != _canon(declared.get(k)))
            raise SuiteError(f"suite {where}: explainers.{name}: the suite declares {_show(declared, diff)} but the "
                             f"built-in {name} {sub.meta.version} has {_show(actual, diff)}: bump the suite version "
                             "with the new parameters (or restore the built-in's)")


def _canon(v):
    """Parameters compared as values: 25 == 25.0, lists and tuples alike (``True`` stays a bool)."""
    if isinstance(v, dict):
        return tuple(sorted((k, _canon(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_canon(x) for x in v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, bool):
        return ("bool", v)
    return v


def _show(params: dict, keys: list) -> str:
    return ", ".join(f"{k}={params[k]!r}" if k in params else f"no {k}" for k in keys)


def build_tasks(suite: Suite, extra: dict[str, Any] | None = None) -> list:
    """The suite's tasks, one per (entry, model), built with the entry's parameters (and
    ``extra``, e.g. a ``data_dir`` given on the command line, which wins).  A built task whose
    own dataset reference disagrees with the suite's declaration (another hub id or revision) is
    refused: the file must say what the run reads."""
    from harness.engine.task import get_task

    out = []
    for i, entry in enumerate(suite.tasks):
        for m in entry.models or [None]:
            kw: dict[str, Any] = dict(entry.params)
            if entry.n_eval is not None:
                kw["n_eval"] = entry.n_eval
            if m is not None:
                kw["model"] = m
            kw.update(extra or {})
            try:
                task = get_task(entry.task, **kw)
            except (ValueError, TypeError) as e:
                raise SuiteError(f"suite {suite.name}: tasks[{i}] ({entry.task}): {e}") from e
            _check_dataset(suite, i, entry, task)
            out.append(task)
    return out


def _check_dataset(suite: Suite, i: int, entry: SuiteTask, task) -> None:
    ref = task.spec.dataset
    d = entry.dataset
    if ref.source == "local" or d.source == "local":  # a local copy stands in for the declared source
        return
    mismatch = [f"{k} {getattr(d, k)!r} (task: {getattr(ref, k)!r})" for k in ("id", "revision")
                if getattr(d, k) is not None and getattr(ref, k, None) not in (None, getattr(d, k))]
    if d.source != ref.source and not (d.source == "url" and ref.source == "hub"):
        mismatch.insert(0, f"source {d.source!r} (task: {ref.source!r})")
    if mismatch:
        raise SuiteError(f"suite {suite.name}: tasks[{i}] ({entry.task}) declares a dataset the task does not "
                         f"read: {'; '.join(mismatch)}")
