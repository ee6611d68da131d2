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


#: the plot cache's record of what each provider drew from which records (in the board folder)
PLOT_CACHE = ".plot-cache.json"


def write_plots(records: Iterable, out_dir: Path, cache: bool = True) -> list[Path]:
    """Run every provider's plot writer; returns the paths written, in provider order.

    Content-hashed: a provider's plots are drawn again only when its inputs changed -- the
    records (their full JSON), the code of its module and of the board's plotting helpers, and
    matplotlib's version -- or when a file it drew is missing or was changed since (each file's
    sha256 is kept in ``out_dir/.plot-cache.json``).  ``cache=False`` draws everything."""
    import hashlib
    import json

    out_dir = Path(out_dir)
    records = list(records)
    stamp_file = out_dir / PLOT_CACHE
    try:
        stamps = json.loads(stamp_file.read_text()) if cache and stamp_file.is_file() else {}
    except (OSError, ValueError):
        stamps = {}
    if not isinstance(stamps, dict):
        stamps = {}
    inputs = hashlib.sha256()
    for r in sorted(records, key=lambda r: (r.task.name, r.model.name, r.submission.name)):
        inputs.update(r.model_dump_json().encode())
    records_hash = inputs.hexdigest()
    paths: list[Path] = []
    new_stamps: dict = {}
    for p in providers():
        if p.plots is None:
            continue
        key = f"{p.fn.__module__}.{p.fn.__qualname__}"
        h = hashlib.sha256(records_hash.encode())
        h.update(_code_hash(p.plots).encode())
        want = h.hexdigest()
        old = stamps.get(key)
        if cache and isinstance(old, dict) and old.get("inputs") == want and _files_intact(out_dir, old.get("files")):
            written = [out_dir / rel for rel in old["files"]]
        else:
            written = [Path(x) for x in (p.plots(records, out_dir) or ())]
        paths += written
        new_stamps[key] = {"inputs": want, "files": {_rel(out_dir, x): _sha(x) for x in written if Path(x).is_file()}}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp_file.write_text(json.dumps(new_stamps, indent=1, sort_keys=True))
    except OSError:  # a read-only board folder: plots are simply drawn again next time
        pass
    return paths


def _rel(out_dir: Path, path) -> str:
    path = Path(path)
    try:
        return path.resolve().relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


def _sha(path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _files_intact(out_dir: Path, files) -> bool:
    if not isinstance(files, dict):
        return False
    for rel, sha in files.items():
        f = out_dir / rel
        if not f.is_file() or _sha(f) != sha:
            return False
    return True


def _code_hash(writer) -> str:
    """sha256 of the source of the writer's module and its package's loaded modules, the board's
    plotting helpers and matplotlib's version."""
    import hashlib
    import inspect
    import sys

    h = hashlib.sha256()
    name = getattr(writer, "__module__", "") or ""
    package = name.rsplit(".", 1)[0] if "." in name else name
    names = sorted({name, "harness.board.plotting", "harness.board.ranking"}
                   | {m for m in list(sys.modules) if package and m.startswith(package + ".")})
    for mod in (sys.modules.get(m) for m in names):
        try:
            h.update(inspect.getsource(mod).encode()) if mod is not None else None
        except (OSError, TypeError):
            h.update(repr(mod).encode())
    try:
        import matplotlib

        h.update(matplotlib.__version__.encode())
    except ImportError:  # pragma: no cover
        pass
    return h.hexdigest()
