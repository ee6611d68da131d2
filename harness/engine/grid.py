"""The run grid: every (task x reference model, submission) cell, run by an executor.

A **cell** is one submission on one prepared task.  Cells are independent except that a
composite submission (an ensemble) waits for its members on the same task, whose cached maps
it reads (:func:`harness.engine.runner.composite_members`).  Three executors run the same
cell function, :func:`run_cell`, so their records are identical (timing aside):

- ``local`` with ``jobs=1`` (the default): in this process, one cell after another;
- ``local`` with ``jobs=N > 1``: N local worker processes (spawned), each keeping the
  prepared tasks it used last; torch's CPU threads are shared out (cores // N);
- ``ray``: each cell is a Ray task (``num_cpus=1``) on a local cluster started for the run
  (``jobs`` CPUs), or on an existing cluster (``ray_address``).  Ray is an optional extra.

Only the driver (this process) writes: the result records, and the cells' new attribution
chunks, which the workers return instead of writing.  Reference models and masked LMs are
trained by whichever worker first needs one, under a file lock in the cache folder
(:mod:`harness.core.locks`), so each is trained once; on a multi-node Ray cluster the cache
folder must therefore be shared (or pre-filled by one serial run).  A killed driver loses
only its cells in flight: every finished cell's record is already written, and the next run
skips it as up to date.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class TaskRef:
    """What rebuilds a task in another process: its registered name and keyword overrides
    (:func:`harness.engine.task.get_task`), checked against the spec hash the driver saw."""

    name: str
    overrides: dict
    spec_hash: str
    model_label: str

    @classmethod
    def of(cls, task) -> "TaskRef":
        return cls(task.spec.name, dict(task.overrides), task.spec.hash(), task.model_recipe().label)

    def build(self):
        from harness.engine.task import get_task

        task = get_task(self.name, **self.overrides)
        if task.spec.hash() != self.spec_hash:
            raise RuntimeError(f"task {self.name} rebuilt in a worker has spec hash {task.spec.hash()}, "
                               f"not the driver's {self.spec_hash}: is the worker running other code?")
        return task

    @property
    def key(self) -> tuple:
        return (self.name, json.dumps(self.overrides, sort_keys=True, default=str), self.spec_hash)


@dataclass
class CellOutcome:
    """What a cell sends back to the driver (plain data: it crosses process and node borders)."""

    task: str
    submission: str
    kind: str
    """``written`` (``record`` holds the new record's JSON), ``skipped`` (up to date) or
    ``task-failed`` (the task could not be prepared: ``message``)."""
    path: str = ""
    record: str | None = None
    chunks: dict[str, str] = field(default_factory=dict)
    """New attribution chunks: path relative to the cache folder -> JSON text (the driver writes them)."""
    message: str = ""
    status: str = ""
    seconds: float = 0.0
    worker: str = ""


@dataclass
class Cell:
    index: int
    task: Any
    ref: TaskRef
    sub: Any
    path: Path
    old: dict | None
    """The existing record's ``run_key``, ``status`` and ``run_spec`` (read by the driver), or None."""
    after: tuple[int, ...] = ()
    """Indices of the cells this one waits for (a composite's members on the same task)."""


# --------------------------------------------------------------------------- the cell

_CONTEXTS: "OrderedDict[tuple, Any]" = OrderedDict()
#: prepared tasks kept per process (cells come in task order, so two suffice)
_KEEP_CONTEXTS = 2
_THREAD_SHARE = 1
"""Worker processes running side by side on this machine (torch threads are shared out)."""


def _context(task, ref: TaskRef, config):
    """The prepared task of ``ref`` in this process (prepared once; a preparation failure is
    kept too, so every cell of the task reports it without preparing again)."""
    from harness.engine.runner import apply_threads, prepare_task

    if ref.key in _CONTEXTS:
        _CONTEXTS.move_to_end(ref.key)
        ctx = _CONTEXTS[ref.key]
    else:
        while len(_CONTEXTS) >= _KEEP_CONTEXTS:
            _CONTEXTS.popitem(last=False)
        if task is None:
            task = ref.build()
        log.info("task %s: %d torch threads", ref.name, apply_threads(task, config, share=_THREAD_SHARE))
        try:
            ctx = prepare_task(task, config)
            log.info("task %s: %d examples, model %s (dev accuracy %.4f), %d inputs truncated", ref.name,
                     len(ctx.data.examples), ctx.ref.description, ctx.ref.dev_accuracy, sum(ctx.truncated))
        except Exception as e:  # noqa: BLE001 - reported as the task's failure, every cell of it
            ctx = RuntimeError(f"task {ref.name} could not be prepared: {type(e).__name__}: {e}")
            log.error("%s", ctx)
            log.debug("%s", traceback.format_exc())
        _CONTEXTS[ref.key] = ctx
    if isinstance(ctx, Exception):
        return None, str(ctx)
    apply_threads(ctx.task, config, share=_THREAD_SHARE)
    return ctx, ""


def clear_contexts() -> None:
    _CONTEXTS.clear()


def run_cell(task, ref: TaskRef, sub, config, path: Path, old: dict | None, defer_chunks: bool) -> CellOutcome:
    """Run one cell: prepare (or reuse) the task, skip the cell when ``old`` is an up-to-date
    ``ok`` record of the same run spec, else run the submission and return its record's JSON.
    Never raises for a submission's or a task's failure (they are outcomes)."""
    from harness.engine import runner
    from harness.engine.records import RunSpec

    t0 = time.perf_counter()
    who = f"pid {os.getpid()}"
    ctx, failure = _context(task, ref, config)
    if ctx is None:
        return CellOutcome(ref.name, sub.name, "task-failed", str(path), message=failure, worker=who)
    if runner.result_path(config, ctx, sub) != Path(path):
        raise RuntimeError(f"cell result path {path} is not the runner's {runner.result_path(config, ctx, sub)}")
    spec = runner.run_spec(sub, ctx, config)
    if old is not None and not config.force:
        try:
            same = (old.get("run_key") == spec.key() and old.get("status") == "ok"
                    and RunSpec.model_validate(old.get("run_spec")) == spec)
        except Exception:  # noqa: BLE001 - an unreadable old spec: recompute
            same = False
        if same:
            return CellOutcome(ref.name, sub.name, "skipped", str(path), seconds=time.perf_counter() - t0, worker=who)
    chunks: dict[str, str] = {}
    with runner.deferred_chunks(chunks if defer_chunks else None):
        try:
            record = runner.run_submission(sub, ctx, config)
            text = record.to_json(str(path))
        except Exception as e:  # noqa: BLE001 - one submission never stops the grid
            record = runner._record_failure(sub, ctx, config, spec, e)
            text = record.to_json(str(path))
            chunks.clear()  # the failed cell's chunks are not kept
    msg = ""
    if record.status == "error":
        msg = f"{sub.name} on {ref.name}: {record.error.stage}: {record.error.message}"
    else:
        main = record.scores[record.main_metric]
        msg = (f"{record.main_metric} = {main.value:.3f} [{main.ci_low:.3f}, {main.ci_high:.3f}], "
               f"{record.timing.per_example_mean_s:.4f}s/example")
    return CellOutcome(ref.name, sub.name, "written", str(path), record=text, chunks=chunks, message=msg,
                       status=record.status, seconds=time.perf_counter() - t0, worker=who)


# --------------------------------------------------------------------------- the driver

def plan_cells(tasks: Sequence, submissions: Sequence, config) -> list[Cell]:
    """The grid's cells in run order (a task's composites after their members), with the
    existing records the driver found for them."""
    from harness.engine.records import ResultRecord
    from harness.engine.runner import composite_members

    cells: list[Cell] = []
    for task in tasks:
        ref = TaskRef.of(task)
        allowed = task.default_submissions
        chosen = []
        for sub in submissions:
            if allowed is not None and not config.all_submissions and sub.name not in allowed:
                log.info("%s on %s: not in the task's default submissions %s, skipped (use --all-submissions)",
                         sub.name, ref.name, list(allowed))
                continue
            chosen.append(sub)
        names = {s.name for s in chosen}
        members = {s.name: [m for m in composite_members(s) if m in names] for s in chosen}
        chosen.sort(key=lambda s: bool(members[s.name]))  # stable: composites last, else the given order
        index: dict[str, int] = {}
        for sub in chosen:
            path = Path(config.results_dir) / ref.name / ref.model_label / f"{sub.name}.json"
            old = None
            if path.exists() and not config.force:
                try:
                    rec = ResultRecord.read(path)
                    old = {"run_key": rec.run_key, "status": rec.status, "run_spec": rec.run_spec.model_dump(mode="json")}
                except Exception as e:  # noqa: BLE001 - an unreadable old record is replaced, and said so
                    log.warning("replacing unreadable result %s: %s", path, e)
            cell = Cell(len(cells), task, ref, sub, path, old, tuple(index[m] for m in members[sub.name]))
            index[sub.name] = cell.index
            cells.append(cell)
    return cells


def run_cells(cells: list[Cell], config, jobs: int = 1, executor: str = "local", ray_address: str | None = None,
              summary=None):
    """Run ``cells`` with the executor and write what they return; returns the
    :class:`~harness.engine.runner.RunSummary`."""
    from harness.engine.runner import RunSummary

    summary = summary if summary is not None else RunSummary()
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    jobs = max(1, int(jobs))
    if executor == "local" and jobs == 1:
        try:
            for cell in cells:
                _take(run_cell(cell.task, cell.ref, cell.sub, config, cell.path, cell.old, False), config, summary,
                      cell, len(cells))
        finally:
            clear_contexts()
        return summary
    if executor == "local":
        submit, wait, close = _local_pool(config, jobs)
    else:
        submit, wait, close = _ray_pool(config, jobs, ray_address)
    try:
        _schedule(cells, config, jobs, submit, wait, summary)
    finally:
        close()
    return summary


def _schedule(cells, config, jobs, submit, wait, summary) -> None:
    """Keep ``jobs`` cells in flight; a cell starts when the cells it waits for are taken."""
    pending = list(cells)
    done: set[int] = set()
    running: dict[Any, Cell] = {}
    while pending or running:
        while len(running) < jobs:
            ready = next((c for c in pending if all(a in done for a in c.after)), None)
            if ready is None:
                break
            pending.remove(ready)
            running[submit(ready)] = ready
            log.info("[%d/%d] %s on %s: started", ready.index + 1, len(cells), ready.sub.name, ready.ref.name)
        if not running:  # pragma: no cover - members are always planned before their composite
            raise RuntimeError(f"cells wait for cells that never run: {[c.sub.name for c in pending]}")
        for handle, outcome in wait(list(running)):
            cell = running.pop(handle)
            _take(outcome, config, summary, cell, len(cells))
            done.add(cell.index)


def _take(outcome: CellOutcome, config, summary, cell: Cell, total: int) -> None:
    """Write a cell's outcome (the driver only) and log its progress line."""
    from harness.engine.records import write_text_atomic

    where = f"[{cell.index + 1}/{total}] {outcome.submission} on {outcome.task}"
    if outcome.kind == "task-failed":
        summary.task_failures.setdefault(outcome.task, outcome.message)
        log.info("%s: not run, %s", where, outcome.message)
        return
    path = Path(outcome.path)
    if outcome.kind == "skipped":
        summary.skipped.append(path)
        log.info("%s: up to date, skipped", where)
        return
    root = Path(config.cache_dir)
    for rel, text in outcome.chunks.items():
        target = (root / rel).resolve()
        if root.resolve() not in target.parents:  # the worker's paths are relative to the cache folder
            raise RuntimeError(f"a cell returned a chunk outside the cache folder: {rel}")
        write_text_atomic(target, text)
    write_text_atomic(path, outcome.record)
    summary.written.append(path)
    if outcome.status == "error":
        summary.errors.append(outcome.message)
        log.info("%s: failed (%.1fs): %s", where, outcome.seconds, outcome.message)
    else:
        log.info("%s: %s (%.1fs%s)", where, outcome.message, outcome.seconds,
                 f", {outcome.worker}" if outcome.worker and outcome.worker != f"pid {os.getpid()}" else "")


# --------------------------------------------------------------------------- local processes

def _init_worker(jobs: int, level: int) -> None:
    """A local worker process: share the cores, log like the driver, close its spare
    sandboxed workers when it exits."""
    global _THREAD_SHARE
    import multiprocessing.util

    _THREAD_SHARE = jobs
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s [w{os.getpid()}] %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def close():
        from harness.sandbox.isolation import close_spares

        close_spares()

    multiprocessing.util.Finalize(None, close, exitpriority=10)


def _cell_in_worker(ref: TaskRef, sub, config, path: str, old):
    return run_cell(None, ref, sub, config, Path(path), old, True)


def _local_pool(config, jobs: int):
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor
    from concurrent.futures import wait as wait_futures

    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(jobs, logging.getLogger().getEffectiveLevel()))

    def submit(cell: Cell):
        return pool.submit(_cell_in_worker, cell.ref, cell.sub, config, str(cell.path), cell.old)

    def wait(handles):
        finished, _ = wait_futures(handles, return_when=FIRST_COMPLETED)
        return [(f, _result(f.result)) for f in finished]

    def close():
        pool.shutdown(wait=True, cancel_futures=True)

    return submit, wait, close


def _result(get):
    try:
        return get()
    except Exception as e:  # a worker process that died (killed, out of memory) or a harness bug in it
        raise RuntimeError(f"a grid worker failed: {type(e).__name__}: {e}") from e


# --------------------------------------------------------------------------- Ray

def _ray_pool(config, jobs: int, address: str | None):
    try:
        import ray
    except ImportError:
        raise RuntimeError("--executor ray needs Ray: pip install 'attriboard[ray]' (or use --executor local)") from None
    from harness.core.provenance import REPO_ROOT

    started = False
    if not ray.is_initialized():
        env = {"env_vars": {"PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false",
                            **{k: v for k, v in os.environ.items() if k.startswith(("HF_", "TRANSFORMERS_"))}}}
        if address:
            ray.init(address=address, runtime_env=env, log_to_driver=True)
        else:
            ray.init(num_cpus=jobs, include_dashboard=False, runtime_env=env, log_to_driver=True,
                     configure_logging=False)
        started = True
    remote = ray.remote(num_cpus=1, max_retries=0)(_ray_cell)
    level = logging.getLogger().getEffectiveLevel()
    cluster_cpus = int(ray.cluster_resources().get("CPU", jobs))

    def submit(cell: Cell):
        return remote.remote(cell.ref, cell.sub, config, str(cell.path), cell.old, level, min(jobs, cluster_cpus))

    def wait(handles):
        ready, _ = ray.wait(handles, num_returns=1)
        return [(h, _result(lambda h=h: ray.get(h))) for h in ready]

    def close():
        if started:
            ray.shutdown()

    return submit, wait, close


def _ray_cell(ref: TaskRef, sub, config, path: str, old, level: int, share: int):
    global _THREAD_SHARE
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s [ray {os.getpid()}] %(name)s: %(message)s")
    _THREAD_SHARE = max(1, share)
    return run_cell(None, ref, sub, config, Path(path), old, True)
