"""The run grid's executors: ``--jobs N`` local worker processes and Ray give the serial run's
records (timing aside); caches are locked so each model is trained once; only the driver
writes; a killed driver resumes without redoing finished cells; a built-in ensemble is
composed from its members' cached maps, equal to running it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import SMALL_TASK
from harness.core.submission import resolve
from harness.engine.records import ResultRecord
from harness.engine.runner import RunConfig, run_grid
from harness.engine.task import get_task

ROOT = Path(__file__).resolve().parents[1]
SUBS = ["random", "gradient", "lime", "kernel_shap", "integrated_gradients", "ensemble_top3"]
#: what differs between two runs of one spec: when and how long, never what
VOLATILE = ("timing", "memory", "provenance", "created_at")


def _grid(tmp, cache, subs=SUBS, **kw):
    cfg = RunConfig(results_dir=tmp / "results", cache_dir=cache, batch_size=8, **kw.pop("config", {}))
    summary = run_grid([get_task("planted_sst", **SMALL_TASK)], [resolve(s) for s in subs], cfg, **kw)
    return summary, {r.submission.name: r for r in map(ResultRecord.read, summary.written)}


def _stable(rec: ResultRecord) -> dict:
    d = rec.model_dump(mode="json")
    for k in VOLATILE:
        d.pop(k, None)
    return d


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serial")
    summary, recs = _grid(tmp, tmp / "cache")
    assert not summary.errors and set(recs) == set(SUBS)
    return tmp, recs


def test_jobs_2_gives_the_serial_records_and_trains_each_model_once(serial, tmp_path):
    _, want = serial
    summary, got = _grid(tmp_path, tmp_path / "cache", jobs=2)  # a fresh cache: both workers need the model at once
    assert not summary.errors and set(got) == set(SUBS)
    for name in SUBS:
        assert _stable(got[name]) == _stable(want[name]), name
        assert got[name].cost == want[name].cost
    # each model trained once, under its lock; no half-written files left behind
    models = [p for p in (tmp_path / "cache" / "models").iterdir() if p.is_dir()]
    mlms = [p for p in (tmp_path / "cache" / "mlm").iterdir() if p.is_dir()]
    assert len(models) == 1 and len(mlms) == 1
    assert (tmp_path / "cache" / "models" / f"{models[0].name}.lock").is_file()
    assert not list((tmp_path / "results").rglob("*.tmp")) and not list((tmp_path / "cache").rglob("*.tmp"))
    # the workers returned their chunks; the driver wrote them where a serial run would
    for name in SUBS:
        folder = tmp_path / "cache" / "attributions" / name / got[name].run_key[:16]
        assert len(list(folder.glob("*.json"))) == -(-SMALL_TASK["n_eval"] // 8), name
    # a second parallel run finds every cell up to date
    again, _ = _grid(tmp_path, tmp_path / "cache", jobs=2)
    assert not again.written and len(again.skipped) == len(SUBS)


def test_an_ensemble_is_composed_from_its_members_cached_maps(serial, tmp_path):
    tmp, recs = serial
    ens = recs["ensemble_top3"]
    assert ens.timing.composed_from == ["lime", "kernel_shap", "integrated_gradients"]
    members = [recs[m] for m in ens.timing.composed_from]
    assert ens.cost.forward_passes == sum(m.cost.forward_passes for m in members)
    assert ens.cost.backward_passes == sum(m.cost.backward_passes for m in members)
    assert ens.timing.total_s == pytest.approx(sum(m.timing.total_s for m in members), rel=1e-9)
    # running the ensemble itself (--force: nothing composed) gives the same maps, scores and passes
    summary, direct = _grid(tmp_path, tmp / "cache", subs=["ensemble_top3"], config={"force": True})
    d = direct["ensemble_top3"]
    assert d.timing.composed_from is None and d.status == "ok"
    for metric, values in ens.per_example.items():
        np.testing.assert_allclose(values, d.per_example[metric], rtol=0, atol=1e-9, err_msg=metric)
    assert d.cost.forward_passes == ens.cost.forward_passes and d.run_key == ens.run_key


def test_a_strangers_members_parameter_is_never_composed(tmp_path):
    """Only a built-in ensemble (same folder, same code hash, the harness's Ensemble class) is
    composed by the harness; a folder declaring ``members`` runs as itself."""
    import shutil

    from harness.engine.runner import composite_members

    assert composite_members(resolve("ensemble_all"))[:2] == ["gradient", "gradient_x_input"]
    assert composite_members(resolve("lime")) == []
    copy = tmp_path / "ensemble_top3"
    shutil.copytree(ROOT / "submissions" / "ensemble_top3", copy)
    assert composite_members(resolve(str(copy))) == []  # same name and code, not the built-in folder
    (copy / "submission.toml").write_text((copy / "submission.toml").read_text().replace('name = "ensemble_top3"',
                                                                                          'name = "my_ensemble"'))
    assert composite_members(resolve(str(copy))) == []


def test_cache_lock_serialises_processes(tmp_path):
    """Two processes building one cache entry: the second waits for the first."""
    script = (
        "import sys, time, json; from pathlib import Path\n"
        "from harness.core.locks import cache_lock\n"
        "p = Path(sys.argv[1]); log = p.parent / 'log'\n"
        "with cache_lock(p):\n"
        "    t0 = time.time(); done = (p / 'built').exists()\n"
        "    if not done:\n"
        "        time.sleep(0.8); p.mkdir(exist_ok=True); (p / 'built').write_text('x')\n"
        "    with open(log, 'a') as f: f.write(json.dumps([t0, time.time(), done]) + '\\n')\n")
    entry = tmp_path / "models" / "m"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(entry)], cwd=ROOT) for _ in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    spans = sorted(json.loads(x) for x in (tmp_path / "models" / "log").read_text().splitlines())
    assert [s[2] for s in spans] == [False, True]  # built once, the other found it built
    assert spans[1][0] >= spans[0][1] - 1e-3  # the second entered after the first left


def test_a_killed_parallel_driver_resumes_without_redoing_finished_cells(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    sets = [f"--set={k}={v}" for k, v in SMALL_TASK.items()]
    cmd = [sys.executable, "-m", "harness.cli.main", "run", "--tasks", "planted_sst", *sets, "--batch-size", "8",
           "--submissions", "random", "gradient", "occlusion", "leave_one_out", "integrated_gradients", "lime",
           "--jobs", "2", "--isolation", "none", "--no-leaderboard",
           "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    results = tmp_path / "results" / "planted_sst" / "tiny-bert"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(results.glob("*.json"))) < 2 and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-run
    proc.wait(timeout=30)
    finished = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert len(finished) >= 2, proc.stderr.read().decode()[-3000:]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert sum("up to date, skipped" in line for line in out.stderr.splitlines()) >= len(finished)
    for name, mtime in finished.items():
        assert (results / name).stat().st_mtime_ns == mtime, f"{name} was redone"
    assert len(list(results.glob("*.json"))) == 6
    assert all(ResultRecord.read(p).status == "ok" for p in results.glob("*.json"))


def test_bad_executor_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        _grid(tmp_path, tmp_path / "cache", subs=["random"], executor="dask")


def test_ray_executor_gives_the_serial_records(serial, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra (bash scripts/setup.sh --with-ray)")
    _, want = serial
    summary, got = _grid(tmp_path, tmp_path / "cache", jobs=2, executor="ray")
    assert not summary.errors and set(got) == set(SUBS)
    for name in SUBS:
        assert _stable(got[name]) == _stable(want[name]), name
    assert not ray.is_initialized()  # the local cluster started for the run is shut down


def test_parallel_runs_start_the_longest_known_cells_first():
    from harness.engine.grid import Job, _schedule, longest_first

    jobs = [Job(0, "a", (), cost=1.0), Job(1, "b", ()), Job(2, "c", (), cost=30.0), Job(3, "d", (), after=(2,), cost=50.0)]
    assert [j.label for j in longest_first(jobs)] == ["d", "c", "a", "b"]
    started, taken = [], []

    def submit(job, slot):
        started.append(job.label)
        return job.index

    def wait(handles):
        return [(handles[0], None)]

    _schedule(longest_first(jobs), 2, submit, wait, lambda job, result: taken.append(job.label))
    assert started[:2] == ["c", "a"]  # d waits for c, however long it is
    assert sorted(taken) == ["a", "b", "c", "d"] and taken.index("c") < started.index("d")


def test_a_free_worker_takes_the_cells_of_the_tasks_it_prepared():
    """Affinity: each worker slot keeps to its own tasks (one preparation each), a free slot takes
    a task no other slot prepared before a second preparation, and steals rather than idles."""
    from harness.engine.grid import Job, _schedule, pick

    jobs = [Job(i, f"{t}{i}", (), group=t) for i, t in enumerate("aaabbbc")]
    groups = [{"a"}, {"b"}]
    assert pick(jobs, 0, groups).group == "a" and pick(jobs, 1, groups).group == "b"
    assert pick(jobs[6:], 0, groups).label == "c6" and pick(jobs[3:6], 0, [{"a"}, {"b"}]).label == "b3"  # steal
    assert pick(jobs, 0, [set(), {"a"}]).group == "b"  # a new task before a second preparation of "a"
    runs = []

    def submit(job, slot):
        runs.append((slot, job.group))
        return slot

    def wait(handles):  # slots finish in turn
        return [(handles[0], None)]

    _schedule(list(jobs), 2, submit, wait, lambda job, result: None, affinity=True)
    prepared = {(slot, g) for slot, g in runs}
    assert len(runs) == 7 and len({g for _, g in prepared}) == 3
    assert sum(1 for s, g in prepared if g == "a") == 1 and sum(1 for s, g in prepared if g == "b") == 1
