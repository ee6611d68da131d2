"""``attriboard plan`` (:mod:`harness.engine.plan`): cached cells, predictions from measured
records and from a calibration run, hub fetches, the total, and ``--budget``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.core.submission import resolve
from harness.engine.plan import estimate_seconds, hub_fetches, make_plan
from harness.engine.task import get_task

SMALL = {"n_train": 800, "n_dev": 100, "bias_metrics": False, "variant": "easy"}
SETS = [a for k, v in SMALL.items() for a in ("--set", f"{k}={json.dumps(v)}")]


def test_estimates_by_hand():
    # two sizes: a line through them (fixed cost + cost per example)
    s, how = estimate_seconds([(8, 9.0), (4, 5.0)], 300)
    assert s == pytest.approx(1.0 + 300 * 1.0) and "fixed 1.0 s + 1.0000 s/example" == how
    # noise that makes the larger size no slower: proportional to the larger one
    assert estimate_seconds([(8, 4.0), (4, 5.0)], 300) == (pytest.approx(150.0), "proportional to one measurement")
    # one size: proportional
    assert estimate_seconds([(10, 2.0)], 300) == (pytest.approx(60.0), "proportional to one measurement")


def test_hub_fetches_are_named_without_fetching():
    assert hub_fetches(get_task("planted_sst")) == []
    sst2 = hub_fetches(get_task("planted_sst2", model="hf:roberta-base"))
    assert sst2[0].startswith("dataset glue/sst2@bcdcba7") and sst2[1] == "model roberta-base (unpinned)"
    ckpt = hub_fetches(get_task("planted_sst", model="checkpoint:someone/sst2-model@abc123#1,0"))
    assert ckpt == ["checkpoint someone/sst2-model@abc123"]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plan")
    args = ["run", "--tasks", "planted_sst", "--submissions", "random", "loo_empty", "--n-eval", "6", *SETS,
            "--results-dir", str(tmp / "r"), "--cache-dir", str(tmp / "c"), "--isolation", "none", "--mlm", "none",
            "--no-leaderboard"]
    assert main(args) == 0
    return tmp


def _plan_args(tmp: Path, *extra: str) -> list[str]:
    return ["plan", "--tasks", "planted_sst", *SETS, "--results-dir", str(tmp / "r"), "--cache-dir",
            str(tmp / "c"), "--isolation", "none", "--mlm", "none", *extra]


def test_a_plan_reads_cached_cells_and_extrapolates_measured_ones(measured):
    subs = [resolve("random"), resolve("loo_empty"), resolve("gradient")]
    same = get_task("planted_sst", n_eval=6, **SMALL)
    plan = make_plan([same], subs, measured / "r")
    cells = {c.submission: c for c in plan.cells}
    assert cells["random"].cached and cells["loo_empty"].cached          # the run would skip them
    assert not cells["gradient"].cached and cells["gradient"].seconds is None
    assert cells["gradient"].basis == "no measurement" and len(plan.unknown) == 1
    # 60 examples: not cached (another n), predicted from the 6-example record
    bigger = get_task("planted_sst", n_eval=60, **SMALL)
    loo = next(c for c in make_plan([bigger], subs[1:2], measured / "r").cells)
    rec = json.loads((measured / "r" / "planted_sst" / "tiny-bert" / "loo_empty.json").read_text())
    assert not loo.cached and loo.seconds == pytest.approx(rec["timing"]["evaluate_s"] * 10)
    assert loo.forward == pytest.approx(rec["cost"]["forward_per_example"] * 60) and loo.backward == 0
    assert "measured on 6 examples, proportional" in loo.basis
    # other task parameters: that record measures another task, so it is not used
    other = get_task("planted_sst", n_eval=60, **{**SMALL, "position": "start"})
    assert make_plan([other], subs[1:2], measured / "r").cells[0].seconds is None


def test_cli_plan_budget_and_calibration(measured, capsys):
    assert main(_plan_args(measured, "--n-eval", "60", "--submissions", "random", "loo_empty")) == 0
    out = capsys.readouterr().out
    assert "planted_sst  tiny-bert  loo_empty" in out and "total: 2 cell(s) to run, 0 up to date" in out
    assert main(_plan_args(measured, "--n-eval", "60", "--submissions", "loo_empty", "--budget", "0.00001")) == 1
    assert "budget 1e-05 min: exceeded" in capsys.readouterr().out
    # a run over budget is refused before anything runs; with an unmeasured cell too
    run = ["run", *_plan_args(measured, "--n-eval", "60", "--submissions", "gradient", "--budget", "60")[1:]]
    assert main(run) == 1
    assert "run refused: --budget 60 min cannot check: 1 cell(s) have no measurement" in capsys.readouterr().err
    assert not (measured / "r" / "planted_sst" / "tiny-bert" / "gradient.json").exists()
    # --calibrate measures the missing cell on 2 and 4 examples, then extrapolates
    assert main(_plan_args(measured, "--n-eval", "60", "--submissions", "gradient", "--calibrate", "2")) == 0
    out = capsys.readouterr().out
    assert "measured on 4/2 examples, " in out and "1 cell(s) to run" in out and "no measurement" not in out
    cal = measured / "c" / "calibration"
    assert (cal / "n2" / "planted_sst" / "tiny-bert" / "gradient.json").is_file()
    # the basis is the line (or, where timing noise made 4 examples no slower, the proportion)
    # through the two calibration records' own times
    times = [(n, json.loads((cal / f"n{n}" / "planted_sst" / "tiny-bert" / "gradient.json").read_text())["timing"])
             for n in (4, 2)]
    _, how = estimate_seconds([(n, t["evaluate_s"] if t["evaluate_s"] is not None else t["total_s"])
                               for n, t in times], 60)
    assert f"measured on 4/2 examples, {how}" in out


def test_plan_of_the_official_suite_offline_names_its_fetches(tmp_path, capsys):
    assert main(["plan", "--suite", "official", "--submissions", "random", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fetches for planted_sst2/bert-base-uncased: dataset glue/sst2@bcdcba79" in out
    assert "model roberta-base (unpinned)" in out and "no measurement (needs the hub" in out
    assert "checkpoint distilbert/distilbert-base-uncased-finetuned-sst-2-english@714eb0f" in out
    assert "checkpoint FacebookAI/roberta-large-mnli (unpinned)" in out
    assert "total: 10 cell(s) to run" in out and "10 cell(s) with no measurement (a lower bound" in out


def test_predicted_passes_scale_the_record_totals_per_scored_example(measured, tmp_path):
    """A task may explain more inputs than it scores (ROAR explains its training inputs too) and
    then records cost per explained input: the plan scales the totals, not the per-input rate."""
    import shutil

    src = measured / "r" / "planted_sst" / "tiny-bert" / "loo_empty.json"
    dst = tmp_path / "r" / "planted_sst" / "tiny-bert" / "loo_empty.json"
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    rec = json.loads(dst.read_text())
    n = rec["task"]["n_examples"]
    rec["cost"]["forward_passes"] = 9 * n * 20  # as if 9 inputs were explained per scored example
    rec["cost"]["forward_per_example"] = 20.0
    dst.write_text(json.dumps(rec))
    bigger = get_task("planted_sst", n_eval=60, **SMALL)
    cell = make_plan([bigger], [resolve("loo_empty")], tmp_path / "r").cells[0]
    assert cell.forward == pytest.approx(9 * 20 * 60)
