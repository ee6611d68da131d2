"""Running a submission in its own sandboxed worker process (parent side).

:func:`open_explainer` starts a worker (:mod:`harness.worker`) for one submission and yields an
:class:`IsolatedExplainer`: the same ``explain(bundle, batch)`` protocol as an in-process
explainer, so the runner and tasks with their own loop (fragility, sanity checks) use it
unchanged.  The worker receives only what the explainer protocol allows: the model bundle
(model, tokenizer, masked LM; re-sent whenever the bundle passed to ``explain`` is not the
one the worker holds: another object or changed parameters) and :class:`ExplainBatch`
objects.  It answers with raw attributions and its own pass counts, which are added to the
parent bundle's :class:`~harness.bundle.CallCounter` so that cost accounting is unchanged.

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
from harness.provenance import REPO_ROOT

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
    hidden_paths: tuple[str, ...] = ()
    """Extra paths (results, caches, data folders, the secret file) the worker may not see."""

    def as_record(self) -> dict[str, Any]:
        return {"timeout_s": self.timeout_s, "memory_mb": self.memory_mb, "output_mb": self.output_mb,
                "reply_mb": self.reply_mb, "file_limit_mb": self.file_limit_mb}


class WorkerError(Exception):
    """A submission failed inside (or took down) its worker; ``stage`` and ``error_type``
    go into the result record's :class:`~harness.records.ErrorInfo`."""

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
    from harness.bundle import CallCounter

    model = bundle.model
    hook = getattr(bundle, "_hook", None)
    saved = []
    if hook is not None:
        for d in (model._forward_hooks, getattr(model, "_forward_hooks_with_kwargs", {}),
                  getattr(model, "_forward_hooks_always_called", {})):
            if hook.id in d:
                saved.append((d, d.pop(hook.id)))
    try:
        state = {f.name: getattr(bundle, f.name) for f in dataclasses.fields(bundle) if f.init}
        state["counter"] = CallCounter()
        mlm = state.get("mlm")
        if mlm is not None and hasattr(mlm, "bind"):
            state["mlm"] = mlm.bind(None)
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        for d, v in saved:
            d[hook.id] = v


class _ForkedProc:
    """A worker forked by the fork server, with the parts of ``subprocess.Popen`` used here."""

    def __init__(self, process, tx, rx, stdout):
        self.process, self.tx, self.rx, self.stdout = process, tx, rx, stdout
        self.pid = process.pid

    def poll(self) -> int | None:
        return self.process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired("harness.worker", timeout)
        return self.process.exitcode


_FORKSERVER_LOCK = threading.Lock()
_WORKER_DIRS: list[str] = []


def worker_dirs() -> list[str]:
    """Temporary folders of every worker this process started (each is its worker's working
    directory, inherited by anything the worker forks: tests look for survivors by it)."""
    return list(_WORKER_DIRS)


def _forkserver(preload: Sequence[str]):
    """The fork server workers are forked from: a fresh interpreter (not a fork of this
    one: it never held gold data) that has imported torch, transformers and the model's
    classes once, started with a scrubbed environment (no secret).  Forking it takes
    milliseconds where a new interpreter takes seconds."""
    import multiprocessing
    import multiprocessing.forkserver as fs

    from harness import worker

    ctx = multiprocessing.get_context("forkserver")
    with _FORKSERVER_LOCK:
        if fs._forkserver._forkserver_pid is None:
            ctx.set_forkserver_preload(["harness.worker", *worker.PRELOAD, *preload])
            keep = {k: v for k, v in os.environ.items()
                    if k in ("PATH", "LANG", "LC_ALL", "HOME", "CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH", "CUDA_HOME",
                             "NVIDIA_VISIBLE_DEVICES", "VIRTUAL_ENV", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
                    or k.startswith(("HF_", "TRANSFORMERS_"))}
            saved = dict(os.environ)
            os.environ.clear()
            os.environ.update(keep, PYTHONDONTWRITEBYTECODE="1", TOKENIZERS_PARALLELISM="false")
            try:
                fs.ensure_running()
            finally:
                os.environ.clear()
                os.environ.update(saved)
    return ctx


def _fork_worker(cfg: dict, preload: Sequence[str]) -> _ForkedProc:
    from harness import worker

    ctx = _forkserver(preload)
    p2c_r, p2c_w = ctx.Pipe(duplex=False)
    c2p_r, c2p_w = ctx.Pipe(duplex=False)
    out_r, out_w = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=worker.forked_main, args=(cfg, p2c_r, c2p_w, out_w), daemon=True,
                       name="attriboard-worker")
    import types

    # multiprocessing would re-run this program's main script in the worker: give it none
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        proc.start()
    finally:
        if main is not None:
            sys.modules["__main__"] = main
    for c in (p2c_r, c2p_w, out_w):
        c.close()
    return _ForkedProc(proc, p2c_w, c2p_r, out_r)


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
        cfg = {"namespaces": s.namespaces, "readonly": [str(REPO_ROOT)],
               "hidden": hidden, "file_limit_mb": s.file_limit_mb, "address_space_mb": as_mb,
               "preload": self.preload}
        self.guard_cfg = {"hidden": hidden, "writable": [self.tmpdir, "/dev/null", "/dev/shm"],
                          "protected": [str(REPO_ROOT), *hidden], "exempt": [str(REPO_ROOT / ".venv")]}
        env = {k: v for k, v in os.environ.items()
               if k in ("PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                        "LD_LIBRARY_PATH", "CUDA_HOME", "NVIDIA_VISIBLE_DEVICES")}
        env.update(HOME=self.tmpdir, TMPDIR=self.tmpdir, PYTHONPATH=str(REPO_ROOT), PYTHONDONTWRITEBYTECODE="1",
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false", NUMBA_CACHE_DIR=self.tmpdir, MPLCONFIGDIR=_mpl_dir(self.tmpdir),
                   MPLBACKEND="Agg",
                   PYTHONFAULTHANDLER="1")
        cfg.update(env=env, cwd=self.tmpdir)
        self.proc = _fork_worker(cfg, self.preload)
        self.tx, self.rx = self.proc.tx, self.proc.rx
        self.output = _OutputCapture(self.proc.stdout, int(s.output_mb * 2**20), self._on_output_exceeded)
        self.output.start()
        self._watch = threading.Thread(target=self._watchdog, daemon=True)
        self._watch.start()
        hello = self._call(None, s.startup_timeout_s, "starting the worker")
        self.layers = list(hello.get("layers", []))

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None and self._dead_reason is None:
            try:
                self._call(("close",), 10.0, "closing")
            except WorkerError:
                pass
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
            self.proc.process.close()
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

    def _watchdog(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
        except psutil.Error:
            return
        limit = self.settings.memory_mb
        while not self._stop.wait(self.settings.sample_s):
            if self.proc.poll() is not None:
                return
            try:
                procs = [root, *root.children(recursive=True)]
                rss = 0
                for p in procs:
                    try:
                        rss += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                continue
            mb = rss / 2**20
            self.peak_rss_mb = max(self.peak_rss_mb, mb)
            self.call_peak_rss_mb = max(self.call_peak_rss_mb, mb)
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
        budget = int(self.settings.reply_mb * 2**20)
        raw = self.rx.recv_bytes(min(budget, 2**20))
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise ValueError("reply header is not an object")
        n = int(header.get("n_arrays", 0))
        if not 0 <= n <= 1_000_000:
            raise ValueError(f"implausible number of arrays {n}")
        arrays, used = [], len(raw)
        for _ in range(n):
            data = self.rx.recv_bytes(max(1, budget - used))
            used += len(data)
            arrays.append(np.lib.format.read_array(io.BytesIO(data), allow_pickle=False))
        return header, arrays

    def _call(self, msg, timeout: float, what: str) -> tuple[dict, list] | dict:
        if self._dead_reason is not None:
            raise self._dead_reason
        self._timeout_msg = f"{what} took longer than {timeout:g} s; the worker was killed"
        self.call_peak_rss_mb = 0.0
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
        except (ValueError, KeyError, TypeError) as e:
            self._kill_for(WorkerError("crash", "ProtocolError", f"malformed answer from the worker while {what}: {e}"))
            raise self._death(what) from None
        finally:
            self._deadline = None
        if self._killed_for is not None:
            raise self._death(what)
        if header.get("kind") == "error":
            raise WorkerError(str(header.get("stage", "explain")), str(header.get("type", "Error"))[:100],
                              str(header.get("message", ""))[:4000], str(header.get("traceback", ""))[-8000:])
        return (header, arrays) if msg is not None and msg[0] == "explain" else header

    def load(self, sub) -> None:
        import torch

        self._call(("load", {"meta": sub.meta.model_dump(mode="json"), "path": str(sub.path),
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
        from harness.outputs import OutputError

        self.ensure_bundle(bundle)
        cpu = dataclasses.replace(batch, **{f.name: getattr(batch, f.name).cpu() for f in dataclasses.fields(batch)
                                            if hasattr(getattr(batch, f.name), "cpu")})
        header, arrays = self._call(("explain", cpu), self.settings.timeout_s, "running explain()")
        if header.get("kind") == "bad-output":
            raise OutputError(str(header.get("message", "invalid output"))[:2000])
        n_scores = int(header["n_scores"])
        names = [str(n) for n in header.get("extras", [])]
        if len(arrays) != n_scores + len(names):
            raise WorkerError("crash", "ProtocolError", "the worker sent a wrong number of arrays")
        scores = arrays[0] if header.get("scores_kind") == "array" else list(arrays[:n_scores])
        attr = Attributions(level=str(header.get("level")), scores=scores,
                            extras=dict(zip(names, arrays[n_scores:])))
        counts = {}
        for k in ("forward", "backward", "mlm"):
            v = header.get(k, 0)
            counts[k] = int(v) if isinstance(v, int) and v >= 0 else 0
        c = bundle.counter
        c.forward += counts["forward"]
        c.backward += counts["backward"]
        c.mlm += counts["mlm"]
        info = {"seconds": header.get("seconds"), "peak_rss_mb": max(self.call_peak_rss_mb, _num(header.get("peak_rss_mb"))),
                "peak_cuda_mb": header.get("peak_cuda_mb") if isinstance(header.get("peak_cuda_mb"), (int, float)) else None,
                **counts}
        self.peak_rss_mb = max(self.peak_rss_mb, info["peak_rss_mb"])
        return attr, info


def _num(x) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else 0.0


class IsolatedExplainer:
    """Proxy with the explainer protocol: every ``explain`` runs in the worker."""

    def __init__(self, worker: WorkerProcess, name: str, version: str):
        self.worker, self.name, self.version = worker, name, version
        self.last_call: dict[str, Any] = {}

    def explain(self, model, batch) -> Attributions:
        attr, self.last_call = self.worker.explain(model, batch)
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
    """The fork server's pid (None before the first worker): workers are its children."""
    import multiprocessing.forkserver as fs

    return fs._forkserver._forkserver_pid


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
