"""Submissions: a folder with ``submission.toml`` (metadata) and the code of one explainer.

``submission.toml``::

    name = "integrated_gradients"
    version = "1.0.0"
    authors = ["..."]
    paper = "Sundararajan et al. 2017, https://arxiv.org/abs/1703.01365"
    code = "https://github.com/pytorch/captum"
    license = "BSD-3-Clause"
    entry_point = "explainer:IntegratedGradients"   # module file : class in the folder
    description = "..."
    [parameters]
    n_steps = 50

Built-in baselines in ``submissions/`` are ordinary submissions loaded the same way.
"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.provenance import hash_tree
from harness.registry import Registry

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "submissions"


class SubmissionError(Exception):
    """A submission's metadata or code cannot be loaded."""


class SubmissionMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    version: str
    authors: list[str]
    paper: str
    code: str = ""
    license: str
    entry_point: str = Field(pattern=r"^[A-Za-z_][\w]*:[A-Za-z_]\w*$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class Submission:
    meta: SubmissionMeta
    path: Path
    code_hash: str

    @property
    def name(self) -> str:
        return self.meta.name

    def load_class(self):
        module_name, cls_name = self.meta.entry_point.split(":")
        file = self.path / f"{module_name}.py"
        if not file.exists():
            raise SubmissionError(f"{self.name}: entry point module {file} does not exist")
        mod_id = f"attriboard_submissions.{self.name.replace('-', '_')}.{module_name}"
        spec = importlib.util.spec_from_file_location(mod_id, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_id] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise SubmissionError(f"{self.name}: importing {file.name} failed: {type(e).__name__}: {e}") from e
        try:
            return getattr(module, cls_name)
        except AttributeError:
            raise SubmissionError(f"{self.name}: {file.name} has no class {cls_name!r}") from None

    def instantiate(self, **overrides):
        """Build the explainer with its declared parameters (``overrides`` win)."""
        cls = self.load_class()
        params = {**self.meta.parameters, **overrides}
        try:
            explainer = cls(**params)
        except TypeError as e:
            raise SubmissionError(f"{self.name}: cannot construct {cls.__name__}(**{params}): {e}") from e
        explainer.name = self.name
        explainer.version = self.meta.version
        if not callable(getattr(explainer, "explain", None)):
            raise SubmissionError(f"{self.name}: {cls.__name__} has no explain(model, batch) method")
        return explainer

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.meta.parameters)


def load_submission(path: Path) -> Submission:
    path = Path(path)
    toml_file = path / "submission.toml"
    if not toml_file.exists():
        raise SubmissionError(f"{path} is not a submission: no submission.toml")
    try:
        raw = tomllib.loads(toml_file.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SubmissionError(f"{toml_file}: invalid TOML: {e}") from e
    try:
        meta = SubmissionMeta.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or '<root>'}: {err['msg']}" for err in e.errors())
        raise SubmissionError(f"{toml_file}: invalid metadata: {problems}") from None
    return Submission(meta, path.resolve(), hash_tree(path))


def discover(root: Path = BUILTIN_DIR) -> Registry[Submission]:
    """All submissions under ``root`` (one folder each), in a registry keyed by name."""
    reg: Registry[Submission] = Registry("submission")
    for folder in sorted(p for p in Path(root).iterdir() if (p / "submission.toml").exists()):
        sub = load_submission(folder)
        reg.register(sub.name, sub)
    return reg


def resolve(ref: str, root: Path = BUILTIN_DIR) -> Submission:
    """A submission by folder path or by built-in name (with close-match suggestions)."""
    p = Path(ref)
    if (p / "submission.toml").exists():
        return load_submission(p)
    return discover(root).get(ref)
