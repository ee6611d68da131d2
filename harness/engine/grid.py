"""Executors of the run grid: serial, local worker processes, Ray.

The cells themselves (what one runs, what it returns, what the driver writes) are
:func:`harness.engine.runner.run_grid`'s; this module only runs jobs and schedules them.

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

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")


@dataclass
class Job:
    index: int
    label: str
    args: tuple
    """The arguments of the worker function (picklable: they cross process and node borders)."""
    after: tuple[int, ...] = ()
    """Indices of the jobs this one waits for."""
    local: Any = None
    """Whatever the serial path needs beside ``args`` (e.g. the task object itself)."""
    cost: float | None = None
    """Expected seconds (e.g. the previous record's), for longest-first scheduling; None: unknown."""


def run_jobs(jobs_list: Sequence[Job], *, serial: Callable[[Job], Any], worker: Callable, take: Callable[[Job, Any], None],
             jobs: int = 1, executor: str = "local", ray_address: str | None = None,
             initializer: Callable | None = None, initargs: tuple = ()) -> None:
    """Run every job and hand each result to ``take(job, result)`` in this process, as it comes.

    ``executor="local"`` with ``jobs=1``: ``serial(job)`` one after another here.  ``jobs > 1``:
    ``worker(*job.args)`` in ``jobs`` spawned processes (``initializer(*initargs)`` in each).
    ``executor="ray"``: ``worker(*job.args)`` as Ray tasks of one CPU each, on a local cluster
    of ``jobs`` CPUs or the cluster at ``ray_address``.  A job starts once the jobs it waits for
    were taken; at most ``jobs`` are in flight."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    jobs = max(1, int(jobs))
    if executor == "local" and jobs == 1:
        for job in jobs_list:
            take(job, serial(job))
        return
    if executor == "local":
        submit, wait, close = _local_pool(worker, jobs, initializer, initargs)
    else:
        submit, wait, close = _ray_pool(worker, jobs, ray_address, initializer, initargs)
    try:
        _schedule(longest_first(jobs_list), jobs, submit, wait, take)
    finally:
        close()


def longest_first(jobs_list: Sequence[Job]) -> list[Job]:
    """Start order of a parallel run: the jobs with the largest expected cost first (the long
    cells then do not end up alone at the end); jobs of unknown cost after them, in their
    given order.  Dependencies still hold: a job starts only after those it waits for."""
    known = sorted((j for j in jobs_list if j.cost is not None), key=lambda j: (-j.cost, j.index))
    return known + [j for j in jobs_list if j.cost is None]


def _schedule(pending: list[Job], jobs: int, submit, wait, take) -> None:
    done: set[int] = set()
    running: dict[Any, Job] = {}
    total = len(pending)
    while pending or running:
        while len(running) < jobs:
            ready = next((j for j in pending if all(a in done for a in j.after)), None)
            if ready is None:
                break
            pending.remove(ready)
            running[submit(ready)] = ready
            log.info("[%d/%d] %s: started", ready.index + 1, total, ready.label)
        if not running:  # pragma: no cover - a job waiting for one that is not in the list
            raise RuntimeError(f"jobs wait for jobs that never run: {[j.label for j in pending]}")
        for handle, result in wait(list(running)):
            job = running.pop(handle)
            take(job, result)
            done.add(job.index)


def _result(get):
    try:
        return get()
    except Exception as e:  # a worker process that died (killed, out of memory) or a harness bug in it
        raise RuntimeError(f"a grid worker failed: {type(e).__name__}: {e}") from e


# --------------------------------------------------------------------------- local processes

def _local_pool(worker, jobs: int, initializer, initargs):
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor
    from concurrent.futures import wait as wait_futures

    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=initializer, initargs=initargs)

    def submit(job: Job):
        return pool.submit(worker, *job.args)

    def wait(handles):
        finished, _ = wait_futures(handles, return_when=FIRST_COMPLETED)
        return [(f, _result(f.result)) for f in finished]

    def close():
        pool.shutdown(wait=True, cancel_futures=True)

    return submit, wait, close


# --------------------------------------------------------------------------- Ray

def _ray_pool(worker, jobs: int, address: str | None, initializer, initargs):
    try:
        import ray
    except ImportError:
        raise RuntimeError("--executor ray needs Ray: pip install 'attriboard[ray]' (or use --executor local)") from None
    from harness.core.provenance import REPO_ROOT

    started = False
    if not ray.is_initialized():
        env = {"env_vars": {"PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false",
                            **{k: v for k, v in os.environ.items()
                               if k.startswith(("HF_", "TRANSFORMERS_")) or k.endswith("_NUM_THREADS")}}}
        if address:
            ray.init(address=address, runtime_env=env, log_to_driver=True)
        else:
            ray.init(num_cpus=jobs, include_dashboard=False, runtime_env=env, log_to_driver=True,
                     configure_logging=False)
        started = True
    remote = ray.remote(num_cpus=1, max_retries=0)(_ray_job)

    def submit(job: Job):
        return remote.remote(worker, initializer, initargs, job.args)

    def wait(handles):
        ready, _ = ray.wait(handles, num_returns=1)
        return [(h, _result(lambda h=h: ray.get(h))) for h in ready]

    def close():
        if started:
            ray.shutdown()

    return submit, wait, close


_RAY_INITIALISED: set = set()


def _ray_job(worker, initializer, initargs, args):
    """One job in a Ray worker process (which may serve many): the initializer runs once per process."""
    key = (getattr(initializer, "__qualname__", None), repr(initargs))
    if initializer is not None and key not in _RAY_INITIALISED:
        initializer(*initargs)
        _RAY_INITIALISED.add(key)
    return worker(*args)
