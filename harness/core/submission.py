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
from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.core.provenance import TreeError, hash_tree
from harness.core.registry import Registry

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "submissions"


class SubmissionError(Exception):
    """A submission's metadata or code cannot be loaded."""


VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z.+\-]{0,31}$"


def eval_passes(expr: str, env: dict[str, float], check_only: bool = False) -> float:
    """Evaluate a ``[passes]`` expression: numbers, names from ``env``, ``+ - * / //``,
    parentheses, ``min``/``max``/``ceil``; nothing else (raises ValueError)."""
    import ast
    import math

    if not isinstance(expr, str) or len(expr) > 200:
        raise ValueError("passes: an expression must be a string of at most 200 characters")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"passes: cannot parse {expr!r}: {e.msg}") from None
    ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b}
    funcs = {"min": min, "max": max, "ceil": math.ceil}

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.Name):
            if check_only:
                return 1
            if node.id not in env:
                raise ValueError(f"passes: unknown name {node.id!r} in {expr!r}")
            return env[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in funcs
                and not node.keywords and node.args):
            return funcs[node.func.id](*[ev(a) for a in node.args])
        raise ValueError(f"passes: {expr!r} may use only numbers, names, + - * / //, min, max, ceil")

    return float(ev(tree))


class SubmissionMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$", max_length=64)
    version: str = Field(pattern=VERSION_PATTERN)
    """A release version (PEP 440 / semver-like: ``1.0.0``, ``2.1rc1``, ``1.0.0-beta.2+build.5``);
    one short token, as it goes onto the board verbatim."""
    authors: list[str]
    paper: str
    code: str = ""
    license: str
    entry_point: str = Field(pattern=r"^[A-Za-z_][\w]*:[A-Za-z_]\w*$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    passes: dict[str, str] = Field(default_factory=dict)
    """Optional ``[passes]`` table: the model passes the method needs per example, as
    expressions of ``n_words``, ``n_tokens`` and the numeric parameters, keyed ``forward``,
    ``backward`` or ``mlm`` (e.g. leave-one-out: ``forward = "n_words + 1"``).  Pass counts
    of isolated runs are self-reported by the worker; the harness checks them against these
    lower bounds and records ``consistent`` / ``inconsistent`` (docs/SECURITY.md)."""

    @field_validator("passes")
    @classmethod
    def _passes(cls, v: dict[str, str]) -> dict[str, str]:
        for k, expr in v.items():
            if k not in ("forward", "backward", "mlm"):
                raise ValueError(f"passes: unknown count {k!r} (forward, backward or mlm)")
            eval_passes(expr, {}, check_only=True)
        return v


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
    try:  # first: it refuses links out of the folder (submission.toml included) and oversized folders
        code_hash = hash_tree(path)
    except (TreeError, OSError) as e:
        raise SubmissionError(f"{path}: cannot package the submission: {e}") from None
    try:
        raw = tomllib.loads(toml_file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SubmissionError(f"{toml_file}: invalid TOML: {e}") from e
    try:
        meta = SubmissionMeta.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or '<root>'}: {err['msg']}" for err in e.errors())
        raise SubmissionError(f"{toml_file}: invalid metadata: {problems}") from None
    return Submission(meta, path.resolve(), code_hash)


def check_unique_names(submissions: Iterable[Submission]) -> None:
    """Refuse two submissions with one name: their records would share a result file, and the
    later one would silently replace the other's (e.g. a folder declaring ``name = "gradient"``
    run next to the built-in ``gradient``)."""
    seen: dict[str, Submission] = {}
    clashes = []
    for sub in submissions:
        first = seen.setdefault(sub.name, sub)
        if first is not sub:
            clashes.append(f"{sub.name!r}: {first.path} and {sub.path}" if first.path != sub.path
                           else f"{sub.name!r}: {sub.path} given twice")
    if clashes:
        raise SubmissionError("two submissions share a name (each name is one result file and one board row; "
                              "rename one in its submission.toml): " + "; ".join(clashes))


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
    if p.is_dir():
        raise SubmissionError(f"{ref}: a folder without a submission.toml (docs/SUBMITTING.md says what it holds)")
    if "/" in ref or "\\" in ref or ref.startswith("."):  # a path, not a built-in name
        raise SubmissionError(f"submission folder {ref} does not exist (from {Path.cwd()}): check the path")
    return discover(root).get(ref)
