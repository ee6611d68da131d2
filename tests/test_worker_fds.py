"""Starting a sandboxed worker that fails half-way (Ctrl-C while the fork server starts it, a
fork server that refuses) closes each pipe descriptor exactly once: nothing leaks, and nothing
is closed twice (a second close hits a number the process has reused by then)."""

from __future__ import annotations

import gc
import os

import pytest

from harness.sandbox import forkserver, isolation


def _open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


class _Server:
    def __init__(self, fail: bool):
        self.fail = fail

    def spawn(self, cfg, fds, status_w):
        if self.fail:
            raise ConnectionError("fork server gone")


class _Interrupted:
    """Like :class:`isolation._ForkedProc` interrupted in its wait for the worker's pid: it has
    taken the connections when Ctrl-C arrives, and the traceback keeps it (and them) alive."""

    def __init__(self, status_r, tx, rx, stdout, timeout):
        self.status_r, self.tx, self.rx, self.stdout = status_r, tx, rx, stdout
        raise KeyboardInterrupt


@pytest.mark.parametrize("where", ["while the worker starts", "at spawn"])
def test_a_failed_start_closes_every_descriptor_once(monkeypatch, where):
    monkeypatch.setattr(forkserver, "server", lambda preload: _Server(fail=where == "at spawn"))
    monkeypatch.setattr(isolation, "_ForkedProc", _Interrupted)
    gc.collect()
    before = _open_fds()
    with pytest.raises(KeyboardInterrupt if where != "at spawn" else ConnectionError) as failure:
        isolation._fork_worker({}, (), timeout=1.0)
    assert _open_fds() == before                       # no descriptor leaked
    # the freed numbers are handed out again; dropping the traceback (and with it the half-built
    # objects) must not close them
    reused = [os.open("/dev/null", os.O_RDONLY) for _ in range(8)]
    try:
        del failure
        gc.collect()
        for fd in reused:
            os.fstat(fd)                               # still open: nothing closed it a second time
    finally:
        for fd in reused:
            os.close(fd)
