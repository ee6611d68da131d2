"""What code a sandboxed worker may hold, derived from package membership.

A worker runs a stranger's explainer: it gets the packages explainers build on and nothing
else of the harness.  Everything outside :data:`WORKER_PACKAGES` and :data:`WORKER_MODULES`
(the engine, metrics, the board, the CLI, every task package) holds, produces or scores gold
data or writes results: it is not in the worker's file system (:func:`worker_paths`) and the
worker's import guard refuses it (:func:`blocked_modules`).  A new harness package is
therefore harness-only unless it is added here.
"""

from __future__ import annotations

import os
import pkgutil

#: harness packages a worker may import (the explainer API's implementation and the sandbox itself)
WORKER_PACKAGES = ("harness.core", "harness.models", "harness.explainers", "harness.sandbox")
#: harness modules a worker may import (the public explainer API)
WORKER_MODULES = ("harness.protocols", "harness.explain_utils")
#: the harness's end of the sandbox: inside a worker package, yet never imported in a worker
HARNESS_END = ("harness.sandbox.isolation",)


def _harness_dir() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def harness_members() -> list[str]:
    """Every top-level module and package of ``harness`` (dotted names)."""
    return sorted(f"harness.{m.name}" for m in pkgutil.iter_modules([_harness_dir()]))


def blocked_modules() -> tuple[str, ...]:
    """Modules a worker's import guard refuses: every task package and every harness member
    outside the worker set, plus :data:`HARNESS_END`."""
    allowed = set(WORKER_PACKAGES) | set(WORKER_MODULES)
    return ("tasks", *(m for m in harness_members() if m not in allowed), *HARNESS_END)


def worker_paths(repo: str) -> list[str]:
    """The files and folders of ``harness`` a worker's root holds (read-only binds)."""
    root = os.path.join(repo, "harness")
    out = [os.path.join(root, "__init__.py")]
    out += [os.path.join(root, *p.split(".")[1:]) for p in WORKER_PACKAGES]
    out += [os.path.join(root, *m.split(".")[1:]) + ".py" for m in WORKER_MODULES]
    return out


def result_code_paths(repo: str) -> list[str]:
    """The worker code that can change what a submission computes (every worker path but the
    sandbox itself): hashed into every run key (:func:`harness.engine.runner.shared_code_hash`)."""
    sandbox = os.path.join(repo, "harness", "sandbox")
    return [p for p in worker_paths(repo) if p != sandbox]
