"""``attriboard verify``: a fresh run verifies; hand-edited scores, a tampered code hash and
unusable input are told apart; environment differences are warnings, not mismatches."""

import json
import shutil

import numpy as np
import pytest

from harness.cli.main import main
from harness.engine.records import MetricScore, ResultRecord
from harness.engine.runner import RunConfig, run_grid
from harness.metrics.stats import bootstrap_ci
from harness.core.submission import resolve
from harness.engine.task import get_task
from harness.engine.verify import CPU_TOLERANCE, DEVICE_TOLERANCE, compare_scores, declared_tolerance

from conftest import SMALL_TASK

TASK_ARGS = ["--n-eval", str(SMALL_TASK["n_eval"])] + [
    a for k, v in SMALL_TASK.items() if k != "n_eval" for a in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory, cache_dir):
    results = tmp_path_factory.mktemp("verify-results")
    # batch size 8 (not the default 16): verify must take it from the record's run spec
    config = RunConfig(results_dir=results, cache_dir=cache_dir, batch_size=8)
    summary = run_grid([get_task("planted_sst", **SMALL_TASK)], [resolve("random"), resolve("gradient")], config)
    assert len(summary.written) == 2 and not summary.errors
    return results


def _verify(target, cache_dir, *extra) -> int:
    return main(["verify", str(target), "--cache-dir", str(cache_dir), *TASK_ARGS, *extra])


def _edited(fresh_run, tmp_path, edit, name="gradient"):
    src = fresh_run / "planted_sst" / "tiny-bert" / f"{name}.json"
    raw = json.loads(src.read_text())
    edit(raw)
    dst = tmp_path / f"{name}.json"
    dst.write_text(json.dumps(raw, indent=1))
    ResultRecord.read(dst)  # still a schema-valid record: only verification can tell
    return dst


def test_fresh_run_verifies(fresh_run, cache_dir, capsys, tmp_path):
    report = tmp_path / "verify.json"
    assert _verify(fresh_run, cache_dir, "--json", str(report)) == 0
    out = capsys.readouterr().out
    assert "verified 2/2 records" in out and out.count(": VERIFIED") == 2
    for line in ("[match] record self-consistency", "[match] submission code hash", "[match] task spec hash",
                 "[match] data hash", "[match] model hash", "[match] masked LM hash", "[match] run spec (re-run)",
                 "[match] run key = hash of the run spec", "[match] run spec agrees with the record",
                 "[OK] gt_overlap", "[OK] mean_rank_pct", "deterministic CPU re-run"):
        assert line in out, line
    assert "aggregation absmax, batch size 8" in out        # the run's config, from its run spec
    reps = json.loads(report.read_text())
    assert [r["passed"] for r in reps] == [True, True]
    assert all(m["delta"] == 0.0 for r in reps for m in r["metrics"])


def test_hand_edited_score_is_rejected(fresh_run, cache_dir, capsys, tmp_path):
    def bump(raw):
        raw["scores"]["mean_rank_pct"]["value"] -= 0.05     # "improve" a lower-is-better score

    path = _edited(fresh_run, tmp_path, bump)
    assert _verify(path, cache_dir, "--check-only") == 1      # caught without re-running
    out = capsys.readouterr().out
    assert "[MISMATCH] record self-consistency" in out and "mean_rank_pct.value" in out
    assert _verify(path, cache_dir) == 1
    out = capsys.readouterr().out
    assert "[MISMATCH] mean_rank_pct" in out and "[OK] gt_overlap" in out and "verified 0/1 records" in out


def test_consistently_forged_scores_are_rejected_by_the_rerun(fresh_run, cache_dir, capsys, tmp_path):
    def forge(raw):  # per-example values, mean and CI rewritten together: self-consistent, but not reproducible
        vals = [0.0] * len(raw["per_example"]["mean_rank_pct"])
        mean, lo, hi = bootstrap_ci(vals)
        raw["per_example"]["mean_rank_pct"] = vals
        raw["scores"]["mean_rank_pct"].update(value=mean, ci_low=lo, ci_high=hi)

    assert _verify(_edited(fresh_run, tmp_path, forge), cache_dir) == 1
    out = capsys.readouterr().out
    assert "[match] record self-consistency" in out
    assert "[MISMATCH] mean_rank_pct" in out and "CIs do not overlap" in out and "per-example values differ" in out


def test_tampered_code_hash_is_reported(fresh_run, cache_dir, capsys, tmp_path):
    def tamper(raw):
        raw["submission"]["code_hash"] = "0123456789abcdef"

    assert _verify(_edited(fresh_run, tmp_path, tamper), cache_dir) == 1
    out = capsys.readouterr().out
    assert "[MISMATCH] submission code hash: recorded '0123456789abcdef'" in out
    assert "[MISMATCH] run spec agrees with the record" in out and "code_hash: spec" in out
    assert "[OK] gt_overlap" in out          # the numbers reproduce; the provenance does not


def test_environment_differences_are_warnings(fresh_run, cache_dir, capsys, tmp_path):
    def elsewhere(raw):
        raw["provenance"]["packages"]["torch"] = "2.0.0"
        raw["provenance"]["hardware"]["cpu_count"] = 64
        raw["provenance"]["python"] = "3.10.0"

    assert _verify(_edited(fresh_run, tmp_path, elsewhere, "random"), cache_dir) == 0
    out = capsys.readouterr().out
    assert "VERIFIED" in out and "environment differs" in out
    for line in ("package torch: recorded 2.0.0", "hardware cpu_count: recorded 64", "python: recorded 3.10.0"):
        assert line in out


def test_unusable_input_exits_2(fresh_run, cache_dir, capsys, tmp_path):
    assert _verify(tmp_path / "missing.json", cache_dir) == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"status": "ok"}')
    assert _verify(bad, cache_dir) == 2
    assert "not a valid result record" in capsys.readouterr().out
    assert main(["verify", "no_such_submission", "--results-dir", str(fresh_run)]) == 2
    assert "no records of submission 'no_such_submission'" in capsys.readouterr().out
    odd = tmp_path / "odd"
    shutil.copytree(fresh_run, odd)
    raw = json.loads((odd / "planted_sst" / "tiny-bert" / "random.json").read_text())
    raw["submission"]["name"] = "not_a_builtin"
    (odd / "planted_sst" / "tiny-bert" / "random.json").write_text(json.dumps(raw))
    assert _verify(odd / "planted_sst" / "tiny-bert" / "random.json", cache_dir) == 2
    assert "pass its folder with --submission" in capsys.readouterr().out


def test_declared_tolerance_and_ci_overlap():
    assert (declared_tolerance("cpu", "cpu").abs, declared_tolerance("cpu", "cpu").rel) == CPU_TOLERANCE
    gpu = declared_tolerance("cuda:NVIDIA H200", "cuda:NVIDIA H200")
    assert gpu.abs == DEVICE_TOLERANCE[0] and "not bitwise" in gpu.basis
    assert "device differs" in declared_tolerance("cuda:X", "cpu").basis
    assert declared_tolerance("cpu", "cpu", 0.1).abs == 0.1

    def rec(vals):
        m, lo, hi = bootstrap_ci(vals)
        return ResultRecord.model_construct(scores={"m": MetricScore(
            value=m, ci_low=lo, ci_high=hi, higher_is_better=True, family="t", n=len(vals))},
            per_example={"m": list(vals)})

    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, 50)
    tol = declared_tolerance("cpu", "cpu")
    assert compare_scores(rec(base), rec(base), tol)[0].ok
    assert not compare_scores(rec(base), rec(base + 1e-3), tol)[0].ok
    loose = declared_tolerance("cuda:X", "cuda:X")
    nudged = base.copy()
    nudged[0] += 0.5                                           # one example moved: within 0.02 on the mean
    v = compare_scores(rec(base), rec(nudged), loose)[0]
    assert v.ok and v.ci_overlap and "1/50 per-example values differ" in v.note
    assert not compare_scores(rec(base), rec(base + 0.3), loose)[0].ok


def test_recorded_task_overrides_rebuild_the_task_without_flags(fresh_run, cache_dir, capsys):
    rec = ResultRecord.read(fresh_run / "planted_sst" / "tiny-bert" / "random.json")
    assert rec.task.overrides == json.loads(json.dumps(SMALL_TASK))
    target = fresh_run / "planted_sst" / "tiny-bert" / "random.json"
    assert main(["verify", str(target), "--cache-dir", str(cache_dir), "--check-only"]) == 0
    assert "[match] task spec hash" in capsys.readouterr().out


def test_official_run_verifies_only_with_its_secret(tmp_path, cache_dir, capsys, monkeypatch):
    secret = "verify-test-secret-0123456789abcdef"
    monkeypatch.delenv("ATTRIBOARD_SECRET_SEED", raising=False)
    task = get_task("planted_sst", **SMALL_TASK)
    config = RunConfig(results_dir=tmp_path / "r", cache_dir=cache_dir, batch_size=8, secret=secret, hidden_subset=16)
    summary = run_grid([task], [resolve("random")], config)
    assert len(summary.written) == 1 and not summary.errors
    record = summary.written[0]
    assert secret not in record.read_text()
    # without the secret, or with another one, the record cannot be re-run: exit 2, nothing leaked
    assert main(["verify", str(record), "--cache-dir", str(cache_dir)]) == 2
    assert "official run" in capsys.readouterr().out
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("another-secret-0123456789abcdef\n")
    assert main(["verify", str(record), "--cache-dir", str(cache_dir), "--secret-seed-file", str(wrong)]) == 2
    assert "commitment differs" in capsys.readouterr().out
    good = tmp_path / "secret.txt"
    good.write_text(secret + "\n")
    assert main(["verify", str(record), "--cache-dir", str(cache_dir), "--secret-seed-file", str(good)]) == 0
    out = capsys.readouterr().out
    assert "[match] official run: secret commitment" in out and "[match] data hash" in out
    assert "[OK] gt_overlap" in out and secret not in out


def test_the_run_spec_is_checked_and_required(fresh_run, cache_dir, capsys, tmp_path):
    def reseed(raw):  # a spec edited after the run no longer hashes to the run key
        raw["run_spec"]["seed"] = 7

    assert _verify(_edited(fresh_run, tmp_path, reseed, "random"), cache_dir, "--check-only") == 1
    assert "[MISMATCH] run key = hash of the run spec" in capsys.readouterr().out

    def drop(raw):
        raw.pop("run_spec")

    assert _verify(_edited(fresh_run, tmp_path, drop, "random"), cache_dir) == 2
    assert "has no run spec" in capsys.readouterr().out


def test_the_run_spec_holds_the_whole_run(fresh_run):
    rec = ResultRecord.read(fresh_run / "planted_sst" / "tiny-bert" / "gradient.json")
    spec = rec.run_spec
    assert rec.run_key == spec.key()
    assert (spec.task, spec.batch_size, spec.aggregation, spec.seed, spec.submission) == (
        "planted_sst", 8, "absmax", 0, "gradient")
    assert spec.task_overrides == SMALL_TASK and spec.model_recipe["kind"] == "tiny-bert"
    assert spec.mlm == "tiny" and spec.mlm_hash == rec.mlm.model_hash and spec.device == "cpu"
    assert spec.isolation == {"mode": "none"} and spec.official is None
    # the task is rebuilt from the spec alone
    assert get_task(spec.task, **spec.task_overrides).spec.hash() == spec.task_spec_hash
