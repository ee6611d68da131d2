"""Hostile submissions (tests/fixtures/submissions/hostile_*) are contained; official runs
draw secret planted words.  See docs/SECURITY.md.

The grid tests start one sandboxed worker per (submission, task): a few seconds each.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import psutil
import pytest

from harness.sandbox.isolation import IsolationSettings, WorkerError, open_explainer
from harness.engine.official import SecretError, commitment, load_secret
from harness.engine.records import ResultRecord
from harness.engine.runner import RunConfig, run_grid, run_submission
from harness.core.submission import load_submission, resolve
from harness.engine.task import get_task

from conftest import FIXTURES, REPO, SMALL_TASK

SUBS = FIXTURES / "submissions"
BASELINES = ["random", "gradient"]
#: fixture -> (stage, error type) of its error record
HOSTILE = {
    "hostile_read_gold": ("sandbox", "SandboxViolation"),
    "hostile_memory_walk": ("sandbox", "SandboxViolation"),
    "hostile_monkeypatch_metric": ("sandbox", "SandboxViolation"),
    "hostile_write_leaderboard": ("sandbox", "SandboxViolation"),
    "hostile_socket": ("sandbox", "SandboxViolation"),
    "hostile_infinite_loop": ("timeout", "Timeout"),
    "hostile_memory_bomb": ("resource", "MemoryLimitExceeded"),
    "hostile_print_flood": ("resource", "OutputLimitExceeded"),
    "hostile_orphan": ("resource", "LeftoverProcesses"),
    "hostile_sys_exit": ("crash", "SystemExit"),
    "hostile_os_exit": ("crash", "WorkerExited"),
    "hostile_segfault": ("crash", "WorkerCrashed"),
    "hostile_nonfinite": ("validate-output", "OutputError"),
    "hostile_bad_output": ("validate-output", "OutputError"),
    "nan_scores": ("validate-output", "OutputError"),
    "wrong_shape": ("validate-output", "OutputError"),
    "wrong_dtype": ("validate-output", "OutputError"),
}
MESSAGES = {
    "hostile_read_gold": "open('" + str(REPO / "tasks"),
    "hostile_memory_walk": "import tasks",
    "hostile_monkeypatch_metric": "import harness.metrics.base",
    "hostile_write_leaderboard": str(REPO / "leaderboard"),
    "hostile_socket": "network access",
    "hostile_segfault": "SIGSEGV",
    "hostile_sys_exit": "sys.exit(3)",
    "hostile_os_exit": "exited with code 0",
    "hostile_nonfinite": "NaN or infinite",
    "hostile_bad_output": "must return harness.protocols.Attributions",
}
MARKERS = [REPO / "leaderboard" / "hostile_was_here.txt",
           REPO / "leaderboard" / "results" / "planted_sst" / "tiny-bert" / "hostile_was_here.json"]
SETTINGS = IsolationSettings(timeout_s=20, memory_mb=1500)


def _config(tmp: Path, cache_dir: Path, name: str) -> RunConfig:
    return RunConfig(results_dir=tmp / name, cache_dir=cache_dir, batch_size=8, force=True,
                     isolation="process", isolation_settings=SETTINGS)


def _records(config: RunConfig) -> dict[str, ResultRecord]:
    return {p.stem: ResultRecord.read(p) for p in sorted(Path(config.results_dir).rglob("*.json"))}


def _survivors(since: float) -> list[psutil.Process]:
    """Processes started since ``since`` whose working directory is the temporary folder of
    a worker of this test process: workers, and anything they forked."""
    from harness.sandbox.isolation import worker_dirs

    from harness.sandbox import forkserver

    dirs = tuple(worker_dirs())
    out = []
    for p in psutil.process_iter(["cwd", "create_time", "status"]):
        cwd = p.info["cwd"] or ""
        if dirs and cwd.startswith(dirs) and p.info["create_time"] >= since - 1 \
                and p.info["status"] != psutil.STATUS_ZOMBIE:
            out.append(p)
    # and every process below a fork server (workers live in their own root: their cwd is not ours)
    for pid in forkserver.server_pids():
        try:
            kids = psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            continue
        out += [k for k in kids if k not in out and k.status() != psutil.STATUS_ZOMBIE]
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache_dir):
    import time

    since = time.time()
    tmp = tmp_path_factory.mktemp("hostile")
    task = get_task("planted_sst", **SMALL_TASK)
    clean = _config(tmp, cache_dir, "clean")
    run_grid([task], [resolve(n) for n in BASELINES], clean)
    mixed = _config(tmp, cache_dir, "mixed")
    # hostile submissions first: one that managed to patch the harness would change the baselines
    subs = [load_submission(SUBS / n) for n in HOSTILE] + [resolve(n) for n in BASELINES]
    summary = run_grid([task], subs, mixed)
    return clean, mixed, summary, since


def test_every_hostile_submission_is_contained_with_a_specific_error(runs):
    _, mixed, summary, _ = runs
    recs = _records(mixed)
    assert not summary.task_failures
    assert set(recs) == set(HOSTILE) | set(BASELINES)
    for name, (stage, etype) in HOSTILE.items():
        r = recs[name]
        assert r.status == "error" and not r.scores, name
        assert (r.error.stage, r.error.type) == (stage, etype), (name, r.error)
        assert MESSAGES.get(name, "") in r.error.message, (name, r.error.message)
        assert r.isolation.mode == "process"
    assert len(summary.errors) == len(HOSTILE)


def test_baseline_results_are_identical_with_and_without_hostile_submissions(runs):
    clean, mixed, _, _ = runs
    a, b = _records(clean), _records(mixed)
    for name in BASELINES:
        assert a[name].status == b[name].status == "ok"
        assert a[name].scores == b[name].scores, name
        assert a[name].per_example == b[name].per_example, name
        assert a[name].cost == b[name].cost, name
        assert a[name].memory.scope == "worker" and a[name].memory.peak_rss_mb > 0
        assert a[name].isolation.mode == "process" and "audit-guard" in a[name].isolation.layers


def test_hostile_submissions_leave_nothing_behind(runs):
    *_, since = runs
    for m in MARKERS:
        assert not m.exists(), m
    psutil.wait_procs(_survivors(since), timeout=5)  # killed ones may take a moment to be reaped
    left = [(p.pid, p.info["cwd"]) for p in _survivors(since)]
    assert not left, f"a worker or a child it forked outlived the run: {left}"


def test_isolated_results_equal_in_process_results(runs, small_ctx, tmp_path, cache_dir):
    clean, *_ = runs
    isolated = _records(clean)
    for name in BASELINES:
        local = run_submission(resolve(name), small_ctx,
                               RunConfig(results_dir=tmp_path, cache_dir=cache_dir, batch_size=8, force=True))
        assert local.isolation.mode == "none"
        assert local.per_example == isolated[name].per_example, name
        # the same passes, counted in the worker (self-reported there, counted here in process)
        iso = isolated[name].cost
        assert local.cost.model_dump(exclude={"self_reported"}) == iso.model_dump(exclude={"self_reported"}), name
        assert iso.self_reported and not local.cost.self_reported
        assert isolated[name].timing.measured_by == "harness" and local.timing.measured_by == "in-process"
        assert isolated[name].timing.cpu_total_s > 0


def test_in_process_runs_are_gameable_which_is_why_workers_exist(small_ctx, tmp_path, cache_dir):
    """Without isolation the memory-walking cheat finds the gold annotations and scores 1.0."""
    rec = run_submission(load_submission(SUBS / "hostile_memory_walk"), small_ctx,
                         RunConfig(results_dir=tmp_path, cache_dir=cache_dir, batch_size=8, force=True))
    assert rec.status == "ok" and rec.scores["gt_overlap"].value == 1.0


def test_worker_gets_the_model_again_when_it_changes():
    import torch

    from harness.testing import TINY_SENTENCES, tiny_bundle

    bundle = tiny_bundle(sensitive=True)
    batch = bundle.make_batch(TINY_SENTENCES[:3], seed=0)
    sub = resolve("gradient")
    local = sub.instantiate()
    import time

    t0 = time.time()
    with open_explainer(sub, SETTINGS, bundle=bundle) as ex:
        assert _survivors(t0), "the survivor check must see a live worker"
        before = bundle.counter.snapshot()
        a = ex.explain(bundle, batch)
        after = bundle.counter.snapshot()
        assert after[1] - before[1] == len(batch)  # backward passes counted in the worker
        np.testing.assert_array_equal(a.scores, local.explain(bundle, batch).scores)
        with torch.no_grad():  # in place, as a weight-randomisation check would
            bundle.model.classifier.weight.mul_(-2.0)
        b = ex.explain(bundle, batch)
        np.testing.assert_array_equal(b.scores, local.explain(bundle, batch).scores)
        assert not np.array_equal(a.scores, b.scores)
        other = tiny_bundle(seed=1, sensitive=True)  # another bundle object: sent too
        c = ex.explain(other, other.make_batch(TINY_SENTENCES[:3], seed=0))
        np.testing.assert_array_equal(c.scores, local.explain(other, other.make_batch(TINY_SENTENCES[:3], seed=0)).scores)
    psutil.wait_procs(_survivors(t0), timeout=5)
    assert not _survivors(t0)


def _tmp_submission(folder: Path, code: str) -> Path:
    folder.mkdir()
    (folder / "submission.toml").write_text(
        f'name = "{folder.name}"\nversion = "0.0.1"\nauthors = ["t"]\npaper = "t"\nlicense = "MIT"\n'
        'entry_point = "explainer:E"\n')
    (folder / "explainer.py").write_text(code)
    return folder


def test_load_failures_have_their_stage(tmp_path):
    cases = {
        "import_error": ("raise ImportError('no such dependency')\n", "load", "SubmissionError"),
        "peeks_at_import": ("import tasks.planted_sst.task\nclass E:\n    pass\n", "sandbox", "SandboxViolation"),
        "exits_in_init": ("import sys\nclass E:\n    def __init__(self):\n        sys.exit(1)\n", "crash", "SystemExit"),
    }
    for name, (code, stage, etype) in cases.items():
        sub = load_submission(_tmp_submission(tmp_path / name.replace("_", "-"), code))
        with pytest.raises(WorkerError) as e:
            with open_explainer(sub, SETTINGS):
                pass
        assert (e.value.stage, e.value.error_type) == (stage, etype), (name, e.value.message)


# -- official runs ---------------------------------------------------------------------------

SECRET = "0123456789abcdef-test-secret-not-for-real-use"


def test_secret_is_validated(tmp_path, monkeypatch):
    monkeypatch.delenv("ATTRIBOARD_SECRET_SEED", raising=False)
    assert load_secret() is None
    f = tmp_path / "s.txt"
    f.write_text("short\n")
    with pytest.raises(SecretError, match="at least"):
        load_secret(f)
    f.write_text(SECRET + "\n")
    assert load_secret(f) == SECRET
    monkeypatch.setenv("ATTRIBOARD_SECRET_SEED", SECRET)
    assert load_secret() == SECRET
    assert commitment(SECRET) == hashlib.sha256(b"attriboard-secret-v1:" + SECRET.encode()).hexdigest()


def test_secret_planted_words_are_hidden_from_explainers_and_records(tmp_path, cache_dir):
    public = get_task("planted_sst", **SMALL_TASK)
    secret_task = get_task("planted_sst", **SMALL_TASK)
    secret_task.use_secret(SECRET)
    data, pub = secret_task.prepare(), public.prepare()
    from tasks.planted_sst.task import PLANTED_PAIRS

    planted = {e.segments[0][i] for e, g in zip(data.examples, data.gold) for i in g}
    assert len(planted) == 2 * len(PLANTED_PAIRS) and not planted & {w for p in PLANTED_PAIRS for w in p}
    # the spec and the data hash do not name the words (nor can they be matched against pairs)
    spec_json = secret_task.spec.model_dump_json()
    assert not any(w in spec_json for w in planted) and SECRET not in spec_json
    assert data.data_hash != pub.data_hash
    # the planted words are not the only new words in a sentence: each carries distractors
    # (tests/test_official.py: the secret vocabulary, frequency analysis)
    from tasks.planted_sst.corpus import corpus_vocabulary

    for e, g in zip(data.examples, data.gold):
        assert sum(w not in corpus_vocabulary() for w in e.segments[0]) > len(g)
    # regenerating the task from its public code gives other sentences: no gold to copy
    assert not {e.segments for e in data.examples} & {e.segments for e in pub.examples}

    config = RunConfig(results_dir=tmp_path / "r", cache_dir=cache_dir, batch_size=8, secret=SECRET,
                       hidden_subset=16)
    assert SECRET not in repr(config)
    summary = run_grid([secret_task], [resolve("random")], config)
    assert not summary.task_failures, summary.task_failures
    path = next((tmp_path / "r").rglob("random.json"))
    text = path.read_text()
    assert SECRET not in text and not any(f'"{w}"' in text or f" {w} " in text for w in planted)
    rec = ResultRecord.read(path)
    assert rec.official.secret_commitment == commitment(SECRET)
    assert rec.official.secret_vocabulary and rec.official.hidden_subset == 16
    assert rec.official.pool_size == SMALL_TASK["n_eval"] and rec.task.n_examples == 16
    assert len(rec.example_ids) == 16 and json.loads(text)["official"]["secret_vocabulary"] is True
