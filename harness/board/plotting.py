"""Helpers shared by the per-task plot modules (fragility, sanity): reading records that may be
pydantic objects or plain dicts, and where a plot goes relative to the leaderboard folder."""

from __future__ import annotations

import re
from typing import Any


def get_field(obj: Any, *path: str, default=None):
    """``obj.a.b`` (attributes or dict keys) along ``path``; ``default`` where missing or None."""
    for key in path:
        if obj is None:
            return default
        obj = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
    return default if obj is None else obj


def slug(s: str) -> str:
    """A file-name-safe form of ``s``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(s)).strip("-") or "x"


def record_table(record, name: str) -> list[dict]:
    """The rows of the record's task table ``name`` (empty when it has none or failed)."""
    if get_field(record, "status") != "ok":
        return []
    tables = get_field(record, "tables", default={}) or {}
    return list(tables.get(name, []) if isinstance(tables, dict) else [])


def plot_file(plot_dir: str, task: str, model: str, submission: str) -> str:
    """``plot_dir/<task>__<model>__<submission>.png``, relative to the leaderboard folder."""
    return f"{plot_dir}/{slug(task)}__{slug(model)}__{slug(submission)}.png"
