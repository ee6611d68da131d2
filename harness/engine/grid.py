"""Executors of the run grid: serial, local worker processes, Ray.

The cells themselves (what one runs, what it returns, what the driver writes) are
:func:`harness.engine.runner.run_grid`'s; this module only runs jobs and schedules them.

A **cell** is one submission on one prepared task.  Cells are independent except that a
composite submission (an ensemble) waits for its members on the same task, whose cached maps
it reads (:func:`harness.engine.runner.composite_members`).  Three executors run the same
cell function, :func:`run_cell`, so their records are identical (timing aside):

- ``local`` with ``jobs=1`` (the default): in this process, one cell after another;
- ``local`` with ``jobs=N > 1``: N local worker processes (spawned), each keeping the
  prepared tasks it used last and given the next cells of those tasks (:func:`pick`), so a
  task is prepared in one process unless another would otherwise idle; torch's CPU threads
  are shared out (cores // N);
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
    group: Any = None
    """Jobs of one group share a preparation (the cells of one task): a local worker process that
    prepared a group is given that group's next jobs (:func:`pick`)."""


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
        # Ray places its tasks itself: the slot a job is given means nothing there
        _schedule(longest_first(jobs_list), jobs, submit, wait, take, affinity=executor == "local")
    finally:
        close()


def longest_first(jobs_list: Sequence[Job]) -> list[Job]:
    """Start order of a parallel run: the jobs with the largest expected cost first (the long
    cells then do not end up alone at the end); jobs of unknown cost after them, in their
    given order.  Dependencies still hold: a job starts only after those it waits for."""
    known = sorted((j for j in jobs_list if j.cost is not None), key=lambda j: (-j.cost, j.index))
    return known + [j for j in jobs_list if j.cost is None]


def pick(ready: Sequence[Job], slot: int, groups: Sequence[set]) -> Job:
    """The job a free worker ``slot`` runs next, from the ``ready`` jobs in start order, given
    the groups each slot has prepared (``groups[slot]``): the first of a group this slot
    prepared; else the first of a group no other slot prepared (a new preparation, not a
    second one); else the first (a second preparation beats an idle worker)."""
    mine = groups[slot]
    for j in ready:
        if j.group is not None and j.group in mine:
            return j
    others = set().union(*(g for i, g in enumerate(groups) if i != slot))
    return next((j for j in ready if j.group is None or j.group not in others), ready[0])


def _schedule(pending: list[Job], jobs: int, submit, wait, take, affinity: bool = False) -> None:
    """Keep ``jobs`` slots busy: ``submit(job, slot)`` returns a handle, ``wait(handles)``
    yields (handle, result) pairs as jobs finish.  A job is ready once the jobs it waits for
    were taken; with ``affinity`` a free slot takes :func:`pick`'s job (its own groups first),
    else the first ready job in start order."""
    done: set[int] = set()
    running: dict[Any, tuple[Job, int]] = {}
    free = list(range(jobs))
    groups: list[set] = [set() for _ in range(jobs)]
    total = len(pending)
    while pending or running:
        while free:
            ready = [j for j in pending if all(a in done for a in j.after)]
            if not ready:
                break
            slot = free.pop(0)
            job = pick(ready, slot, groups) if affinity else ready[0]
            pending.remove(job)
            if job.group is not None:
                groups[slot].add(job.group)
            running[submit(job, slot)] = (job, slot)
            log.info("[%d/%d] %s: started", job.index + 1, total, job.label)
        if not running:  # pragma: no cover - a job waiting for one that is not in the list
            raise RuntimeError(f"jobs wait for jobs that never run: {[j.label for j in pending]}")
        for handle, result in wait(list(running)):
            job, slot = running.pop(handle)
            free.append(slot)
            take(job, result)
            done.add(job.index)


def _result(get):
    try:
        return get()
    except Exception as e:  # a worker process that died (killed, out of memory) or a harness bug in it
        raise RuntimeError(f"a grid worker failed: {type(e).__name__}: {e}") from e


# --------------------------------------------------------------------------- local processes

def _local_pool(worker, jobs: int, initializer, initargs):
    """``jobs`` spawned worker processes, one per slot, each with its own pipe: the scheduler
    decides which process runs which job (a process keeps the tasks it prepared)."""
    import multiprocessing
    from multiprocessing.connection import wait as wait_ready

    ctx = multiprocessing.get_context("spawn")
    procs, conns = [], []
    for slot in range(jobs):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_pool_process, args=(child, worker, initializer, initargs), daemon=True,
                        name=f"attriboard-grid-{slot}")
        p.start()
        child.close()
        procs.append(p)
        conns.append(parent)

    def submit(job: Job, slot: int):
        conns[slot].send(job.args)
        return slot

    def wait(handles):
        watch = {conns[s]: s for s in handles}
        watch.update({procs[s].sentinel: s for s in handles})
        out = []
        for ready in wait_ready(list(watch)):
            s = watch[ready]
            if any(h == s for h, _ in out):
                continue
            if conns[s].poll():
                try:
                    ok, payload = conns[s].recv()
                except (EOFError, OSError) as e:
                    raise RuntimeError(f"a grid worker failed: process {procs[s].pid} died ({type(e).__name__})") from e
                if not ok:
                    raise RuntimeError(f"a grid worker failed: {payload}")
                out.append((s, payload))
            elif not procs[s].is_alive():
                raise RuntimeError(f"a grid worker failed: process {procs[s].pid} exited with code {procs[s].exitcode} "
                                   "(killed, or out of memory?)")
        return out

    def close():
        for c in conns:
            try:
                c.send(None)
            except (OSError, ValueError):
                pass
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():  # stuck in a job the run no longer waits for (the driver failed)
                p.terminate()
                p.join(timeout=5)
        for c in conns:
            c.close()

    return submit, wait, close


def _pool_process(conn, worker, initializer, initargs) -> None:
    """A local grid worker: run the jobs sent on ``conn`` (their ``args``) one at a time, answer
    (ok, result or the error's text); ``None`` ends it."""
    if initializer is not None:
        initializer(*initargs)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if msg is None:
            return
        try:
            reply = (True, worker(*msg))
        except BaseException as e:  # noqa: BLE001 - a harness bug in a cell: the driver reports it
            import traceback

            reply = (False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        try:
            conn.send(reply)
        except Exception as e:  # noqa: BLE001 - a result that cannot be sent (not picklable)
            conn.send((False, f"the result could not be sent to the driver: {type(e).__name__}: {e}"))


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

    def submit(job: Job, slot: int):
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
