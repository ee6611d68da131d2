"""The submission worker: one sandboxed process that runs one submission's explainer.

Forked by :mod:`harness.isolation` from a clean fork server (:func:`forked_main`), or run
standalone as ``python -m harness.worker CONFIG_JSON`` (:func:`main`); the harness process
itself never runs this.  In order, before any submission code runs:

1. **Namespaces** (Linux, where unprivileged user namespaces work): new user, mount, network
   and PID namespaces.  The process forks; the child is PID 1 of the new PID namespace (when
   it exits the kernel kills every process left in it, so children cannot outlive it), has
   no network (only a loopback that is down), sees a fresh ``/proc`` (no harness process to
   read), sees the repository read-only and the hidden paths (task sources, results,
   caches, data folders, the secret file) as empty read-only folders.  The outer process
   only waits and passes the child's exit status on.
2. **Limits**: ``RLIMIT_CORE`` 0, ``RLIMIT_FSIZE`` (files it may write), ``RLIMIT_AS``
   (address space; CPU runs only, CUDA needs a large address space).
3. **Imports** (:data:`PRELOAD`: torch, transformers, the harness's explainer helpers; the
   fork server has done them already), the same in every worker, then ``ready``.
4. **Guard** (:class:`Guard`, a ``sys.addaudithook`` hook plus an import blocker): refuses
   opening hidden paths, writing outside the worker's temporary folder, importing the
   modules that hold or score gold data (``tasks``, ``harness.runner``, ``harness.task``,
   the metric modules, ...), sockets, process creation, signals to other processes, and
   records every refusal; a call during which anything was refused fails with stage
   ``sandbox`` even when the submission caught the error.

Protocol: the parent sends pickled messages (trusted direction); the worker answers with a
JSON header followed by ``.npy`` frames (``allow_pickle=False``), so nothing the submission
controls is ever unpickled by the harness.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import signal
import sys
import time
import traceback

# -- kernel-level sandbox ------------------------------------------------------------------

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18)
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _mount(libc, src, target, fstype, flags, data=None) -> None:
    enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
    if libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def _mount_points_under(root: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == root or mp.startswith(root.rstrip("/") + "/"):
                out.append(mp)
    return out


def enter_namespaces(cfg: dict) -> list[str]:
    """Unshare user/mount/net/PID namespaces and fork; returns in the child (PID 1 of the new
    PID namespace) with the list of layers set up.  The outer process never returns."""
    libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")
    pid = os.fork()
    if pid:  # outer process: wait, then exit the way the child did
        signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:  # pragma: no cover
                continue
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1
        os._exit(code)
    # child: PID 1 of the new namespace; dies with the outer process
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    layers = ["namespaces(user,mount,net,pid)"]
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    try:
        _mount(libc, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        layers.append("private-proc")
    except OSError:
        pass
    ro_done = []
    for root in cfg.get("readonly", []):
        if not os.path.isdir(root):
            continue
        try:
            _mount(libc, root, root, None, MS_BIND | MS_REC)
            for mp in _mount_points_under(root):
                _mount(libc, None, mp, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
            ro_done.append(root)
        except OSError:
            pass
    if ro_done:
        layers.append("readonly-repo")
    hidden = 0
    for path in cfg.get("hidden", []):
        try:
            if os.path.isdir(path):
                _mount(libc, "tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555")
                hidden += 1
            elif os.path.isfile(path):
                _mount(libc, "/dev/null", path, None, MS_BIND)
                hidden += 1
        except OSError:
            pass
    if hidden:
        layers.append("hidden-paths")
    return layers


def set_limits(cfg: dict) -> list[str]:
    import resource

    layers = []
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    fsize = int(cfg.get("file_limit_mb", 64)) * 2**20
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    layers.append("rlimit-fsize")
    as_mb = cfg.get("address_space_mb")
    if as_mb:
        resource.setrlimit(resource.RLIMIT_AS, (int(as_mb) * 2**20, int(as_mb) * 2**20))
        layers.append("rlimit-as")
    return layers


# -- the Python-level guard ------------------------------------------------------------------

#: Modules that hold, produce or score gold data, or write results: never importable in a worker.
BLOCKED_MODULES = ("tasks", "harness.runner", "harness.task", "harness.metrics", "harness.plausibility_metrics",
                   "harness.removal_metrics", "harness.leaderboard", "harness.records", "harness.cli",
                   "harness.isolation", "harness.validation", "harness.fragility.summary")

#: Programs libraries run on their own (matplotlib, imported by captum, lists fonts once).
ALLOWED_EXECUTABLES = ("fc-list",)
_PROCESS_EVENTS = {"os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system",
                   "subprocess.Popen", "pty.spawn", "os.startfile"}
_SOCKET_EVENTS = {"socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
                  "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo"}
_PATH_EVENTS = {"os.remove": (0,), "os.rename": (0, 1), "os.mkdir": (0,), "os.rmdir": (0,), "os.symlink": (1,),
                "os.link": (1,), "os.chmod": (0,), "os.chown": (0,), "os.truncate": (0,), "os.utime": (0,),
                "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.move": (1,)}


class SandboxViolation(PermissionError):
    """The submission tried something the worker refuses."""


def _caller() -> str:
    """file:line of the innermost frame outside this module and the import machinery."""
    f, out = sys._getframe(1), []
    while f is not None and len(out) < 8:
        name = f.f_code.co_filename
        if name != __file__ and not name.startswith("<frozen"):
            out.append(f"{name}:{f.f_lineno}")
        f = f.f_back
    return " < ".join(out) or "?"


class Guard:
    """Audit hook + import blocker.  ``hidden``: paths the submission may not open at all;
    ``writable``: the only roots it may write under; ``protected``: roots where a refused
    write also counts as a violation (results, caches, the repository)."""

    def __init__(self, hidden, writable, protected, exempt=()):
        self.hidden = tuple(os.path.realpath(p) for p in hidden)
        self.writable = tuple(os.path.realpath(p) for p in writable)
        self.protected = tuple(os.path.realpath(p) for p in protected)
        self.exempt = tuple(os.path.realpath(p) for p in exempt)
        self.violations: list[str] = []
        self.pid = os.getpid()
        self._busy = False

    @staticmethod
    def _under(path: str, roots) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    def _refuse(self, what: str, record: bool = True):
        if record:
            self.violations.append(f"{what} (at {_caller()})")
        raise SandboxViolation(f"attriboard sandbox: {what} is not allowed in a submission worker")

    def _path(self, p) -> str | None:
        if isinstance(p, int) or p is None:
            return None
        try:
            return os.path.realpath(os.fsdecode(p))
        except (TypeError, ValueError):
            return None

    def _proc_other(self, path: str) -> bool:
        parts = path.split("/")
        if len(parts) > 2 and parts[1] == "proc" and parts[2].isdigit():
            return int(parts[2]) != self.pid
        return False

    def hook(self, event: str, args) -> None:
        if self._busy:
            return
        self._busy = True
        try:
            self._check(event, args)
        finally:
            self._busy = False

    def _check(self, event: str, args) -> None:
        if event == "open":
            path = self._path(args[0])
            if path is None:
                return
            mode, flags = args[1], args[2] if len(args) > 2 else 0
            write = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
                (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
            if self._under(path, self.hidden) or self._proc_other(path):
                self._refuse(f"open({path!r})")
            if write and not self._under(path, self.writable):
                self._refuse(f"open({path!r}) for writing",
                             record=self._under(path, self.protected) and not self._under(path, self.exempt))
        elif event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                path = self._path(args[i]) if i < len(args) else None
                if path is not None and not self._under(path, self.writable):
                    self._refuse(f"{event}({path!r})", record=self._under(path, self.protected))
        elif event == "import":
            name = args[0] or ""
            if any(name == m or name.startswith(m + ".") for m in BLOCKED_MODULES):
                self._refuse(f"import {name}")
        elif event in _SOCKET_EVENTS:
            self._refuse(f"network access ({event})")
        elif event in _PROCESS_EVENTS:
            if event == "subprocess.Popen" and os.path.basename(os.fsdecode(args[0] or b"")) in ALLOWED_EXECUTABLES:
                return
            self._refuse(f"process creation ({event})")
        elif event in ("os.kill", "os.killpg", "signal.pthread_kill"):
            target = args[0]
            if event == "os.killpg" or (isinstance(target, int) and target not in (0, self.pid, os.getpid())):
                if event != "signal.pthread_kill":
                    self._refuse(f"{event}({target}, ...)")
        elif event == "sys.addaudithook":
            self._refuse("adding an audit hook")

    @contextlib.contextmanager
    def suspended(self):
        """The worker's own bookkeeping (reading /proc for leftover children, ...)."""
        busy, self._busy = self._busy, True
        try:
            yield
        finally:
            self._busy = busy

    def install(self) -> None:
        for name in list(sys.modules):
            if any(name == m or name.startswith(m + ".") for m in BLOCKED_MODULES):
                del sys.modules[name]
        sys.addaudithook(self.hook)


# -- wire format -------------------------------------------------------------------------------

class Channel:
    """Worker side of the two pipes: receive pickles, send JSON header + .npy frames."""

    def __init__(self, rx, tx):
        self.rx, self.tx = rx, tx

    def recv(self):
        import pickle

        return pickle.loads(self.rx.recv_bytes())  # plain pickle: torch's fd-sharing reducers need sockets

    def send(self, header: dict, arrays=()) -> None:
        import numpy as np

        arrays = list(arrays)
        header = {**header, "n_arrays": len(arrays)}
        self.tx.send_bytes(json.dumps(header, default=str).encode())
        for a in arrays:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
            self.tx.send_bytes(buf.getbuffer())


class BadOutput(Exception):
    pass


def _to_numpy(x, what: str):
    import numpy as np
    import torch

    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as e:
        raise BadOutput(f"{what}: cannot be read as an array ({type(e).__name__}: {e})") from None
    if arr.dtype == object:
        raise BadOutput(f"{what}: expected a numeric array, got dtype object")
    return arr


def encode_attributions(attr) -> tuple[dict, list]:
    """Header and arrays of an explainer's output (the parent validates them again)."""
    from harness.protocols import Attributions

    if not isinstance(attr, Attributions):
        raise BadOutput(f"explain() must return harness.protocols.Attributions, got {type(attr).__name__}")
    level = attr.level if isinstance(attr.level, str) else repr(attr.level)
    arrays = []
    scores = attr.scores
    if isinstance(scores, (list, tuple)):
        kind = "list"
        arrays = [_to_numpy(s, f"word scores of example {i}") for i, s in enumerate(scores)]
    else:
        kind = "array"
        arrays = [_to_numpy(scores, f"{level} scores")]
    extras = attr.extras or {}
    if not isinstance(extras, dict):
        raise BadOutput(f"extras must be a dict of per-example arrays, got {type(extras).__name__}")
    names = [str(k) for k in extras]
    arrays += [_to_numpy(v, f"extra {k!r}") for k, v in extras.items()]
    return {"level": level[:40], "scores_kind": kind, "n_scores": len(arrays) - len(names), "extras": names}, arrays


# -- the worker loop ---------------------------------------------------------------------------

class Worker:
    def __init__(self, chan: Channel, cfg: dict):
        self.chan, self.cfg = chan, cfg
        self.guard: Guard | None = None
        self.explainer = None
        self.bundle = None

    def _error(self, stage: str, exc: BaseException | None = None, type_name: str | None = None,
               message: str | None = None, tb: str = "") -> dict:
        return {"kind": "error", "stage": stage, "type": type_name or type(exc).__name__,
                "message": (message if message is not None else str(exc))[:4000], "traceback": tb[-8000:]}

    def _violation_error(self) -> dict | None:
        if self.guard is None or not self.guard.violations:
            return None
        seen = list(dict.fromkeys(self.guard.violations))
        self.guard.violations.clear()
        return self._error("sandbox", type_name="SandboxViolation",
                           message="the submission attempted forbidden operations: " + "; ".join(seen[:20]))

    def _classify(self, stage: str, e: BaseException) -> dict:
        tb = traceback.format_exc()
        if isinstance(e, SystemExit):
            return self._error("crash", e, "SystemExit", f"the submission called sys.exit({e.code!r})", tb)
        if isinstance(e, MemoryError):
            return self._error("resource", e, "MemoryError",
                               f"out of memory (address-space limit {self.cfg.get('address_space_mb')} MB): {e}", tb)
        return self._error(stage, e, tb=tb)

    def _leftover_children(self) -> int:
        """Kill and reap any process the submission started (it must not leave any)."""
        import psutil

        with self.guard.suspended() if self.guard is not None else contextlib.nullcontext():
            return self._kill_children(psutil)

    @staticmethod
    def _kill_children(psutil) -> int:
        kids = psutil.Process().children(recursive=True)
        for k in kids:
            try:
                k.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(kids, timeout=5)
        while True:  # reap orphans re-parented to us (we are PID 1 or a subreaper)
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        return len(kids)

    def load(self, msg: dict) -> dict:
        import torch

        from harness.submission import Submission, SubmissionMeta

        torch.set_num_threads(max(1, int(msg["threads"])))
        sub = Submission(SubmissionMeta.model_validate(msg["meta"]), __import__("pathlib").Path(msg["path"]),
                         msg["code_hash"])
        try:
            self.explainer = sub.instantiate()
        except BaseException as e:  # noqa: BLE001 - everything the submission does is reported
            return self._violation_error() or self._classify("load", e)
        return self._violation_error() or {"kind": "ok"}

    def set_bundle(self, payload: bytes) -> dict:
        import pickle

        from harness.bundle import ModelBundle
        from harness.mlm import attach_mlm

        state = pickle.loads(payload)
        mlm = state.pop("mlm", None)
        self.bundle = ModelBundle(**state)
        attach_mlm(self.bundle, mlm)
        return {"kind": "ok"}

    def explain(self, batch) -> tuple[dict, list]:
        import resource

        import torch

        bundle = self.bundle
        batch = _to_device(batch, bundle.device)
        torch.manual_seed(batch.seed)
        before = bundle.counter.snapshot()
        t0 = time.perf_counter()
        if bundle.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            attr = self.explainer.explain(bundle, batch)
        except BaseException as e:  # noqa: BLE001
            err = self._violation_error() or self._classify("explain", e)
            self._leftover_children()
            return err, []
        finally:
            bundle.model.eval()
        seconds = time.perf_counter() - t0
        after = bundle.counter.snapshot()
        left = self._leftover_children()
        v = self._violation_error()
        if v is not None:
            return v, []
        if left:
            return self._error("resource", type_name="LeftoverProcesses",
                               message=f"the submission left {left} child process(es) running (killed)"), []
        try:
            header, arrays = encode_attributions(attr)
        except BadOutput as e:
            return {"kind": "bad-output", "message": str(e)[:2000]}, []
        except BaseException as e:  # noqa: BLE001 - a hostile __array__ or similar
            return self._violation_error() or self._classify("validate-output", e), []
        header.update(kind="result", seconds=seconds, forward=after[0] - before[0], backward=after[1] - before[1],
                      mlm=after[2] - before[2],
                      peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      peak_cuda_mb=(torch.cuda.max_memory_allocated() / 2**20) if bundle.device.type == "cuda" else None)
        return header, arrays

    def serve(self) -> None:
        while True:
            try:
                msg = self.chan.recv()
            except EOFError:
                return
            kind = msg[0]
            if kind == "close":
                self._leftover_children()
                self.chan.send({"kind": "closed"})
                return
            if kind == "load":
                self.guard = Guard(**msg[1]["guard"])
                self.guard.install()
                self.chan.send(self.load(msg[1]))
            elif kind == "bundle":
                self.chan.send(self.set_bundle(msg[1]))
            elif kind == "explain":
                header, arrays = self.explain(msg[1])
                self.chan.send(header, arrays)
            else:  # pragma: no cover
                self.chan.send({"kind": "error", "stage": "crash", "type": "ProtocolError",
                                "message": f"unknown message {kind!r}", "traceback": ""})


def _to_device(batch, device):
    import dataclasses

    import torch

    moved = {f.name: getattr(batch, f.name).to(device) for f in dataclasses.fields(batch)
             if isinstance(getattr(batch, f.name), torch.Tensor)}
    return dataclasses.replace(batch, **moved)


def forked_main(cfg: dict, rx, tx, out) -> None:
    """Entry point of a worker forked by the harness's fork server (see
    :mod:`harness.isolation`): own session, output into the parent's capture pipe, scrubbed
    environment and its temporary folder as working directory; then :func:`run`."""
    os.setsid()
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out.fileno(), 1)
    os.dup2(out.fileno(), 2)
    out.close()
    os.environ.clear()
    os.environ.update(cfg.get("env", {}))
    if cfg.get("cwd"):
        os.chdir(cfg["cwd"])
    run(cfg, rx, tx)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


#: What every worker imports before any submission code (the fork server preloads them).
PRELOAD = ("numpy", "torch", "transformers", "psutil", "harness.bundle", "harness.explain_utils", "harness.mlm",
           "harness.submission", "harness.protocols", "harness.outputs")


def main(argv: list[str]) -> None:
    """``python -m harness.worker CONFIG_JSON`` (pipes given as file descriptors ``rfd``/``wfd``)."""
    from multiprocessing.connection import Connection

    cfg = json.loads(argv[0])
    run(cfg, Connection(cfg["rfd"], writable=False), Connection(cfg["wfd"], readable=False))


def run(cfg: dict, rx, tx) -> None:
    layers = ["process"]
    if cfg.get("namespaces") in ("auto", "on"):
        try:
            layers += enter_namespaces(cfg)
        except OSError as e:
            if cfg["namespaces"] == "on":
                raise
            print(f"attriboard worker: namespaces unavailable ({e}); continuing without", file=sys.stderr)
    if "namespaces(user,mount,net,pid)" not in layers:
        _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    layers += set_limits(cfg)
    sys.dont_write_bytecode = True
    import faulthandler

    faulthandler.enable()
    chan = Channel(rx, tx)
    import importlib

    # the same imports in every worker, before any submission code (already done when forked)
    for name in (*PRELOAD, *cfg.get("preload", [])):  # + the model's classes (named by the parent)
        try:
            importlib.import_module(name)
        except Exception:  # pragma: no cover - receiving the model will say what is wrong
            pass

    layers.append("audit-guard")
    chan.send({"kind": "ready", "pid": os.getpid(), "layers": layers})
    Worker(chan, cfg).serve()


if __name__ == "__main__":
    main(sys.argv[1:])
