"""Hostile submissions that go past the Python audit hook (libc through ctypes, raw
descriptors, forged replies on the worker's own channel), so that what is tested is the
kernel layers of the worker (namespaces, own read-only root, capabilities, seccomp,
RLIMIT_NPROC) and the strict reply parser (harness/sandbox/replies.py).  See docs/SECURITY.md.

Each fixture in tests/fixtures/submissions/hostile_* raises ``RuntimeError("ESCAPED: ...")``
when a call it must not be able to make worked, and otherwise either returns zero scores
(with what each call answered, errno by errno, as per-example extras: the record's
diagnostics) or is stopped with a specific error.  One grid runs them all with the
baselines; the baselines must score exactly as in a grid of their own.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest

from harness.sandbox.isolation import IsolationSettings, WorkerError, open_explainer, worker_dirs
from harness.engine.records import ResultRecord
from harness.engine.runner import RunConfig, run_grid
from harness.core.submission import load_submission, resolve
from harness.engine.task import get_task

from conftest import FIXTURES, REPO, SMALL_TASK

SUBS = FIXTURES / "submissions"
BASELINES = ["random", "gradient"]
SETTINGS = IsolationSettings(timeout_s=20, memory_mb=1500)
OK = "ok"
#: fixture -> outcome of its record: "ok" (contained; the fixture raises ESCAPED otherwise)
#: or the (stage, error type) pairs it may end with
EXPECTED: dict[str, object] = {
    "hostile_umount": OK,
    "hostile_capabilities": OK,
    "hostile_forkserver_connect": OK,
    "hostile_git_read": OK,
    "hostile_counter_overflow": {("crash", "ProtocolError")},
    "hostile_forged_stage": {("crash", "ProtocolError")},
    "hostile_forged_figures": OK,
    "hostile_forged_infinity": {("crash", "ProtocolError")},
    "hostile_nested_json": {("crash", "ProtocolError")},
    "hostile_huge_npy": {("crash", "ProtocolError")},
    "hostile_dev_shm": OK,
    "hostile_dev_shm_reader": OK,  # after hostile_dev_shm: dict order is grid order
    "hostile_tracker_pipe": {("resource", "OutputLimitExceeded"), ("resource", "LeftoverProcesses")},
    "hostile_process_flood": {("resource", "LeftoverProcesses")},
}
MESSAGES = {
    "hostile_counter_overflow": "forward",
    "hostile_forged_stage": "stage",
    "hostile_forged_infinity": "Infinity",
    "hostile_nested_json": "nested",
    "hostile_huge_npy": "declares shape (1099511627776,)",
    "hostile_process_flood": "child process(es)",
}
#: what hostile_umount calls, all refused by seccomp (EPERM)
SECCOMP_DENIED = ("umount2_root", "umount2_proc", "mount_tmpfs", "mount_remount_root_rw", "unshare_user_ns",
                  "chroot", "fsopen", "open_tree", "pivot_root", "clone_newuser")
#: host paths a worker wrote inside its own private tmpfs mounts
SHM_FILES = (Path("/dev/shm/attriboard_channel"), Path("/tmp/attriboard_channel"))
LEADERBOARD_MARKER = REPO / "leaderboard" / "x"
KERNEL_LAYERS = ("namespaces(user,mount,net,pid)", "own-root(read-only)", "no-capabilities", "no-new-privs",
                 "seccomp", "rlimit-nproc(128)")


def _config(tmp: Path, cache_dir: Path, name: str) -> RunConfig:
    return RunConfig(results_dir=tmp / name, cache_dir=cache_dir, batch_size=8, force=True,
                     isolation="process", isolation_settings=SETTINGS)


def _records(config: RunConfig) -> dict[str, ResultRecord]:
    return {p.stem: ResultRecord.read(p) for p in sorted(Path(config.results_dir).rglob("*.json"))}


def _snapshot() -> dict[str, tuple]:
    """Path -> (mtime_ns, size, uid) of what a worker must never change: task sources, the
    leaderboard folder, git's HEAD."""
    out = {}
    for root in (REPO / "tasks", REPO / "leaderboard"):
        for p in [root, *root.rglob("*")] if root.exists() else []:
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue
            out[str(p)] = (st.st_mtime_ns, st.st_size, st.st_uid)
    head = REPO / ".git" / "HEAD"
    if head.exists():
        st = head.lstat()
        out[str(head)] = (st.st_mtime_ns, st.st_size, st.st_uid)
    return out


class _ProcessSampler(threading.Thread):
    """Every process below this test process's fork servers (workers, anything they fork),
    sampled while the grid runs: (pid, create_time) identifies each."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen: set[tuple[int, float]] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        from harness.sandbox import forkserver

        while not self.stop.wait(0.1):
            for spid in forkserver.server_pids():
                try:
                    kids = psutil.Process(spid).children(recursive=True)
                except psutil.Error:
                    continue
                for k in kids:
                    try:
                        self.seen.add((k.pid, k.create_time()))
                    except psutil.Error:
                        pass

    def alive(self) -> list[tuple[int, str]]:
        out = []
        for pid, created in self.seen:
            try:
                p = psutil.Process(pid)
                if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                    out.append((pid, " ".join(p.cmdline())[:80]))
            except psutil.Error:
                pass
        return out


class _Canaries:
    """Unix sockets listening outside the sandbox, where hostile_forkserver_connect tries to
    connect: abstract stream and seqpacket addresses, a stream socket on a path in /tmp."""

    def __init__(self):
        tag = f"attriboard-canary-{os.getpid()}-{time.monotonic_ns()}"
        self.path = f"/tmp/{tag}.sock"
        self.socks = []
        for kind, addr in ((socket.SOCK_STREAM, "\0" + tag), (socket.SOCK_SEQPACKET, "\0" + tag + "-seq"),
                           (socket.SOCK_STREAM, self.path)):
            s = socket.socket(socket.AF_UNIX, kind)
            s.bind(addr)
            s.listen(8)
            s.setblocking(False)
            self.socks.append(s)
        os.chmod(self.path, 0o777)  # only the mount namespace may keep the worker out
        self.addresses = ["@" + tag, "@" + tag + "-seq", self.path]

    def connections(self) -> int:
        n = 0
        for s in self.socks:
            try:
                while True:
                    s.accept()[0].close()
                    n += 1
            except BlockingIOError:
                pass
        return n

    def close(self) -> None:
        for s in self.socks:
            s.close()
        Path(self.path).unlink(missing_ok=True)


def _copy_with_parameters(name: str, dest: Path, old: str, new: str) -> Path:
    """A copy of fixture ``name`` whose submission.toml has ``old`` replaced by ``new``."""
    folder = dest / name
    shutil.copytree(SUBS / name, folder)
    toml = folder / "submission.toml"
    text = toml.read_text()
    assert old in text, (name, old)
    toml.write_text(text.replace(old, new))
    return folder


def _skip_without_kernel_layers(layers: list[str]) -> None:
    missing = [x for x in KERNEL_LAYERS if x not in layers]
    if missing:
        pytest.skip(f"workers lack kernel layers on this machine ({', '.join(missing)}): "
                    f"these attacks would reach the host; layers: {layers}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("hostile-sandbox")
    task = get_task("planted_sst", **SMALL_TASK)
    clean = _config(tmp, cache_dir, "clean")
    t0 = time.perf_counter()
    run_grid([task], [resolve(n) for n in BASELINES], clean)
    clean_s = time.perf_counter() - t0
    base = _records(clean)
    _skip_without_kernel_layers(base[BASELINES[0]].isolation.layers)
    present = [str(p) for p in SHM_FILES if p.exists()]
    assert not present, f"remove {present} (left by an earlier run?) so that this test can see a leak"
    assert not LEADERBOARD_MARKER.exists(), LEADERBOARD_MARKER

    canaries = _Canaries()
    copies = tmp / "subs"
    copies.mkdir()
    paths = {n: SUBS / n for n in EXPECTED}
    paths["hostile_git_read"] = _copy_with_parameters("hostile_git_read", copies, 'repo_path = ""',
                                                      f'repo_path = "{REPO}"')
    paths["hostile_forkserver_connect"] = _copy_with_parameters(
        "hostile_forkserver_connect", copies, "canaries = []",
        "canaries = [" + ", ".join(f'"{a}"' for a in canaries.addresses) + "]")
    # hostile submissions first: one that got out would change the baselines after it
    subs = [load_submission(paths[n]) for n in EXPECTED] + [resolve(n) for n in BASELINES]
    mixed = _config(tmp, cache_dir, "mixed")
    before = _snapshot()
    sampler = _ProcessSampler()
    sampler.start()
    t0 = time.perf_counter()
    try:
        summary = run_grid([task], subs, mixed)
    finally:
        mixed_s = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
        connections = canaries.connections()
        canaries.close()
    after = _snapshot()
    print(f"\nclean grid {clean_s:.1f} s, mixed grid ({len(subs)} submissions) {mixed_s:.1f} s")
    return dict(clean=clean, mixed=mixed, summary=summary, before=before, after=after, sampler=sampler,
                connections=connections, tmp=tmp)


@pytest.fixture(scope="module")
def records(runs):
    return _records(runs["mixed"])


def test_the_grid_finishes_with_a_record_for_every_submission(runs, records):
    summary = runs["summary"]
    assert not summary.task_failures, summary.task_failures
    assert set(records) == set(EXPECTED) | set(BASELINES)
    errors = [n for n, o in EXPECTED.items() if o != OK]
    assert len(summary.errors) == len(errors), summary.errors


@pytest.mark.parametrize("name", list(EXPECTED))
def test_hostile_submission_is_contained(records, name):
    r = records[name]
    text = (r.error.message + r.error.traceback) if r.error else ""
    assert "ESCAPED" not in text, f"{name} got out of its sandbox: {r.error.message}"
    assert r.isolation.mode == "process"
    for layer in KERNEL_LAYERS:
        assert layer in r.isolation.layers, (name, r.isolation.layers)
    expected = EXPECTED[name]
    if expected == OK:
        assert r.status == "ok", (name, r.error)
        assert r.scores and r.memory.scope == "worker"
    else:
        assert r.status == "error" and not r.scores, name
        assert (r.error.stage, r.error.type) in expected, (name, r.error.stage, r.error.type, r.error.message)
        assert MESSAGES.get(name, "") in r.error.message, (name, r.error.message)


def _diag(rec: ResultRecord, key: str) -> float:
    """A per-example extra the fixture reported: the same value for every example."""
    d = rec.diagnostics
    assert f"{key}_max" in d, (key, sorted(d))
    assert d[f"{key}_max"] == d[f"{key}_mean"], key
    return d[f"{key}_max"]


def test_mounts_and_namespaces_cannot_be_changed(records):
    r = records["hostile_umount"]
    assert r.status == "ok", r.error
    for call in SECCOMP_DENIED:
        assert _diag(r, f"errno_{call}") == errno.EPERM, call
    for call in ("open_task_source", "open_git_head", "write_leaderboard"):  # not in the worker's root
        assert _diag(r, f"errno_{call}") in (errno.ENOENT, errno.EROFS, errno.EACCES), call
    assert not LEADERBOARD_MARKER.exists()


def test_no_capability_no_root_no_tracing(records):
    r = records["hostile_capabilities"]
    assert r.status == "ok", r.error
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert _diag(r, f"cap_{cap}") == 0, cap
    for call in ("setuid_root", "setgid_root", "setresuid_root", "setgroups", "chown_root", "capset_all",
                 "ptrace_traceme", "ptrace_attach_1", "process_vm_readv_1"):
        assert _diag(r, f"errno_{call}") == errno.EPERM, call
    assert _diag(r, "errno_open_proc_1_mem") != 0
    assert _diag(r, "pid") == 1 and _diag(r, "ppid") == 0  # PID 1 of its own namespace: the harness is outside


def test_nothing_leads_back_to_the_fork_server_or_the_harness(runs, records):
    r = records["hostile_forkserver_connect"]
    assert r.status == "ok", r.error
    assert _diag(r, "n_fds") == 5 and _diag(r, "max_fd") == 4  # stdin, output, its two channel pipes
    assert _diag(r, "n_canaries") == 3 and _diag(r, "n_connect_attempts") >= 9
    assert _diag(r, "n_unix_sockets") == 0  # its network namespace holds no socket of anyone else
    assert runs["connections"] == 0, "a worker connected to a socket listening outside the sandbox"


def test_the_repository_is_not_readable(records):
    r = records["hostile_git_read"]
    assert r.status == "ok", r.error
    assert _diag(r, "repo_path_given") == 1 and _diag(r, "n_paths_tried") > 100
    assert 1 <= _diag(r, "repo_entries") <= 3  # harness, submissions (and .venv when it lives there)


def test_forged_pass_counts_are_marked_self_reported_and_time_is_measured(records):
    r = records["hostile_forged_figures"]
    assert r.status == "ok", r.error
    assert r.cost.forward_passes == 0 and r.cost.backward_passes == 0  # what it claimed
    assert r.cost.self_reported is True
    assert r.timing.measured_by == "harness"
    assert r.timing.cpu_total_s is not None and r.timing.cpu_total_s > 0  # it did run the model
    assert r.timing.self_reported_total_s is not None
    assert r.memory.scope == "worker" and r.memory.peak_rss_mb > 0


def test_dev_shm_and_tmp_are_private_to_each_worker(records):
    assert records["hostile_dev_shm"].status == "ok"
    assert _diag(records["hostile_dev_shm"], "wrote") == 1
    assert records["hostile_dev_shm_reader"].status == "ok", records["hostile_dev_shm_reader"].error
    assert _diag(records["hostile_dev_shm_reader"], "seen") == 0
    for p in SHM_FILES:
        assert not p.exists(), f"a worker's private file is on the host: {p}"


def test_process_flood_is_stopped_by_the_process_limit(records):
    r = records["hostile_process_flood"]
    n = int(r.error.message.split("left ")[1].split()[0])
    assert 50 < n <= SETTINGS.max_processes, r.error.message


def test_baselines_are_identical_with_and_without_the_hostile_submissions(runs, records):
    clean = _records(runs["clean"])
    for name in BASELINES:
        a, b = clean[name], records[name]
        assert a.status == b.status == "ok", (name, b.error)
        assert a.scores == b.scores, name
        assert a.per_example == b.per_example, name
        assert a.cost == b.cost, name


def test_a_board_is_built_from_the_results(runs, records, tmp_path):
    from harness.board.leaderboard import build

    paths = build(Path(runs["mixed"].results_dir), tmp_path / "board")
    md = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert (tmp_path / "board" / "LEADERBOARD.md") in paths and (tmp_path / "board" / "index.html").exists()
    for name in [*EXPECTED, *BASELINES]:
        assert name in md, name


def test_no_process_outlives_the_run(runs):
    sampler = runs["sampler"]
    assert len(sampler.seen) > len(EXPECTED), "the sampler must have seen the workers"
    left = sampler.alive()
    deadline = time.monotonic() + 5
    while left and time.monotonic() < deadline:  # killed ones may take a moment to be reaped
        time.sleep(0.2)
        left = sampler.alive()
    assert not left, f"processes of the run outlived it: {left[:10]}"
    dirs = tuple(worker_dirs())
    stray = [p.pid for p in psutil.process_iter(["cwd", "status"])
             if dirs and (p.info["cwd"] or "").startswith(dirs) and p.info["status"] != psutil.STATUS_ZOMBIE]
    assert not stray, stray


def test_no_file_outside_the_results_and_cache_changed(runs):
    from harness.sandbox.worker import SANDBOX_UID

    before, after = runs["before"], runs["after"]
    new = sorted(set(after) - set(before))
    assert not new, f"files appeared during the run: {new[:10]}"
    assert not [p for p, (_, _, uid) in after.items() if uid == SANDBOX_UID], "a file is owned by the sandbox uid"
    changed = sorted(p for p in before if p in after and before[p][:2] != after[p][:2])
    # tasks/ is also edited by people while tests run: only a change elsewhere is certain to be the run's
    ours = [p for p in changed if not p.startswith(str(REPO / "tasks"))]
    assert not ours, f"changed during the run: {ours}"
    if changed:
        import warnings

        warnings.warn(f"task sources changed while the grid ran (someone editing them?): {changed}")


# -- single workers: what the harness process itself sees ------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    from harness.testing import TINY_SENTENCES, tiny_bundle

    bundle = tiny_bundle(sensitive=True)
    return bundle, bundle.make_batch(TINY_SENTENCES[:3], seed=0)


def _run_one(name: str, bundle, batch) -> WorkerError | None:
    try:
        with open_explainer(load_submission(SUBS / name), SETTINGS, bundle=bundle) as ex:
            ex.explain(bundle, batch)
    except WorkerError as e:
        return e
    return None


def test_flooding_every_descriptor_does_not_reach_the_harness_output(tiny, capfd):
    err = _run_one("hostile_tracker_pipe", *tiny)
    out, errs = capfd.readouterr()
    assert err is None or (err.stage, err.error_type) in EXPECTED["hostile_tracker_pipe"], err
    assert "ESCAPED" not in (err.message if err else "")
    assert len(out) + len(errs) < 2**20, f"{len(out) + len(errs)} bytes reached the harness's stdout/stderr"
    assert "attriboard flood" * 100 not in out + errs


def test_an_npy_frame_declaring_8_tib_allocates_nothing(tiny):
    me = psutil.Process()
    rss0, peak0 = me.memory_info().rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    err = _run_one("hostile_huge_npy", *tiny)
    assert err is not None and (err.stage, err.error_type) == ("crash", "ProtocolError"), err
    assert "declares shape (1099511627776,)" in err.message
    grew_mb = (me.memory_info().rss - rss0) / 2**20
    peak_grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak0) / 1024
    assert grew_mb < 200 and peak_grew_mb < 200, (grew_mb, peak_grew_mb)
    # and the next worker starts as usual
    assert _run_one("hostile_dev_shm_reader", *tiny) is None
