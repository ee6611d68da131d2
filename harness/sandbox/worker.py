"""The submission worker: one sandboxed process that runs one submission's explainer.

Forked by :mod:`harness.sandbox.forkserver` (:func:`forked_main`: only its channel, fds 3 and 4,
and its output pipe, fds 1 and 2, are open), or run standalone as
``python -m harness.sandbox.worker CONFIG_JSON`` (:func:`main`); the harness process itself never
runs this.  In order, before any submission code runs (docs/SECURITY.md):

1. **Namespaces and an own root** (:func:`enter_namespaces`): new user, mount, network and
   PID namespaces; the worker is PID 1 of its PID namespace (when it exits the kernel kills
   every process left in it).  It pivots into a root of its own holding, read-only, only the
   system, the Python installation and the ``harness``/``submissions`` packages, with a
   read-only ``/proc``, a minimal ``/dev`` and private tmpfs ``/tmp`` (its scratch space,
   where the submission's files are written) and ``/dev/shm``.  When the harness is root it
   then becomes :data:`SANDBOX_UID`.  The two processes above it only wait.
2. **Limits**: ``RLIMIT_CORE`` 0, ``RLIMIT_FSIZE``, ``RLIMIT_AS`` (CPU runs), ``RLIMIT_NPROC``.
3. **Privileges** (:mod:`harness.sandbox.confine`): no capabilities, ``no_new_privs``, seccomp.
4. **Imports** (:data:`PRELOAD`; the fork server has done them already), then ``ready``.
5. **Guard** (:class:`Guard`, a second line: an audit hook plus an import blocker): refuses
   opening hidden paths, writing outside the scratch space, importing the modules that hold
   or score gold data, sockets, process creation, signals to other processes, and records
   every refusal; a call during which anything was refused fails with stage ``sandbox``.

Protocol: the parent sends pickled messages (trusted direction); the worker answers with a
JSON header followed by ``.npy`` frames, which the parent checks against a strict schema
(:mod:`harness.sandbox.replies`) before use: nothing the submission controls is unpickled or
believed by the harness.
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

from harness.sandbox.membership import blocked_modules, worker_paths

#: a forked worker's channel to the harness: it reads requests from fd 3 and writes replies to fd 4
WORKER_RX_FD, WORKER_TX_FD = 3, 4

# -- kernel-level sandbox ------------------------------------------------------------------

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18)
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
#: the host uid/gid a worker runs as when the harness is root (mapped to uid 1 inside its
#: user namespace; owns no file, so the worker reads only world-readable files and
#: RLIMIT_NPROC applies to it, which it never does to real root)
SANDBOX_UID = 2_000_000_000
#: where the worker's scratch space (a private tmpfs) is, inside its own root
SCRATCH = "/tmp"
#: device nodes a worker gets (plus /dev/nvidia* on CUDA)
DEV_NODES = ("null", "zero", "full", "random", "urandom")
_ST_TO_MS = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC, os.ST_NOATIME: MS_NOATIME,
             os.ST_NODIRATIME: MS_NODIRATIME, getattr(os, "ST_RELATIME", 4096): MS_RELATIME}


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


def _remount_readonly(libc, root: str, tolerate: bool) -> int:
    """Every mount at or under ``root`` read-only, keeping its locked flags; returns failures."""
    failed = 0
    for mp in _mount_points_under(root):
        try:
            st = os.statvfs(mp).f_flag
            keep = sum(ms for stf, ms in _ST_TO_MS.items() if st & stf)
            _mount(libc, None, mp, None, MS_BIND | MS_REMOUNT | MS_RDONLY | keep)
        except OSError:
            if not tolerate:
                raise
            failed += 1
    return failed


def _wait_and_mirror(pid: int) -> None:
    """Wait for ``pid`` and exit the way it did (never returns)."""
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
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def _allowed_paths(cfg: dict) -> list[str]:
    """What the worker's own root holds (read-only): the system, the Python installation and
    the harness packages explainers build on (:mod:`harness.sandbox.membership`) and the
    submissions; never the repository itself (tasks, .git, results) nor the rest of the harness."""
    repo = cfg["repo"]
    out = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/sys",
           sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
           *worker_paths(repo), os.path.join(repo, "submissions"), *cfg.get("extra_readonly", [])]
    for p in sys.path:
        if p and os.path.isabs(p) and os.path.exists(p):
            out.append(p if os.path.isdir(p) else os.path.dirname(p))
    keep: list[str] = []
    for p in out:
        p = os.path.normpath(p)
        if p in ("/", repo) or repo.startswith(p.rstrip("/") + "/") or not os.path.lexists(p):
            continue  # the repository or one of its parents: only its packages are bound
        if any(p == k or p.startswith(k.rstrip("/") + "/") for k in keep):
            continue
        keep = [k for k in keep if not k.startswith(p.rstrip("/") + "/")] + [p]
    return keep


def enter_namespaces(cfg: dict) -> list[str]:
    """New user, mount, network and PID namespaces and a root of the worker's own; returns
    in the worker (PID 1 of the new PID namespace) with the layers set up.

    Processes: the forked process W0 stays outside and only waits; W1 unshares (when the
    harness is root, W0 writes W1's uid/gid map: uid 0 inside -> root during set-up, uid 1
    inside -> :data:`SANDBOX_UID`); W1 forks W2, PID 1 of the new PID namespace (when it
    exits the kernel kills everything left in it), which builds its root and returns."""
    libc = _libc()
    if not cfg.get("root_dir") or not cfg.get("repo"):
        raise OSError(22, "the worker config names no root_dir/repo for its own root")
    uid, gid = os.getuid(), os.getgid()
    as_root = os.geteuid() == 0
    up_r, up_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid:  # W0
        os.close(up_w)
        os.close(go_r)
        if as_root:
            ok = os.read(up_r, 1) == b"u"
            if ok:
                try:
                    for name, own in (("uid_map", 0), ("gid_map", 0)):
                        with open(f"/proc/{pid}/{name}", "w") as f:
                            f.write(f"0 {own} 1\n1 {SANDBOX_UID} 1\n")
                    os.write(go_w, b"g")
                except OSError:
                    os.write(go_w, b"x")
        os.close(go_w)
        _wait_and_mirror(pid)
    os.close(up_r)
    os.close(go_w)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID) != 0:
        err = ctypes.get_errno()
        os.write(up_w, b"x")
        raise OSError(err, f"unshare: {os.strerror(err)}")
    if as_root:
        os.write(up_w, b"u")
        if os.read(go_r, 1) != b"g":
            raise OSError(1, "could not map the sandbox uid")
    else:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    os.close(up_w)
    os.close(go_r)
    pid = os.fork()
    if pid:  # W1
        _wait_and_mirror(pid)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # W2: PID 1, dies with W1
    layers = ["namespaces(user,mount,net,pid)"]
    layers += _build_root(libc, cfg, as_root)
    if as_root:
        from harness.sandbox.confine import drop_bounding_set

        drop_bounding_set(libc)
        os.setgroups([])
        os.setresgid(1, 1, 1)
        os.setresuid(1, 1, 1)  # clears every capability
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # cleared by the identity change
        layers.append(f"sandbox-uid({SANDBOX_UID})")
    return layers


def _build_root(libc, cfg: dict, as_root: bool) -> list[str]:
    """Mount a tmpfs on ``cfg["root_dir"]``, bind the allowed paths read-only into it, give it
    a read-only /proc, a minimal /dev, private /tmp and /dev/shm, then pivot into it."""
    new = cfg["root_dir"]
    owner = "uid=1,gid=1," if as_root else ""
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    _mount(libc, "tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    scratch_mb = int(cfg.get("scratch_mb", 256))
    # the scratch space first: an allowed path under /tmp (a checkout or virtualenv there) is
    # then bound inside it (read-only) instead of being hidden by it
    os.makedirs(new + SCRATCH, exist_ok=True)
    _mount(libc, "tmpfs", new + SCRATCH, "tmpfs", MS_NOSUID | MS_NODEV, f"size={scratch_mb}m,{owner}mode=0700")
    failed = 0
    for p in _allowed_paths(cfg):
        dst = new + p
        if os.path.islink(p):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.symlink(os.readlink(p), dst)
            continue
        if os.path.isdir(p):
            os.makedirs(dst, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            open(dst, "w").close()
        _mount(libc, p, dst, None, MS_BIND | MS_REC)
        failed += _remount_readonly(libc, dst, tolerate=p in ("/sys",))
    for h in cfg.get("hidden", []):  # a hidden path inside an allowed one
        dst = new + h
        if os.path.isdir(dst):
            _mount(libc, "tmpfs", dst, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555")
        elif os.path.isfile(dst):
            _mount(libc, "/dev/null", dst, None, MS_BIND)
    os.makedirs(new + "/proc")
    _mount(libc, "proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)
    dev = new + "/dev"
    os.makedirs(dev)
    _mount(libc, "tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
    nodes = list(DEV_NODES)
    if cfg.get("device_type") == "cuda":
        nodes += sorted(n for n in os.listdir("/dev") if n.startswith("nvidia") and not os.path.isdir("/dev/" + n))
    for n in nodes:
        if os.path.exists("/dev/" + n):
            open(f"{dev}/{n}", "w").close()
            _mount(libc, "/dev/" + n, f"{dev}/{n}", None, MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")
    os.makedirs(dev + "/shm")
    _mount(libc, "tmpfs", dev + "/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"size={scratch_mb}m,{owner}mode=0700")
    os.makedirs(new + "/.oldroot")
    _mount(libc, None, new, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    from harness.sandbox.confine import SYSCALLS

    nr = SYSCALLS[__import__("platform").machine()]["pivot_root"]
    if libc.syscall(nr, os.fsencode(new), os.fsencode(new + "/.oldroot")) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"pivot_root: {os.strerror(err)}")
    os.chdir("/")
    if libc.umount2(b"/.oldroot", MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount2(/.oldroot): {os.strerror(err)}")
    os.chdir(SCRATCH)
    layers = ["own-root(read-only)", "readonly-proc", "private-tmp", "private-shm", "minimal-dev"]
    if failed:
        layers.append(f"sysfs-submounts-not-readonly({failed})")
    return layers


def set_limits(cfg: dict, nproc: bool) -> list[str]:
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
    n = cfg.get("max_processes")
    if n and nproc:  # counted per user namespace: only meaningful inside the worker's own
        resource.setrlimit(resource.RLIMIT_NPROC, (int(n), int(n)))
        layers.append(f"rlimit-nproc({int(n)})")
    return layers


# -- the Python-level guard ------------------------------------------------------------------

#: Modules that hold, produce or score gold data, or write results: never importable in a
#: worker (derived from package membership, see :mod:`harness.sandbox.membership`).
BLOCKED_MODULES = blocked_modules()

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

    def _may_write(self, path: str) -> bool:
        """Under a writable root and not under a protected one (a checkout under /tmp lies
        inside the worker's scratch space, yet writing there is still an attempt on it)."""
        return self._under(path, self.writable) and not self._under(path, self.protected)

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
            if write and not self._may_write(path):
                self._refuse(f"open({path!r}) for writing",
                             record=self._under(path, self.protected) and not self._under(path, self.exempt))
        elif event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                path = self._path(args[i]) if i < len(args) else None
                if path is not None and not self._may_write(path):
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
    if arr.dtype.kind not in "biuf" or arr.dtype.fields:
        raise BadOutput(f"{what}: expected a numeric array, got dtype {arr.dtype}")
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
        import pathlib

        import torch

        from harness.core.submission import Submission, SubmissionMeta

        from harness.core.threads import set_threads

        set_threads(int(msg["threads"]))
        meta = SubmissionMeta.model_validate(msg["meta"])
        path = pathlib.Path(msg["path"])
        files = msg.get("files")
        if files is not None:  # the exact bytes the harness hashed, in the worker's own scratch space
            path = pathlib.Path(self.cfg.get("scratch", SCRATCH)) / "submission" / meta.name
            for rel, data in files.items():
                f = path / rel
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(data)
        sub = Submission(meta, path, msg["code_hash"])
        try:
            self.explainer = sub.instantiate()
        except BaseException as e:  # noqa: BLE001 - everything the submission does is reported
            return self._violation_error() or self._classify("load", e)
        return self._violation_error() or {"kind": "ok"}

    def set_bundle(self, payload: bytes) -> dict:
        import pickle

        from harness.models.bundle import ModelBundle
        from harness.models.mlm import attach_mlm

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
                g = dict(msg[1]["guard"])
                # its scratch space, and /dev/shm only where it is the worker's own (namespaces)
                g["writable"] = [*g["writable"], self.cfg.get("scratch", SCRATCH),
                                 *(["/dev/shm"] if self.cfg.get("scratch") == SCRATCH else [])]
                self.guard = Guard(**g)
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


def forked_main(cfg: dict) -> None:
    """Entry point of a worker forked by :mod:`harness.sandbox.forkserver` (descriptors 3 and 4 are
    its channel, 1 and 2 the parent's output capture, nothing else is open): own session,
    scrubbed environment; then :func:`run`."""
    from multiprocessing.connection import Connection


    os.setsid()
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.environ.clear()
    os.environ.update(cfg.get("env", {}))
    if cfg.get("cwd"):
        os.chdir(cfg["cwd"])
    run(cfg, Connection(WORKER_RX_FD, writable=False), Connection(WORKER_TX_FD, readable=False))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


#: What every worker imports before any submission code (the fork server preloads them).
PRELOAD = ("numpy", "torch", "transformers", "psutil", "harness.models.bundle", "harness.explain_utils", "harness.models.mlm",
           "harness.core.submission", "harness.protocols", "harness.core.outputs", "harness.sandbox.confine")


def main(argv: list[str]) -> None:
    """``python -m harness.sandbox.worker CONFIG_JSON`` (pipes given as file descriptors ``rfd``/``wfd``)."""
    from multiprocessing.connection import Connection

    cfg = json.loads(argv[0])
    run(cfg, Connection(cfg["rfd"], writable=False), Connection(cfg["wfd"], readable=False))


def run(cfg: dict, rx, tx) -> None:
    from harness.sandbox.confine import drop_privileges

    layers = ["process", "no-inherited-descriptors"]
    in_ns = False
    if cfg.get("namespaces") in ("auto", "on"):
        try:
            layers += enter_namespaces(cfg)
            in_ns = True
        except OSError as e:
            if cfg["namespaces"] == "on":
                raise
            print(f"attriboard worker: namespaces unavailable ({e}); continuing without", file=sys.stderr)
    if in_ns:  # the scratch space is the private tmpfs now
        os.environ.update(HOME=SCRATCH, TMPDIR=SCRATCH, NUMBA_CACHE_DIR=SCRATCH)
        if not os.path.isdir(os.environ.get("MPLCONFIGDIR", "/nonexistent")):
            os.environ["MPLCONFIGDIR"] = SCRATCH
        cfg["scratch"] = SCRATCH
    else:
        _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        cfg["scratch"] = cfg.get("cwd") or os.getcwd()
    layers += set_limits(cfg, nproc=in_ns)
    try:
        layers += drop_privileges(seccomp=cfg.get("seccomp", True))
    except OSError as e:
        if in_ns or cfg.get("namespaces") == "on":
            raise  # never run submission code half-confined
        print(f"attriboard worker: could not drop privileges ({e}); continuing", file=sys.stderr)
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
