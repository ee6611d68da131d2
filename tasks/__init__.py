"""Built-in tasks, one package per task (its data, recipes, metrics and board sections beside
it).  :func:`load_all` imports every subpackage; a task package registers its tasks in
``harness.engine.task.TASKS`` when imported.  ``tasks/nli`` is shared code of the NLI tasks."""

from __future__ import annotations

import importlib
import pkgutil


def load_all() -> list[str]:
    """Import every task package (sorted by name); returns their names."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg)
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names
