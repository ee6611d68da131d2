"""Running a submission in its own sandboxed worker process (parent side).

:func:`open_explainer` starts a worker (:mod:`harness.sandbox.worker`) for one submission and yields an
:class:`IsolatedExplainer`: the same ``explain(bundle, batch)`` protocol as an in-process
explainer, so the runner and tasks with their own loop (fragility, sanity checks) use it
unchanged.  The worker receives only what the explainer protocol allows: the model bundle
(model, tokenizer, masked LM; re-sent whenever the bundle passed to ``explain`` is not the
one the worker holds: another object or changed parameters) and :class:`ExplainBatch`
objects.  It answers with raw attributions and its own pass counts, which are added to the
parent bundle's :class:`~harness.models.bundle.CallCounter` so that cost accounting is unchanged.

The parent enforces what the worker cannot be trusted with: a wall-time limit per call
(the worker is killed), a memory limit on the worker's process tree (RSS sampled here; the
worker is killed), a cap on what it prints and on the size of its answers, and it maps a
worker's death (signal, exit code) to a specific error.  Every failure is a
:class:`WorkerError` with the result-record ``stage`` (``timeout``, ``crash``, ``resource``,
``sandbox``, ``load``, ``explain``, ``validate-output``).  Threat model and limits:
docs/SECURITY.md.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import io
import itertools
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from harness.protocols import Attributions
from harness.core.provenance import REPO_ROOT

log = logging.getLogger(__name__)


@dataclass
class IsolationSettings:
    """Limits of a submission worker (see docs/SECURITY.md)."""

    timeout_s: float = 1800.0
    """Wall-time limit of one ``explain`` call (the worker is killed past it)."""
    startup_timeout_s: float = 300.0
    """Wall-time limit for starting the worker, loading the submission or receiving a model."""
    memory_mb: float = 16384.0
    """Limit on the RSS of the worker's process tree (sampled every ``sample_s``)."""
    address_space_mb: float | None = None
    """``RLIMIT_AS`` of the worker; default (None) ``memory_mb + 8192`` on CPU, none on CUDA."""
    output_mb: float = 16.0
    """What the worker may print (stdout + stderr) over its life; killed past it."""
    reply_mb: float = 1024.0
    """Largest answer to one call (the attributions)."""
    file_limit_mb: float = 64.0
    """``RLIMIT_FSIZE``: the largest file the worker may write (in its temporary folder)."""
    namespaces: str = "auto"
    """``auto``: Linux user/mount/net/PID namespaces when the kernel allows, else without;
    ``on``: required; ``off``: never."""
    sample_s: float = 0.05
    prestart: bool = False
    """Fork the next worker in the background while the current one runs (workers are forked
    from a fork server that has imported torch and transformers, ~0.1 s, so this rarely pays)."""
    max_processes: int = 128
    """``RLIMIT_NPROC`` inside the worker's user namespace: its processes and threads together."""
    scratch_mb: float = 256.0
    """Size of each of the worker's private tmpfs mounts (``/tmp``, ``/dev/shm``)."""
    seccomp: bool = True
    """Install the seccomp filter (:mod:`harness.sandbox.confine`); off only to debug a kernel."""
    hidden_paths: tuple[str, ...] = ()
    """Extra paths (results, caches, data folders, the secret file) the worker may not see."""

    def as_record(self) -> dict[str, Any]:
        return {"timeout_s": self.timeout_s, "memory_mb": self.memory_mb, "output_mb": self.output_mb,
                "reply_mb": self.reply_mb, "file_limit_mb": self.file_limit_mb,
                "max_processes": float(self.max_processes), "scratch_mb": self.scratch_mb}


class WorkerError(Exception):
    """A submission failed inside (or took down) its worker; ``stage`` and ``error_type``
    go into the result record's :class:`~harness.engine.records.ErrorInfo`."""

    def __init__(self, stage: str, error_type: str, message: str, traceback: str = ""):
        super().__init__(message)
        self.stage, self.error_type, self.message, self.remote_traceback = stage, error_type, message, traceback


def default_hidden_paths(*extra: str | os.PathLike | None) -> tuple[str, ...]:
    """Paths a worker never sees: task sources, generated output, the default cache, the
    shared data folder, plus ``extra`` (results/cache dirs of the run, data folders)."""
    base = [REPO_ROOT / "tasks", REPO_ROOT / "leaderboard", REPO_ROOT / ".attriboard",
            REPO_ROOT.parent / "shared" / "data"]
    out = []
    for p in [*base, *extra]:
        if p is None:
            continue
        s = str(Path(p).resolve())
        if s not in out and s != "/":
            out.append(s)
    return tuple(out)


_SIGNALS = {int(s): s.name for s in signal.Signals}


class _OutputCapture(threading.Thread):
    """Reads the worker's stdout+stderr: keeps the last ``keep`` bytes, counts all of them."""

    def __init__(self, stream, limit_bytes: int, on_exceeded, keep: int = 65536):
        super().__init__(daemon=True)
        self.stream, self.limit, self.on_exceeded = stream, limit_bytes, on_exceeded
        self.tail: collections.deque[bytes] = collections.deque()
        self.kept = 0
        self.keep = keep
        self.total = 0
        self.exceeded = False

    def run(self) -> None:
        while True:
            try:
                data = os.read(self.stream.fileno(), 65536)
            except OSError:
                return
            if not data:
                return
            self.total += len(data)
            self.tail.append(data)
            self.kept += len(data)
            while self.kept > self.keep and len(self.tail) > 1:
                self.kept -= len(self.tail.popleft())
            if self.total > self.limit and not self.exceeded:
                self.exceeded = True
                self.on_exceeded()

    def text(self, n: int = 4000) -> str:
        return b"".join(self.tail)[-n:].decode("utf-8", "replace")


def _fingerprint(bundle) -> tuple:
    """Cheap identity of what the worker must hold: the bundle and model objects and every
    parameter's storage and in-place version counter."""
    m = bundle.model
    parts: list[Any] = [id(bundle), id(m), id(bundle.tokenizer), id(getattr(bundle, "mlm", None)),
                        bundle.max_length, str(bundle.device)]
    for t in itertools.chain(m.parameters(), m.buffers()):
        parts.append((t.data_ptr(), t._version))
    return tuple(parts)


def bundle_payload(bundle) -> bytes:
    """The bundle, pickled for the worker without the parent's counting hook and counter."""
    from harness.models.bundle import CallCounter, hook_dicts

    model = bundle.model
    ids = bundle.hook_ids if hasattr(bundle, "hook_ids") else []
    saved = []
    for d in hook_dicts(model):
        for i in ids:
            if i in d:
                saved.append((d, i, d.pop(i)))
    try:
        state = {f.name: getattr(bundle, f.name) for f in dataclasses.fields(bundle) if f.init}
        state["counter"] = CallCounter()
        mlm = state.get("mlm")
        if mlm is not None and hasattr(mlm, "bind"):
            state["mlm"] = mlm.bind(None)
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        for d, i, v in saved:
            d[i] = v


class _ForkedProc:
    """A worker forked by :mod:`harness.sandbox.forkserver`: its pid and exit status come through its
    status pipe (the fork server, not this process, is its parent)."""

    def __init__(self, status_r: int, tx, rx, stdout, timeout: float):
        import select
        import struct

        self.status_r, self.tx, self.rx, self.stdout = status_r, tx, rx, stdout
        self.returncode: int | None = None
        # the watchdog thread polls while the harness waits or closes: one reader of the status
        # descriptor at a time, or one closes it under the other (EBADF, or a reused number)
        self._status_lock = threading.Lock()
        ready, _, _ = select.select([status_r], [], [], timeout)
        data = os.read(status_r, 8) if ready else b""
        if len(data) != 8:
            raise WorkerError("crash", "WorkerStartFailed", "the fork server did not start the worker")
        self.pid = struct.unpack("<q", data)[0]

    def _read_status(self, timeout: float) -> None:
        import select
        import struct

        deadline = time.monotonic() + timeout
        while True:
            with self._status_lock:
                if self.returncode is not None or self.status_r < 0:
                    return
                ready, _, _ = select.select([self.status_r], [], [], min(0.05, max(0.0, deadline - time.monotonic())))
                if ready:
                    data = os.read(self.status_r, 4)
                    self.returncode = struct.unpack("<i", data)[0] if len(data) == 4 else -signal.SIGKILL
                    os.close(self.status_r)
                    self.status_r = -1
                    return
            if time.monotonic() >= deadline:
                return

    def poll(self) -> int | None:
        self._read_status(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._read_status(timeout if timeout is not None else 1e9)
        if self.returncode is None:
            raise subprocess.TimeoutExpired("harness.sandbox.worker", timeout)
        return self.returncode

    def close(self) -> None:
        with self._status_lock:
            if self.status_r >= 0:
                os.close(self.status_r)
                self.status_r = -1


_WORKER_DIRS: list[str] = []


def worker_dirs() -> list[str]:
    """Temporary folders of every worker this process started (each is the mount point of its
    worker's own root, or its working directory without namespaces)."""
    return list(_WORKER_DIRS)


def _fork_worker(cfg: dict, preload: Sequence[str], timeout: float) -> _ForkedProc:
    from multiprocessing.connection import Connection

    from harness.sandbox import forkserver

    srv = forkserver.server(preload)
    p2c_r, p2c_w = os.pipe()
    c2p_r, c2p_w = os.pipe()
    out_r, out_w = os.pipe()
    st_r, st_w = os.pipe()
    try:
        srv.spawn({**cfg, "preload": list(preload)}, (p2c_r, c2p_w, out_w), st_w)
    except BaseException:
        for fd in (st_r, p2c_w, c2p_r, out_r):  # our ends, not yet owned by anything
            os.close(fd)
        raise
    finally:
        for fd in (p2c_r, c2p_w, out_w, st_w):  # the worker's ends: it holds its own copies
            os.close(fd)
    # Each descriptor is closed exactly once, by its owner: once wrapped, by the wrapper's
    # close() (a raw os.close here and the wrapper's own close on collection would close it
    # twice, "Bad file descriptor", or close a descriptor number reused in the meantime).
    owners: list = []
    raw = [p2c_w, c2p_r, out_r]
    try:
        tx = Connection(raw.pop(0), readable=False)
        owners.append(tx)
        rx = Connection(raw.pop(0), writable=False)
        owners.append(rx)
        out = io.FileIO(raw.pop(0), "rb")
        owners.append(out)
        return _ForkedProc(st_r, tx, rx, out, timeout)
    except BaseException:  # e.g. Ctrl-C while the fork server starts the worker
        for owner in owners:
            owner.close()
        for fd in (st_r, *raw):
            os.close(fd)
        raise


def _mpl_dir(fallback: str) -> str:
    """matplotlib's cache folder (captum imports matplotlib): the user's, when it has a font
    cache, so that workers do not rebuild it; else the worker's temporary folder."""
    d = os.environ.get("MPLCONFIGDIR") or str(Path.home() / ".cache" / "matplotlib")
    return d if any(Path(d).glob("fontlist-*.json")) else fallback


class WorkerProcess:
    """Parent handle of one worker: start, load a submission, hold a bundle, explain, close."""

    def __init__(self, settings: IsolationSettings, device_type: str = "cpu", preload: Sequence[str] = ()):
        self.settings = settings
        self.preload = list(preload)
        self.device_type = device_type
        self.proc: subprocess.Popen | None = None
        self.layers: list[str] = []
        self.peak_rss_mb = 0.0
        self.call_peak_rss_mb = 0.0
        self.peak_gpu_mb = self.call_peak_gpu_mb = self.call_gpu_s = 0.0
        self.gpu_measured = False
        self._skip_depth = 0
        self._fp: tuple | None = None
        self._dead_reason: WorkerError | None = None
        self._killed_for: WorkerError | None = None
        self._deadline: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.tmpdir = tempfile.mkdtemp(prefix="attriboard-worker-")
        _WORKER_DIRS.append(self.tmpdir)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        as_mb = s.address_space_mb
        if as_mb is None and self.device_type != "cuda":
            as_mb = s.memory_mb + 8192
        # never hide what the worker needs: the code, the interpreter, its own folder
        needed = [str(REPO_ROOT / "harness"), sys.prefix, sys.base_prefix, self.tmpdir]
        hidden = [h for h in default_hidden_paths(*s.hidden_paths)
                  if not any(n == h or n.startswith(h.rstrip("/") + "/") for n in needed)]
        mpl = _mpl_dir(self.tmpdir)
        cfg = {"namespaces": s.namespaces, "repo": str(REPO_ROOT), "root_dir": self.tmpdir,
               "hidden": hidden, "file_limit_mb": s.file_limit_mb, "address_space_mb": as_mb,
               "max_processes": s.max_processes, "scratch_mb": s.scratch_mb, "seccomp": s.seccomp,
               "device_type": self.device_type, "preload": self.preload,
               "extra_readonly": [mpl] if mpl != self.tmpdir else []}
        self.guard_cfg = {"hidden": hidden, "writable": [self.tmpdir, "/dev/null"],
                          "protected": [str(REPO_ROOT), *hidden], "exempt": [str(REPO_ROOT / ".venv")]}
        env = {k: v for k, v in os.environ.items()
               if k in ("PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                        "LD_LIBRARY_PATH", "CUDA_HOME", "NVIDIA_VISIBLE_DEVICES")}
        env.update(HOME=self.tmpdir, TMPDIR=self.tmpdir, PYTHONPATH=str(REPO_ROOT), PYTHONDONTWRITEBYTECODE="1",
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false", NUMBA_CACHE_DIR=self.tmpdir, MPLCONFIGDIR=mpl,
                   MPLBACKEND="Agg",
                   PYTHONFAULTHANDLER="1")
        cfg.update(env=env, cwd=self.tmpdir)
        self.proc = _fork_worker(cfg, self.preload, s.startup_timeout_s)
        self.tx, self.rx = self.proc.tx, self.proc.rx
        self.output = _OutputCapture(self.proc.stdout, int(s.output_mb * 2**20), self._on_output_exceeded)
        self.output.start()
        self._gpu_init()
        self._watch = threading.Thread(target=self._watchdog, daemon=True)
        self._watch.start()
        hello = self._call(None, s.startup_timeout_s, "starting the worker")
        self.layers = list(hello.get("layers", []))
        self._skip_depth = 2 if any(x.startswith("namespaces(") for x in self.layers) else 0

    def close(self) -> None:
        exited = False
        if self.proc is not None and self.proc.poll() is None and self._dead_reason is None:
            try:
                self._call(("close",), 10.0, "closing")
                self.proc.wait(timeout=5)  # a clean exit takes its whole namespace with it
                exited = True
            except (WorkerError, subprocess.TimeoutExpired):
                pass
        if not exited:
            self._kill()
        self._stop.set()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        for c in ("tx", "rx"):
            try:
                getattr(self, c).close()
            except Exception:
                pass
        if self.proc is not None and self.proc.stdout is not None:
            self.output.join(timeout=2)
            self.proc.stdout.close()
            self.proc.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def _kill(self) -> None:
        if self.proc is None:
            return
        import psutil

        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            kids = []
        for kill in (os.killpg, os.kill):  # its session, and itself (before it called setsid)
            try:
                kill(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for k in kids:
            try:
                k.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(kids, timeout=5)  # gone when this returns, not just signalled

    def _kill_for(self, err: WorkerError) -> None:
        with self._lock:
            if self._killed_for is None:
                self._killed_for = err
        self._kill()

    def _on_output_exceeded(self) -> None:
        self._kill_for(WorkerError("resource", "OutputLimitExceeded",
                                   f"the submission printed more than {self.settings.output_mb:g} MB to "
                                   f"stdout/stderr; the worker was killed"))

    # -- measurement from outside ----------------------------------------------------------
    def _procs(self) -> list:
        """The worker's processes, measured from here: with namespaces, the sandboxed process
        (PID 1 of its namespace) and everything below it; the two waiting harness processes
        above it are left out.  Without namespaces, the whole tree."""
        import psutil

        try:
            level = [psutil.Process(self.proc.pid)]
        except psutil.Error:
            return []
        out, depth = [], 0
        while level:
            if depth >= self._skip_depth:
                out += level
            nxt = []
            for p in level:
                try:
                    nxt += p.children()
                except psutil.Error:
                    pass
            level, depth = nxt, depth + 1
        return out

    def tree_cpu_s(self) -> tuple[float, float]:
        """CPU seconds of the worker's processes, two ways: ``(ticks, fine)``.

        ``ticks`` is user + system time of each process and of its reaped children, in clock
        ticks (10 ms), which also holds threads that have already exited.  ``fine`` is the
        nanosecond run time (``/proc/PID/task/TID/schedstat``) of the threads alive now, plus
        the reaped children.  A call's CPU is the larger of the two differences
        (:meth:`cpu_between`): fine enough for a 3 ms call, and a thread that burns CPU and
        exits before the second reading is still counted by the ticks.
        """
        import psutil

        ticks = fine = 0.0
        for p in self._procs():
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            reaped = t.children_user + t.children_system
            ticks += t.user + t.system + reaped
            live = 0.0
            try:
                for tid in os.listdir(f"/proc/{p.pid}/task"):
                    with open(f"/proc/{p.pid}/task/{tid}/schedstat") as f:
                        live += int(f.read().split()[0]) / 1e9
            except (OSError, ValueError, IndexError):
                live = t.user + t.system  # no schedstat here: the ticks
            fine += live + reaped
        return ticks, fine

    @staticmethod
    def cpu_between(before: tuple[float, float], after: tuple[float, float]) -> float:
        return max(0.0, after[0] - before[0], after[1] - before[1])

    def tree_hwm_mb(self) -> float:
        """The largest kernel-kept peak RSS (VmHWM) of the worker's processes; the worker cannot
        reset it (its /proc is read-only)."""
        best = 0.0
        for p in self._procs():
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            best = max(best, int(line.split()[1]) / 1024)
            except (OSError, ValueError):
                pass
        return best

    def _gpu_init(self) -> None:
        self.gpu_measured = False
        if self.device_type != "cuda":
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._gpu_handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self.gpu_measured = True
        except Exception as e:  # noqa: BLE001 - no NVML: GPU figures are recorded as not measured
            log.info("NVML unavailable (%s): GPU memory and time of workers are not measured", e)

    def _gpu_sample(self, pids: set[int], dt: float) -> None:
        nv = self._nvml
        used, busy = 0, 0.0
        for h in self._gpu_handles:
            try:
                for p in nv.nvmlDeviceGetComputeRunningProcesses(h):
                    if p.pid in pids and p.usedGpuMemory:
                        used += p.usedGpuMemory
            except nv.NVMLError:
                pass
            try:
                ts = int((time.time() - max(dt, 1.0)) * 1e6)
                for u in nv.nvmlDeviceGetProcessUtilization(h, ts):
                    if u.pid in pids:
                        busy = max(busy, u.smUtil / 100.0)
            except nv.NVMLError:
                pass
        mb = used / 2**20
        self.call_peak_gpu_mb = max(self.call_peak_gpu_mb, mb)
        self.peak_gpu_mb = max(self.peak_gpu_mb, mb)
        self.call_gpu_s += busy * dt  # SM-busy seconds: NVML's sampled utilisation times the interval

    def _watchdog(self) -> None:
        import psutil

        limit = self.settings.memory_mb
        last = time.monotonic()
        while not self._stop.wait(self.settings.sample_s):
            if self.proc.poll() is not None:
                return
            rss = 0
            procs = self._procs()
            for i, p in enumerate(procs):
                try:  # the worker's RSS, plus only the unique memory of what it forked (no COW double count)
                    rss += p.memory_info().rss if i == 0 else p.memory_full_info().uss
                except psutil.Error:
                    pass
            mb = rss / 2**20
            self.peak_rss_mb = max(self.peak_rss_mb, mb)
            self.call_peak_rss_mb = max(self.call_peak_rss_mb, mb)
            now = time.monotonic()
            if self.gpu_measured:
                self._gpu_sample({p.pid for p in procs}, now - last)
            last = now
            if mb > limit:
                self._kill_for(WorkerError("resource", "MemoryLimitExceeded",
                                           f"the worker used {mb:.0f} MB of memory (limit {limit:g} MB); it was killed"))
                return
            dl = self._deadline
            if dl is not None and time.monotonic() > dl:
                self._kill_for(WorkerError("timeout", "Timeout", self._timeout_msg))
                return

    # -- calls ------------------------------------------------------------------------------
    def _death(self, what: str) -> WorkerError:
        if self._killed_for is not None:
            err = self._killed_for
        else:
            try:
                rc = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._kill()
                rc = self.proc.wait(timeout=5)
            if rc < 0:
                name = _SIGNALS.get(-rc, f"signal {-rc}")
                hint = {"SIGSEGV": " (segmentation fault)", "SIGKILL": " (possibly the kernel's out-of-memory killer)",
                        "SIGABRT": " (abort)", "SIGBUS": " (bus error)"}.get(name, "")
                err = WorkerError("crash", "WorkerCrashed", f"the worker was killed by {name}{hint} while {what}")
            else:
                err = WorkerError("crash", "WorkerExited",
                                  f"the worker exited with code {rc} while {what} (os._exit or an uncaught exit)")
        out = self.output.text() if hasattr(self, "output") else ""
        if out and not err.remote_traceback:
            err.remote_traceback = f"worker output (last lines):\n{out}"
        self._dead_reason = err
        return err

    def _recv(self) -> tuple[dict, list[np.ndarray]]:
        """One reply, checked against :mod:`harness.sandbox.replies` before anything is allocated
        or believed (raises ReplyError)."""
        from harness.sandbox.replies import ReplyError, parse_array, parse_header

        budget = int(self.settings.reply_mb * 2**20)
        raw = self.rx.recv_bytes(min(budget, 2**20))
        header = parse_header(raw)
        arrays, used = [], len(raw)
        for _ in range(header.n_arrays):
            if used >= budget:
                raise ReplyError(f"the answer exceeds {self.settings.reply_mb:g} MB")
            data = self.rx.recv_bytes(max(1, budget - used))
            used += len(data)
            arrays.append(parse_array(data))
        return header.model_dump(), arrays

    def _call(self, msg, timeout: float, what: str) -> tuple[dict, list] | dict:
        if self._dead_reason is not None:
            raise self._dead_reason
        self._timeout_msg = f"{what} took longer than {timeout:g} s; the worker was killed"
        self.call_peak_rss_mb = self.call_peak_gpu_mb = self.call_gpu_s = 0.0
        try:
            if msg is not None:
                self.tx.send_bytes(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))
            self._deadline = time.monotonic() + timeout
            while not self.rx.poll(0.05):
                if self._killed_for is not None or self.proc.poll() is not None:
                    raise self._death(what)
                if time.monotonic() > self._deadline:
                    self._kill_for(WorkerError("timeout", "Timeout", self._timeout_msg))
                    raise self._death(what)
            header, arrays = self._recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            raise self._death(what) from None
        except OSError as e:
            if "bad message length" in str(e) or "message too long" in str(e).lower():
                self._kill_for(WorkerError("resource", "OutputLimitExceeded",
                                           f"the worker's answer while {what} exceeded {self.settings.reply_mb:g} MB"))
            raise self._death(what) from None
        except (ValueError, KeyError, TypeError, RecursionError, OverflowError, MemoryError) as e:
            self._kill_for(WorkerError("crash", "ProtocolError",
                                       f"malformed answer from the worker while {what}: {str(e)[:500]}"))
            raise self._death(what) from None
        finally:
            self._deadline = None
        if self._killed_for is not None:
            raise self._death(what)
        if header["kind"] == "error":
            raise WorkerError(header["stage"], header["type"], header["message"], header["traceback"])
        expect = {None: ("ready",), "close": ("closed",), "explain": ("result", "bad-output")}.get(
            None if msg is None else msg[0], ("ok",))
        if header["kind"] not in expect:
            self._kill_for(WorkerError("crash", "ProtocolError", f"the worker answered {header['kind']!r} while {what}"))
            raise self._death(what)
        return (header, arrays) if msg is not None and msg[0] == "explain" else header

    def load(self, sub) -> None:
        import torch

        self._call(("load", {"meta": sub.meta.model_dump(mode="json"), "path": str(sub.path),
                             "files": submission_files(sub.path),
                             "code_hash": sub.code_hash, "threads": torch.get_num_threads(),
                             "guard": self.guard_cfg}),
                   self.settings.startup_timeout_s, "loading the submission")

    def ensure_bundle(self, bundle) -> None:
        fp = _fingerprint(bundle)
        if fp == self._fp:
            return
        self._call(("bundle", bundle_payload(bundle)), self.settings.startup_timeout_s, "receiving the model")
        self._fp = fp

    def explain(self, bundle, batch) -> tuple[Attributions, dict]:
        from harness.core.outputs import OutputError

        self.ensure_bundle(bundle)
        cpu = dataclasses.replace(batch, **{f.name: getattr(batch, f.name).cpu() for f in dataclasses.fields(batch)
                                            if hasattr(getattr(batch, f.name), "cpu")})
        cpu0, t0 = self.tree_cpu_s(), time.perf_counter()
        header, arrays = self._call(("explain", cpu), self.settings.timeout_s, "running explain()")
        wall, cpu_s = time.perf_counter() - t0, self.cpu_between(cpu0, self.tree_cpu_s())
        if header["kind"] == "bad-output":
            raise OutputError(header["message"])
        n_scores, names = header["n_scores"], list(header["extras"])
        if len(arrays) != n_scores + len(names) or (header["scores_kind"] == "array" and n_scores != 1):
            self._kill_for(WorkerError("crash", "ProtocolError", "the worker sent a wrong number of arrays"))
            raise self._death("running explain()")
        scores = arrays[0] if header["scores_kind"] == "array" else list(arrays[:n_scores])
        attr = Attributions(level=header["level"], scores=scores, extras=dict(zip(names, arrays[n_scores:])))
        counts = {k: header[k] for k in ("forward", "backward", "mlm")}
        c = bundle.counter
        c.forward += counts["forward"]
        c.backward += counts["backward"]
        c.mlm += counts["mlm"]
        hwm = self.tree_hwm_mb()
        self.peak_rss_mb = max(self.peak_rss_mb, self.call_peak_rss_mb, hwm)
        info = {  # measured here, from outside the worker
            "wall_s": wall, "cpu_s": cpu_s, "peak_rss_mb": max(self.call_peak_rss_mb, hwm),
            "peak_gpu_mb": self.call_peak_gpu_mb if self.gpu_measured else None,
            "gpu_s": self.call_gpu_s if self.gpu_measured else None,
            # the worker's own figures: self-reported
            "reported": {"seconds": header["seconds"], "peak_rss_mb": header["peak_rss_mb"],
                         "peak_cuda_mb": header["peak_cuda_mb"], **counts}}
        return attr, info


def submission_files(path: Path) -> dict[str, bytes]:
    """The submission folder's files (relative path -> bytes), sent to the worker, which
    imports them from its own scratch space: the worker never needs to see the folder (it
    may lie anywhere, e.g. in a 0700 temporary folder).  The same files :func:`hash_tree`
    hashes (:func:`~harness.core.provenance.walk_tree`: caches skipped, links never followed, one
    that leaves the folder refused); a link to a file inside the folder is sent as a copy of
    that file; at most :data:`~harness.core.provenance.MAX_HASH_BYTES` in all."""
    from harness.core.provenance import MAX_HASH_BYTES, TreeError, walk_tree

    root = Path(path)
    try:
        files, links = walk_tree(root)
    except (TreeError, OSError) as e:
        raise WorkerError("load", "SubmissionError", str(e)) from None
    out: dict[str, bytes] = {}
    total = 0
    for f in sorted(files + [link for link in links if link.resolve().is_file()]):
        data = f.resolve().read_bytes()
        total += len(data)
        if total > MAX_HASH_BYTES:
            raise WorkerError("load", "SubmissionError",
                              f"the submission folder holds more than {MAX_HASH_BYTES / 2**20:g} MB")
        out[str(f.relative_to(root))] = data
    return out


class IsolatedExplainer:
    """Proxy with the explainer protocol: every ``explain`` runs in the worker."""

    def __init__(self, worker: WorkerProcess, name: str, version: str):
        self.worker, self.name, self.version = worker, name, version
        self.last_call: dict[str, Any] = {}
        self.totals: dict[str, float] = {"calls": 0, "wall_s": 0.0, "cpu_s": 0.0, "gpu_s": 0.0, "reported_s": 0.0}

    def explain(self, model, batch) -> Attributions:
        attr, self.last_call = self.worker.explain(model, batch)
        t, c = self.totals, self.last_call
        t["calls"] += 1
        t["wall_s"] += c["wall_s"]
        t["cpu_s"] += c["cpu_s"]
        t["gpu_s"] += c["gpu_s"] or 0.0
        t["reported_s"] += c["reported"]["seconds"]
        return attr

    @property
    def peak_rss_mb(self) -> float:
        return self.worker.peak_rss_mb

    @property
    def layers(self) -> list[str]:
        return self.worker.layers


def _preload(bundle) -> list[str]:
    """Modules the worker imports while starting (the model's classes), so that receiving
    the model is quick."""
    if bundle is None:
        return []
    objs = [bundle.model, bundle.tokenizer, getattr(bundle, "mlm", None),
            getattr(getattr(bundle, "mlm", None), "model", None)]
    return sorted({type(o).__module__ for o in objs if o is not None})


class _SparePool:
    """At most one pre-started, not yet used worker per configuration (settings, device,
    preloaded modules).  A spare has loaded no submission: it is the same clean process a
    fresh start would give."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spares: dict[tuple, tuple[threading.Thread, dict]] = {}

    @staticmethod
    def _start(settings, device_type, preload, box) -> None:
        w = WorkerProcess(settings, device_type, preload)
        try:
            w.start()
            box["worker"] = w
        except Exception as e:  # the caller starts a fresh one and sees the error itself
            box["error"] = e
            w.close()

    def take(self, settings: IsolationSettings, device_type: str, preload: Sequence[str]) -> WorkerProcess:
        key = (repr(settings), device_type, tuple(preload))
        with self._lock:
            entry = self._spares.pop(key, None)
        w = None
        if entry is not None:
            entry[0].join()
            w = entry[1].get("worker")
            if w is not None and (w.proc.poll() is not None or w._killed_for is not None):
                w.close()
                w = None
        if w is None:
            w = WorkerProcess(settings, device_type, preload)
            try:
                w.start()
            except BaseException:
                w.close()
                raise
        if settings.prestart:
            box: dict = {}
            t = threading.Thread(target=self._start, args=(settings, device_type, list(preload), box), daemon=True)
            with self._lock:
                old = self._spares.pop(key, None)
                self._spares[key] = (t, box)
            t.start()
            if old is not None:  # pragma: no cover - two takes raced
                old[0].join()
                if old[1].get("worker") is not None:
                    old[1]["worker"].close()
        return w

    def close(self) -> None:
        with self._lock:
            entries, self._spares = list(self._spares.values()), {}
        for t, box in entries:
            t.join()
            if box.get("worker") is not None:
                box["worker"].close()


_SPARES = _SparePool()
atexit.register(_SPARES.close)


def close_spares() -> None:
    """Kill the pre-started workers (the runner calls this when a grid ends)."""
    _SPARES.close()


@contextmanager
def open_explainer(sub, settings: IsolationSettings | None = None, bundle=None,
                   device_type: str | None = None) -> Iterator[IsolatedExplainer]:
    """Start a worker, load ``sub`` in it and yield the proxy; the worker (and anything it
    started) is killed on exit.  ``bundle``: the model it will explain first (its classes
    are imported while the worker starts; its device decides the address-space limit).
    Raises :class:`WorkerError` (stage ``load``, ``crash``, ``timeout``, ``resource`` or
    ``sandbox``) when the submission cannot be loaded."""
    if device_type is None:
        device_type = bundle.device.type if bundle is not None else "cpu"
    w = _SPARES.take(settings or IsolationSettings(), device_type, _preload(bundle))
    try:
        w.load(sub)
        yield IsolatedExplainer(w, sub.name, sub.meta.version)
    finally:
        w.close()


def forkserver_pid() -> int | None:
    """The pid of the (first) fork server (None before the first worker): workers are its children."""
    from harness.sandbox import forkserver

    pids = forkserver.server_pids()
    return pids[0] if pids else None


def worker_layers(settings: IsolationSettings | None = None) -> list[str]:
    """Which containment layers a worker gets on this machine (starts one, ~seconds)."""
    w = WorkerProcess(settings or IsolationSettings())
    try:
        w.start()
        return list(w.layers)
    finally:
        w.close()


__all__: Sequence[str] = ("IsolationSettings", "WorkerError", "IsolatedExplainer", "open_explainer",
                          "bundle_payload", "default_hidden_paths", "worker_layers", "close_spares")
