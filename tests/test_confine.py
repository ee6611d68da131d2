"""The kernel layers of a submission worker, checked directly (harness/sandbox/confine.py,
harness/sandbox/worker.py, harness/sandbox/forkserver.py) and the strict reply parser (harness/sandbox/replies.py)."""

import ctypes
import io
import json
import os
import platform
import socket

import numpy as np
import pytest

from harness.sandbox import confine
from harness.sandbox.replies import ReplyError, parse_array, parse_header

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.machine() not in confine.SYSCALLS,
                                reason="the seccomp filter is for Linux x86-64 / aarch64")


def _in_child(fn) -> dict:
    """Run ``fn`` in a forked child after drop_privileges(); return what it reports."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        try:
            out = {"layers": confine.drop_privileges()}
            out.update(fn())
        except BaseException as e:  # noqa: BLE001
            out = {"error": f"{type(e).__name__}: {e}"}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def _errno(rc: int) -> int:
    return 0 if rc == 0 else ctypes.get_errno()


def test_seccomp_and_capabilities_refuse_escapes_but_allow_normal_work():
    def probe():
        libc = ctypes.CDLL(None, use_errno=True)
        res = {
            "umount2": _errno(libc.umount2(b"/proc", 2)),
            "mount": _errno(libc.mount(b"tmpfs", b"/mnt", b"tmpfs", 0, None)),
            "unshare_user": _errno(libc.unshare(0x10000000)),
            "unshare_ns": _errno(libc.unshare(0x00020000)),
            "ptrace_traceme": _errno(libc.ptrace(0, 0, None, None)),
            "setns": _errno(libc.setns(0, 0)),
        }
        try:
            socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            res["inet"] = 0
        except OSError as e:
            res["inet"] = e.errno
        socket.socket(socket.AF_UNIX).close()
        pid = os.fork()  # plain fork (clone without namespace flags) still works
        if pid == 0:
            os._exit(7)
        res["fork_status"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        with open("/proc/self/status") as f:
            res["caps"] = {line.split(":")[0]: line.split()[1] for line in f if line.startswith("Cap")}
        res["no_new_privs"] = libc.prctl(39, 0, 0, 0, 0)  # PR_GET_NO_NEW_PRIVS
        return res

    out = _in_child(probe)
    assert "error" not in out, out
    assert out["layers"] == ["no-capabilities", "no-new-privs", "seccomp"]
    for call in ("umount2", "mount", "unshare_user", "unshare_ns", "ptrace_traceme", "setns", "inet"):
        assert out[call] == 1, (call, out[call])  # EPERM
    assert out["fork_status"] == 7
    assert set(out["caps"].values()) == {"0000000000000000"}, out["caps"]
    assert out["no_new_privs"] == 1


def test_seccomp_program_is_well_formed():
    for machine in confine.SYSCALLS:
        prog = confine.seccomp_program(machine)
        assert len(prog) % 8 == 0 and 10 < len(prog) // 8 < 4096
    with pytest.raises(KeyError):
        confine.seccomp_program("sparc")


@pytest.fixture(scope="module")
def worker():
    from harness.sandbox.isolation import IsolationSettings, WorkerProcess

    w = WorkerProcess(IsolationSettings(timeout_s=30))
    w.start()
    yield w
    w.close()


def test_worker_layers_and_no_way_back(worker):
    from harness.sandbox import forkserver

    layers = worker.layers
    assert "no-inherited-descriptors" in layers and "seccomp" in layers and "no-capabilities" in layers
    if not any(x.startswith("namespaces(") for x in layers):
        pytest.skip("no user namespaces on this kernel")
    for want in ("own-root(read-only)", "readonly-proc", "private-tmp", "private-shm"):
        assert want in layers
    if os.geteuid() == 0:
        assert any(x.startswith("sandbox-uid(") for x in layers)
        assert any(x.startswith("rlimit-nproc(") for x in layers)
    # the worker's processes hold no descriptor but their own pipes; none is a socket
    import psutil

    procs = worker._procs()
    assert procs
    for p in procs:
        fds = sorted(int(n) for n in os.listdir(f"/proc/{p.pid}/fd"))
        assert fds == [0, 1, 2, 3, 4], (p.pid, fds)
        for n in fds:
            assert not os.readlink(f"/proc/{p.pid}/fd/{n}").startswith("socket:"), (p.pid, n)
        # the fork server is not an ancestor inside its namespace: the worker sees itself as PID 1
        assert psutil.Process(p.pid).ppid() != 0
    assert forkserver.server_pids()


# -- replies --------------------------------------------------------------------------------------

def _result(**kw) -> bytes:
    h = {"kind": "result", "level": "token", "scores_kind": "array", "n_scores": 1, "extras": [],
         "forward": 1, "backward": 0, "mlm": 0, "seconds": 0.1, "peak_rss_mb": 10.0, "peak_cuda_mb": None,
         "n_arrays": 1}
    h.update(kw)
    return json.dumps(h).encode()


def test_reply_schema_accepts_a_normal_result_and_refuses_forgeries():
    assert parse_header(_result()).forward == 1
    bad = {
        "count overflow": _result(forward=10**400),
        "negative count": _result(backward=-1),
        "float count": _result(forward=1.5),
        "unknown stage": json.dumps({"kind": "error", "stage": "whatever", "type": "X", "message": "m",
                                     "n_arrays": 0}).encode(),
        "unknown kind": json.dumps({"kind": "haha", "n_arrays": 0}).encode(),
        "infinity": _result().replace(b'"peak_rss_mb": 10.0', b'"peak_rss_mb": Infinity'),
        "nan": _result().replace(b'"seconds": 0.1', b'"seconds": NaN'),
        "huge float": _result(seconds=1e300),
        "extra key": _result(hack=1),
        "bad error type": json.dumps({"kind": "error", "stage": "explain", "type": "X\n# heading",
                                      "message": "m", "n_arrays": 0}).encode(),
        "nested": b'{"kind": "result", "extras": ' + b"[" * 100000 + b"]" * 100000 + b"}",
        "not json": b"\xff\xfe",
        "not an object": b"[1, 2]",
    }
    for what, raw in bad.items():
        with pytest.raises(ReplyError):
            parse_header(raw)
        print(what, "refused")


def test_error_message_control_characters_are_removed():
    h = parse_header(json.dumps({"kind": "error", "stage": "explain", "type": "ValueError",
                                 "message": "a\x1b[31mred\x00", "n_arrays": 0}).encode())
    assert "\x1b" not in h.message and "\x00" not in h.message


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def test_npy_frames_are_checked_before_allocation():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(parse_array(_npy(a)), a)
    f = np.asfortranarray(a.astype(np.float64))
    np.testing.assert_array_equal(parse_array(_npy(f)), f)
    # a header declaring 2**40 float64 with 10 bytes of data: refused without allocating 8 TiB
    head = _npy(np.zeros(1, dtype=np.float64))
    forged = head.replace(b"(1,)", b"(1099511627776,)")
    with pytest.raises(ReplyError, match="declares shape"):
        parse_array(forged)
    with pytest.raises(ReplyError, match="not a plain numeric"):
        parse_array(_npy(np.array(["a", "b"])))
    with pytest.raises(ReplyError):
        parse_array(b"garbage")
