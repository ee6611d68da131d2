"""Renamed metrics (docs/METRICS.md, *Names and the references they equal*): ``auprc`` is now
``average_precision`` (it is ERASER's ``average_precision``) and ``iou_best_tau`` is
``token_iou_best_tau`` (token-level, not ERASER's span-level IOU F1).  Records written before the
rename (``tests/fixtures/records_esnli_1.0``, made by the code before it) still load, pass the
board's consistency checks and show on the board under the new names."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from conftest import FIXTURES, REPO
from harness.board import leaderboard
from harness.board.boards import record_problem
from harness.engine.records import ResultRecord, current_metric_names
from harness.engine.task import get_task
from harness.metrics.base import get_metric
from harness.metrics.names import RENAMED_METRICS, current_name
from harness.protocols import Example, MetricInputs

OLD = FIXTURES / "records_esnli_1.0"
OLD_FILES = sorted(OLD.rglob("*.json"))
OLD_NAME = re.compile(r"(?<![A-Za-z_])(iou_best_tau|auprc)(?![A-Za-z_])")
ON_BOARD_OLD_NAME = re.compile(r"(?<!ERASER's )(?<!ERASER&#x27;s )(?<!was named )(?<![A-Za-z_])(iou_best_tau|auprc)(?![A-Za-z_])")
"""An old name used as a metric name; the glossary may still say "NOT ERASER's auprc" or "was named auprc"."""


def test_the_new_names_and_the_task_that_uses_them():
    assert RENAMED_METRICS == {"auprc": "average_precision", "iou_best_tau": "token_iou_best_tau"}
    spec = get_task("esnli_plausibility").spec
    assert spec.version == "1.1" and spec.main_metric == "token_iou_best_tau"
    assert {"token_iou_best_tau", "average_precision"} <= set(spec.metrics)
    assert not set(RENAMED_METRICS) & (set(spec.metrics) | set(spec.metric_params))
    assert get_task("esnli").spec.main_metric == "token_iou_best_tau"


def test_an_old_name_gives_the_metric_under_its_new_name():
    s = np.array([0.9, 0.1, 0.5, 0.3])
    inputs = MetricInputs([Example("a", (("w",) * 4,))], [s], [[0, 3]])
    for old, new in RENAMED_METRICS.items():
        assert current_name(old) == new and current_name(new) == new
        a, b = get_metric(old), get_metric(new)
        assert type(a) is type(b) and a.name == new
        np.testing.assert_array_equal(a.per_example(inputs), b.per_example(inputs))
    assert get_metric("average_precision").per_example(inputs)[0] == pytest.approx(5 / 6)


def test_old_records_on_disk_read_under_the_new_names():
    assert [p.stem for p in OLD_FILES] == ["integrated_gradients", "random"]
    for path in OLD_FILES:
        raw = json.loads(path.read_text())
        assert raw["main_metric"] == "iou_best_tau" and {"auprc", "iou_best_tau"} <= set(raw["scores"])
        rec = ResultRecord.read(path)
        assert rec.main_metric == rec.task.main_metric == "token_iou_best_tau"
        assert rec.task.version == "1.0"
        for old, new in RENAMED_METRICS.items():
            assert old not in rec.scores and old not in rec.per_example
            assert rec.scores[new].value == raw["scores"][old]["value"]          # values untouched
            assert rec.scores[new].details == raw["scores"][old]["details"]
            assert rec.per_example[new] == raw["per_example"][old]
        assert set(rec.scores) == set(get_task("esnli_plausibility").spec.metrics)
        # the self-checks still hold: run key = hash of the run spec (which names no metric), and
        # every score is the mean of its per-example values inside its CI
        assert rec.run_key == rec.run_spec.key() == raw["run_key"]
        assert record_problem(rec) is None
        # written back, the record carries only the new names
        again = json.loads(rec.to_json())
        assert not set(RENAMED_METRICS) & (set(again["scores"]) | set(again["per_example"]))
        assert again["main_metric"] == "token_iou_best_tau"


def test_old_records_show_on_the_board_under_the_new_names(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(OLD, results)
    out = tmp_path / "board"
    leaderboard.build(results, out)
    md = (out / "LEADERBOARD.md").read_text()
    assert "token_iou_best_tau" in md and "average_precision" in md
    assert not ON_BOARD_OLD_NAME.search(md)
    for name in ("leaderboard.json", "leaderboard.csv", "index.html"):
        text = (out / name).read_text()
        assert "token_iou_best_tau" in text and not ON_BOARD_OLD_NAME.search(text), name
    boards = leaderboard.build_boards(leaderboard.load_results(results))
    (b,) = boards
    assert b.main_metric == "token_iou_best_tau"
    assert [r.submission.name for _, r, _ in b.ranked] == ["integrated_gradients", "random"]


def test_a_record_with_both_names_of_one_metric_is_refused():
    raw = json.loads(OLD_FILES[0].read_text())
    raw["scores"]["token_iou_best_tau"] = raw["scores"]["iou_best_tau"]
    with pytest.raises(ValueError, match="both its old name 'iou_best_tau'"):
        ResultRecord.model_validate(raw)
    assert current_metric_names([1]) == [1]                 # not a record: left to the schema


def test_no_old_name_is_left_in_the_code_and_docs():
    """The old names appear only where the rename itself is explained."""
    allowed = {"harness/metrics/names.py", "harness/metrics/plausibility.py", "harness/engine/records.py",
               "tasks/esnli/task.py", "docs/METRICS.md", "tests/test_metric_names.py",
               "harness/board/glossary.py"}  # glossary: its stale entries are unused (the classes carry references)
    hits = []
    for top in ("harness", "tasks", "tests", "docs", "benchmarks", "scripts", "submissions"):
        for p in sorted((REPO / top).rglob("*")):
            if p.suffix not in (".py", ".md", ".toml", ".sh") or "fixtures" in p.parts:
                continue
            rel = p.relative_to(REPO).as_posix()
            if rel not in allowed and OLD_NAME.search(p.read_text(errors="replace")):
                hits.append(rel)
    if OLD_NAME.search((REPO / "README.md").read_text()):
        hits.append("README.md")
    assert not hits, hits
