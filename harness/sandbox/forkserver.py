"""The fork server submission workers are forked from (its own small protocol, not
``multiprocessing``'s).

Why its own: a ``multiprocessing`` fork server listens on a named socket whose address and
descriptors its children inherit; a worker could connect to it and have it start a process
outside every namespace.  Here:

- the server is a fresh interpreter (``python -m harness.sandbox.forkserver``, scrubbed
  environment: it never held gold data or the secret) that imports torch, transformers and
  the worker's modules once, so forking a worker takes milliseconds;
- the harness talks to it over an **unnamed** ``socketpair`` (no address anywhere); each
  request carries a JSON config and, as ``SCM_RIGHTS``, the worker's three pipe ends
  (commands in, answers out, stdout+stderr) and a status pipe;
- in the forked child every descriptor except those three is closed before anything else
  runs (the control socket, the status pipes of other workers, anything a library opened),
  so a worker holds nothing that leads back to the server or the harness;
- the server writes the worker's pid and, when it has reaped it, its wait status into the
  status pipe: the harness learns of a worker's death without being its parent;
- when the harness goes away (end of file on the control socket) the server kills the
  process group of every worker still running and exits.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from typing import Sequence

from harness.sandbox.worker import WORKER_RX_FD, WORKER_TX_FD

_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "HOME", "CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH", "CUDA_HOME",
             "NVIDIA_VISIBLE_DEVICES", "VIRTUAL_ENV", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE",
             "OPENBLAS_L2_SIZE", "MPLCONFIGDIR")


# -- harness side -------------------------------------------------------------------------------

class ForkServer:
    """Harness-side handle of one fork server process."""

    def __init__(self, preload: Sequence[str] = ()):
        from harness.core.provenance import REPO_ROOT

        self._lock = threading.Lock()
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP or k.startswith(("HF_", "TRANSFORMERS_"))}
        env.update(PYTHONDONTWRITEBYTECODE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO_ROOT))
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.sandbox.forkserver", str(child.fileno()),
                                      json.dumps(list(preload))],
                                     pass_fds=(child.fileno(),), env=env, cwd="/", stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        child.close()
        self.used = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def spawn(self, cfg: dict, fds: Sequence[int], status_w: int) -> None:
        """Ask for a worker; ``fds`` = (commands in, answers out, output), ``status_w`` the
        status pipe's write end (all closed here by the caller afterwards)."""
        data = json.dumps(cfg).encode()
        with self._lock:
            self.used = True
            socket.send_fds(self.sock, [data], [*fds, status_w])

    def close(self) -> None:
        if not self.used:  # started early (warm) and never asked: do not wait for its imports
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:  # already gone
                pass
        try:
            self.sock.close()
        finally:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.proc.kill()
                self.proc.wait()


_SERVER: ForkServer | None = None
_SERVER_LOCK = threading.Lock()


def server(preload: Sequence[str] = ()) -> ForkServer:
    """This process's fork server (started on first use).  One serves every worker: the
    modules a worker's model needs (``preload``) come with each request, and the server
    imports those it lacks before it forks (modules only: it never holds data).  ``preload``
    here is what a server started by this call imports at start-up."""
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is None or not _SERVER.alive():
            _SERVER = ForkServer(tuple(sorted(preload)))
        return _SERVER


#: what a server started early imports besides the worker's own modules: transformers' model
#: base (``modeling_utils``, most of a model class's import time) and the default family's classes
WARM_PRELOAD = ("transformers.modeling_utils", "transformers.models.bert.modeling_bert",
                "transformers.tokenization_utils_fast")


def warm(isolation: str = "process", jobs: int = 1, executor: str = "local") -> None:
    """Start the fork server now when a run with these settings forks its sandboxed workers
    from this process (``process`` isolation, one job, the local executor; ``--jobs`` workers
    and Ray tasks have their own), so that its imports (torch, transformers, the worker's
    modules: seconds) run while the harness prepares its task, not after."""
    if isolation == "process" and int(jobs or 1) <= 1 and executor == "local":
        server(WARM_PRELOAD)


def server_pids() -> list[int]:
    with _SERVER_LOCK:
        return [_SERVER.pid] if _SERVER is not None and _SERVER.alive() else []


def shutdown() -> None:
    global _SERVER
    with _SERVER_LOCK:
        s, _SERVER = _SERVER, None
    if s is not None:
        s.close()


atexit.register(shutdown)


# -- server side ---------------------------------------------------------------------------------

def _preload(names: Sequence[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:  # pragma: no cover - the worker reports what is missing
            print(f"attriboard fork server: cannot preload {name}: {type(e).__name__}: {e}", file=sys.stderr)


def _child(ctrl: socket.socket, cfg: dict, fds: list[int], others: dict[int, int]) -> None:
    """In the forked child: keep only the worker's three pipes (as 3, 4 and 1/2), then run it."""
    try:
        rx, tx, out, status_w = fds
        ctrl.close()
        os.close(status_w)
        for w in others.values():
            os.close(w)
        null = os.open(os.devnull, os.O_RDWR)
        tmp = [os.dup(fd) for fd in (rx, tx, out)]  # above any target number
        os.dup2(null, 0)
        os.dup2(tmp[2], 1)
        os.dup2(tmp[2], 2)
        os.dup2(tmp[0], WORKER_RX_FD)
        os.dup2(tmp[1], WORKER_TX_FD)
        for fd in sorted(int(n) for n in os.listdir("/proc/self/fd")):  # every other open descriptor
            if fd > WORKER_TX_FD:
                try:
                    os.close(fd)
                except OSError:  # the listing's own descriptor, already closed
                    pass
        for fd in (WORKER_RX_FD, WORKER_TX_FD):
            os.set_inheritable(fd, False)
        from harness.sandbox import worker

        worker.forked_main(cfg)
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        os._exit(70)
    os._exit(0)


def serve(ctrl_fd: int, preload: Sequence[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctrl = socket.socket(fileno=ctrl_fd)
    from harness.sandbox import worker

    _preload([*worker.PRELOAD, *preload])
    children: dict[int, int] = {}  # pid -> status pipe write end
    imported: set[str] = set()
    try:
        while True:
            ready, _, _ = select.select([ctrl], [], [], 0.05)
            _reap(children)
            if not ready:
                continue
            try:
                msg, fds, _flags, _addr = socket.recv_fds(ctrl, 1 << 20, 8)
            except OSError:
                return
            if not msg:
                return
            cfg = json.loads(msg)
            extra = [m for m in cfg.get("preload", []) if m not in imported]
            _preload(extra)
            imported.update(extra)
            if len(fds) != 4:  # pragma: no cover - harness bug
                for fd in fds:
                    os.close(fd)
                continue
            pid = os.fork()
            if pid == 0:
                _child(ctrl, cfg, list(fds), children)
            rx, tx, out, status_w = fds
            for fd in (rx, tx, out):
                os.close(fd)
            children[pid] = status_w
            try:
                os.write(status_w, struct.pack("<q", pid))
            except OSError:
                pass
    finally:
        for pid, w in children.items():
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        _reap(children, block=True)


def _reap(children: dict[int, int], block: bool = False) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        w = children.pop(pid, None)
        if w is not None:
            try:
                os.write(w, struct.pack("<i", os.waitstatus_to_exitcode(status)))
            except OSError:
                pass
            os.close(w)


if __name__ == "__main__":
    serve(int(sys.argv[1]), json.loads(sys.argv[2]) if len(sys.argv) > 2 else [])
    # every worker is reaped: skip the interpreter's teardown of torch and transformers (seconds),
    # which the harness would otherwise wait for when it closes the server
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
