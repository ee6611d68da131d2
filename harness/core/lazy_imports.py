"""Imports the harness never needs, deferred until something calls them.

``transformers`` imports scikit-learn (and with it ``scipy.stats``) whenever a model class is
imported: ``transformers.generation.candidate_generator`` does ``from sklearn.metrics import
roc_curve`` at module level, for the dynamic candidate length of assisted generation. No
explainer or metric of the harness generates text, yet that import is about a third of the time
it takes to import a model class: measured here, 1.3 s of a 4 s ``import
transformers.models.bert.modeling_bert`` on an idle core. Every run pays it in the harness, in
the fork server and in each local ``--jobs`` worker before the first explainer call.

:func:`install` (called when :mod:`harness` is imported) adds a meta-path finder that lets that
one module load with transformers' ``is_sklearn_available()`` answering False, then restores
the flag and gives the module a ``roc_curve`` that imports scikit-learn when first called. So
assisted generation behaves exactly as before, sklearn is imported only if it is used, and
nothing else changes. A transformers version that no longer has the import is left alone.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

TARGET = "transformers.generation.candidate_generator"


def _roc_curve(*args, **kwargs):
    from sklearn.metrics import roc_curve

    return roc_curve(*args, **kwargs)


class _Loader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:
        from transformers.utils import import_utils

        saved = getattr(import_utils, "_sklearn_available", None)
        if saved is None:  # a transformers without the flag: load as it is
            self.inner.exec_module(module)
            return
        import_utils._sklearn_available = False
        try:
            self.inner.exec_module(module)
        finally:
            import_utils._sklearn_available = saved
        if saved and not hasattr(module, "roc_curve"):
            module.roc_curve = _roc_curve


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Loader(spec.loader)
        return spec


def install() -> None:
    """Add the finder once (no effect when transformers' generation module is already loaded)."""
    if TARGET in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())
