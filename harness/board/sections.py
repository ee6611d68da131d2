"""Board sections contributed by task packages.

A task package registers, in its ``board.py`` (imported by its ``__init__``)::

    from harness.board.sections import register_section

    @register_section                      # or register_section(fn, plots=writer, order=...)
    def my_sections(boards):               # boards: harness.board.boards.Board, in tab order
        return [Section(...), ...]         # or None / []

A :class:`~harness.board.model.Section` with ``board=<task/model key>`` goes under that board,
one with ``board=None`` after every board (Markdown) or in its own tab (HTML).  ``plots``: a
function ``(records, out_dir) -> list[Path]`` that writes the section's plots into the board
folder before the HTML page (which shows them) is written.

:func:`collect` and :func:`write_plots` discover the providers by importing every task package
(:func:`tasks.load_all`); providers run in the order (``order``, module, name).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence


@dataclass(frozen=True)
class Provider:
    fn: Callable
    plots: Callable | None
    order: int

    @property
    def sort_key(self) -> tuple:
        return (self.order, self.fn.__module__, self.fn.__qualname__)


_PROVIDERS: dict[Callable, Provider] = {}
_discovered = False


def register_section(fn: Callable | None = None, *, plots: Callable | None = None, order: int = 0):
    """Register ``fn(boards) -> Iterable[Section] | None`` (usable as a decorator, with or
    without arguments); returns ``fn``.  Registering the same function again replaces it."""
    def add(f):
        _PROVIDERS[f] = Provider(f, plots, order)
        return f

    return add if fn is None else add(fn)


def unregister_section(fn: Callable) -> None:
    _PROVIDERS.pop(fn, None)


def discover() -> None:
    """Import every task package once (each registers its sections)."""
    global _discovered
    if not _discovered:
        import importlib

        import tasks

        importlib.import_module("harness.board.quality_cost")  # the board's own per-board section
        importlib.import_module("harness.board.model_axis")  # the cross-model view
        tasks.load_all()
        _discovered = True


def providers() -> list[Provider]:
    discover()
    return sorted(_PROVIDERS.values(), key=lambda p: p.sort_key)


def collect(boards: Sequence) -> list:
    """Every registered provider's sections for ``boards``, in provider order."""
    out = []
    for p in providers():
        out += list(p.fn(boards) or ())
    return out


def write_plots(records: Iterable, out_dir: Path) -> list[Path]:
    """Run every provider's plot writer; returns the paths written, in provider order."""
    records = list(records)
    paths: list[Path] = []
    for p in providers():
        if p.plots is not None:
            paths += list(p.plots(records, Path(out_dir)) or ())
    return paths
