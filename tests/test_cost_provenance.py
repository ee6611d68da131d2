"""Cost figures: measured by the harness from outside the worker, pass counts self-reported
and cross-checked against a submission's declared [passes] (docs/SECURITY.md)."""

import pytest

from harness.sandbox.isolation import IsolationSettings
from harness.board.leaderboard import build
from harness.engine.records import ResultRecord
from harness.engine.runner import RunConfig, run_grid
from harness.core.submission import SubmissionError, eval_passes, load_submission, resolve
from harness.engine.task import get_task

from conftest import FIXTURES, SMALL_TASK


def _declared_fixture(tmp_path, passes: str = 'forward = "n_words + 1"'):
    """hostile_forged_figures (rewinds its pass counter to zero) declaring leave-one-out's passes."""
    import shutil

    d = tmp_path / "hostile_forged_figures_declared"
    shutil.copytree(FIXTURES / "submissions" / "hostile_forged_figures", d)
    toml = (d / "submission.toml").read_text().replace('name = "hostile_forged_figures"',
                                                       'name = "hostile_forged_figures_declared"')
    (d / "submission.toml").write_text(toml + f"\n[passes]\n{passes}\n")
    return d


def test_pass_expressions_are_arithmetic_only():
    assert eval_passes("n_words + 1", {"n_words": 7}) == 8
    assert eval_passes("max(n_steps, 2) * 2 // 3", {"n_steps": 5}) == 3
    for bad in ("__import__('os')", "n_words.real", "[1][0]", "lambda: 1", "n_words ** 99999", "x if 1 else 2"):
        with pytest.raises(ValueError):
            eval_passes(bad, {"n_words": 1})
    with pytest.raises(ValueError, match="unknown name"):
        eval_passes("n_steps", {})


def test_declared_passes_are_validated_at_load(tmp_path):
    with pytest.raises(SubmissionError, match="passes"):
        load_submission(_declared_fixture(tmp_path / "a", 'forward = "open(1)"'))
    with pytest.raises(SubmissionError, match="unknown count"):
        load_submission(_declared_fixture(tmp_path / "b", 'gpu = "1"'))
    assert load_submission(_declared_fixture(tmp_path / "c")).meta.passes == {"forward": "n_words + 1"}


def test_measured_figures_and_the_pass_check(tmp_path, cache_dir):
    subs = [resolve("leave_one_out"), resolve("random"),
            load_submission(_declared_fixture(tmp_path))]
    cfg = RunConfig(results_dir=tmp_path / "results", cache_dir=cache_dir, isolation="process", batch_size=8,
                    isolation_settings=IsolationSettings(timeout_s=60, memory_mb=3000))
    summary = run_grid([get_task("planted_sst", **SMALL_TASK)], subs, cfg)
    recs = {r.submission.name: r for r in map(ResultRecord.read, summary.written)}
    loo, rnd, forged = recs["leave_one_out"], recs["random"], recs["hostile_forged_figures_declared"]
    for r in (loo, rnd, forged):
        assert r.status == "ok"
        assert r.timing.measured_by == "harness" and r.timing.cpu_total_s is not None
        assert r.timing.self_reported_total_s is not None
        assert r.cost.self_reported and r.memory.scope == "worker" and r.memory.peak_rss_mb > 0
    assert loo.cost.pass_check == "consistent"
    assert loo.cost.forward_per_example >= 2  # the input and at least one deletion per example
    assert rnd.cost.pass_check == "not checked"
    assert forged.cost.forward_passes == 0 and forged.cost.pass_check.startswith("inconsistent: forward 0 <")
    assert forged.timing.cpu_total_s > 0  # it did call the model: the CPU it used is measured anyway
    board = tmp_path / "board"
    build(tmp_path / "results", board)
    md = (board / "LEADERBOARD.md").read_text()
    rows = [line for line in md.splitlines() if "| hostile_forged_figures_declared |" in line and "json" in line]
    assert len(rows) == 1 and "| 0.0! |" in rows[0], rows
    loo_row = [line for line in md.splitlines() if "| leave_one_out " in line and "json" in line]  # (its links follow)
    assert len(loo_row) == 1 and "* |" in loo_row[0] and "!" not in loo_row[0].split("|")[-6], loo_row


def test_a_record_that_cannot_be_built_fails_alone(tmp_path, cache_dir, monkeypatch):
    """What one submission's run produced cannot be turned into a record (here: a forged
    infinite peak memory): that submission gets a stage-``record`` error, its cached chunks
    are dropped, the others are written, and the board is still built."""
    import harness.engine.runner as runner

    real = runner.run_submission

    def forged(sub, ctx, config):
        rec = real(sub, ctx, config)
        if sub.name == "gradient":
            rec.memory.peak_rss_mb = float("inf")  # set after validation: write() must refuse it
        return rec

    monkeypatch.setattr(runner, "run_submission", forged)
    cfg = RunConfig(results_dir=tmp_path / "results", cache_dir=cache_dir, batch_size=8)
    summary = run_grid([get_task("planted_sst", **SMALL_TASK)], [resolve("gradient"), resolve("random")], cfg)
    recs = {r.submission.name: r for r in map(ResultRecord.read, summary.written)}
    assert recs["random"].status == "ok"
    g = recs["gradient"]
    assert g.status == "error" and g.error.stage == "record" and "non-finite" in g.error.message
    assert not (cache_dir / "attributions" / "gradient" / g.run_key[:16]).exists()  # its chunks dropped
    assert (cache_dir / "attributions" / "random" / recs["random"].run_key[:16]).is_dir()  # the others' kept
    assert any(e.startswith("gradient on planted_sst: record") for e in summary.errors)
    build(tmp_path / "results", tmp_path / "board")
    assert "gradient" in (tmp_path / "board" / "LEADERBOARD.md").read_text()


def test_a_board_whose_every_submission_failed_is_still_written(tmp_path, cache_dir):
    """A task board with only failed records (here: the only submission crashes at load)
    renders with its failures listed instead of aborting the whole build."""
    d = tmp_path / "broken"
    d.mkdir()
    (d / "submission.toml").write_text('name = "broken"\nversion = "0.1.0"\nauthors = ["a"]\npaper = "p"\n'
                                       'license = "MIT"\nentry_point = "explainer:Nope"\n')
    (d / "explainer.py").write_text("raise ImportError('broken on purpose')\n")
    cfg = RunConfig(results_dir=tmp_path / "results", cache_dir=cache_dir, batch_size=8)
    run_grid([get_task("planted_sst", **SMALL_TASK)], [load_submission(d)], cfg)
    build(tmp_path / "results", tmp_path / "board")
    md = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert "Failed submissions" in md and "| broken | load |" in md


def test_a_call_cpu_is_the_larger_of_tick_and_nanosecond_differences():
    from harness.sandbox.isolation import WorkerProcess

    between = WorkerProcess.cpu_between
    # a 3 ms call inside one 10 ms tick: only the nanosecond run times see it
    assert between((0.01, 0.004), (0.01, 0.007)) == pytest.approx(0.003)
    # a thread that burned 100 ms and exited: gone from the live threads, still in the ticks
    assert between((0.0, 0.5), (0.1, 0.45)) == pytest.approx(0.1)
    assert between((0.2, 0.2), (0.1, 0.1)) == 0.0
