"""A board a researcher can trust: the overall rule cannot be gamed by skipping boards, records
are checked before they are published (self-consistency, one model and setting per board,
reference-model accuracy against chance), a bad file is skipped with one line, ``--strict``
refuses all of these, and a saturated task is flagged."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from harness.board import leaderboard
from harness.board.boards import (build_boards, chance_level, consistency_problem, overall, pipeline_bar,
                                  ranking_boards)
from harness.engine.records import ResultRecord

import test_html_board as H


def _rec(task: str, sub: str, quality: float, seed: int = 0, **model) -> ResultRecord:
    d = H._record(task, sub, quality, np.random.default_rng(seed))
    d["model"].update(model)
    return ResultRecord.model_validate(d)


def _write(root, rec: ResultRecord):
    rec.write(root / rec.task.name / rec.model.name / f"{rec.submission.name}.json")


def _items(*recs):
    return [(r, f"{r.task.name}/{r.submission.name}.json") for r in recs]


# -- the overall rule ----------------------------------------------------------------------------

def test_skipping_a_board_never_helps():
    # "partial" is best on planted_sst but ran nowhere else; "full" is 2nd there and best on e-SNLI
    recs = [_rec("planted_sst", "partial", 0.95), _rec("planted_sst", "full", 0.5, 1), _rec("planted_sst", "weak", 0.1, 2),
            _rec("esnli_plausibility", "full", 0.95, 3), _rec("esnli_plausibility", "weak", 0.1, 4)]
    boards = build_boards(_items(*recs))
    rows = {n: (rank, mean, k) for rank, n, mean, k in overall(boards)}
    # partial: rank 1 on planted, and (2 ranked + 1) = 3 on the e-SNLI board it skipped: mean 2.0
    assert rows["partial"][1] == pytest.approx((1 + 3) / 2) and rows["partial"][2] == 1
    assert rows["full"][0] == 1 and rows["full"][1] == pytest.approx((2 + 1) / 2)
    assert rows["full"][0] < rows["partial"][0]
    # a failed result counts like a missing one
    failed = ResultRecord.model_validate({**H._failed("esnli_plausibility", "partial")})
    rows2 = {n: mean for _, n, mean, _ in overall(build_boards(_items(*recs, failed)))}
    assert rows2["partial"] == rows["partial"][1]


def test_a_default_subset_task_counts_only_when_complete():
    # fragility declares a default subset: a board with only some of the submissions is shown, not counted
    subs = ["random", "gradient", "kernel_shap"]  # kernel_shap is not in fragility's default subset
    recs = [_rec("planted_sst", s, q, i) for i, (s, q) in enumerate(zip(subs, (0.1, 0.5, 0.9)))]
    recs += [_rec("fragility", s, q, 10 + i) for i, (s, q) in enumerate(zip(subs[:2], (0.1, 0.9)))]
    boards = {b.key: b for b in build_boards(_items(*recs))}
    assert boards["fragility/tiny-bert"].not_counted.startswith("run on the task's default subset of submissions only (2 of 3")
    assert [b.key for b in ranking_boards(list(boards.values()))] == ["planted_sst/tiny-bert"]
    complete = recs + [_rec("fragility", "kernel_shap", 0.5, 20)]
    assert len(ranking_boards(build_boards(_items(*complete)))) == 2


# -- records checked before publishing -----------------------------------------------------------

def test_consistency_checks_catch_hand_edits():
    rec = _rec("planted_sst", "lime", 0.6)
    assert consistency_problem(rec) is None
    main = rec.main_metric
    s = rec.scores[main]
    edited = rec.model_copy(update={"scores": {**rec.scores, main: s.model_copy(update={"value": s.ci_low - 0.01})}})
    assert "outside its own CI" in consistency_problem(edited)
    inside = (s.ci_low + s.value) / 2  # inside the CI, but no longer the mean of the per-example values
    edited = rec.model_copy(update={"scores": {**rec.scores, main: s.model_copy(update={"value": inside})}})
    assert "is not the mean of its per-example values" in consistency_problem(edited)
    edited = rec.model_copy(update={"scores": {**rec.scores, main: s.model_copy(update={"n": s.n - 1})}})
    assert "says n=19 but the record has 20 per-example values" in consistency_problem(edited)
    edited = rec.model_copy(update={"scores": {**rec.scores, main: s.model_copy(update={"n": 50})}})
    assert "the task evaluated 20" in consistency_problem(edited)


def test_leaderboard_skips_bad_files_with_one_line_and_strict_refuses(tmp_path, caplog):
    root = tmp_path / "results"
    for i, (sub, q) in enumerate((("random", 0.1), ("gradient", 0.5), ("lime", 0.9))):
        _write(root, _rec("planted_sst", sub, q, i))
    forged = json.loads((root / "planted_sst/tiny-bert/gradient.json").read_text())
    forged["scores"]["gt_overlap"]["value"] = 0.010  # the hand edit: outside its own CI
    (root / "planted_sst/tiny-bert/gradient.json").write_text(json.dumps(forged))
    (root / "planted_sst/tiny-bert/corrupt.json").write_text('{"status": "ok", "scores": {')
    with caplog.at_level(logging.WARNING):
        leaderboard.build(root, tmp_path / "board")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert any("gradient.json" in w and "outside its own CI" in w for w in warnings)
    assert any("corrupt.json" in w for w in warnings)
    md = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert "Skipped 2 result file(s)" in md and "| gradient" not in md.split("## planted_sst")[1]
    with pytest.raises(ValueError, match="corrupt.json"):
        leaderboard.build(root, tmp_path / "board2", strict=True)


def test_chance_level_board_is_a_pipeline_check_not_counted(tmp_path):
    nli = dict(num_labels=3, majority_dev_accuracy=0.36)
    recs = [_rec("esnli_plausibility", s, q, i, dev_accuracy=0.40, **nli)
            for i, (s, q) in enumerate((("random", 0.1), ("gradient", 0.9)))]
    recs += [_rec("planted_sst", s, q, 5 + i, num_labels=2, majority_dev_accuracy=0.5)
             for i, (s, q) in enumerate((("random", 0.1), ("gradient", 0.9)))]
    assert chance_level(recs[0]) == 0.36 * 0 + max(1 / 3, 0.36) and pipeline_bar(0.5) == 0.625
    boards = {b.key: b for b in build_boards(_items(*recs))}
    esnli = boards["esnli_plausibility/tiny-bert"]
    assert esnli.not_counted.startswith("pipeline check: the reference model's dev accuracy 0.400 is below 0.520")
    assert boards["planted_sst/tiny-bert"].not_counted is None
    assert [b.key for b in ranking_boards(list(boards.values()))] == ["planted_sst/tiny-bert"]
    root = tmp_path / "results"
    for r in recs:
        _write(root, r)
    leaderboard.build(root, tmp_path / "board")
    md = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    assert "**Not counted in the overall rank:** pipeline check" in md
    assert "esnli_plausibility/tiny-bert (pipeline check" in md.split("## Overall")[1].split("\n## ")[0]
    with pytest.raises(ValueError, match="strict.*esnli_plausibility/tiny-bert: pipeline check"):
        leaderboard.build(root, tmp_path / "board2", strict=True)


def test_mixed_records_are_flagged_and_not_counted():
    recs = [_rec("planted_sst", "random", 0.1), _rec("planted_sst", "gradient", 0.9, 1, model_hash="0ther")]
    b = build_boards(_items(*recs))[0]
    assert b.not_counted == "its records mix model hashes"
    assert b.flags[0].startswith("mixed records: model hashes: 2 different (0ther, 40de)")
    assert ranking_boards([b]) == [] and overall([b]) == []
    # another dtype is another model run: flagged too; an old record without one reads as float32
    recs = [_rec("planted_sst", "random", 0.1), _rec("planted_sst", "gradient", 0.9, 1, dtype="float32"),
            _rec("planted_sst", "lime", 0.8, 2, dtype="bfloat16")]
    b = build_boards(_items(*recs))[0]
    assert b.not_counted == "its records mix model dtypes"
    assert b.flags[0] == "mixed records: model dtypes: 2 different (bfloat16, float32) (not comparable: re-run them together)"
    assert build_boards(_items(*recs[:2]))[0].not_counted is None


def test_a_saturated_board_is_flagged():
    same = [_rec("planted_sst", s, 0.9, 0) for s in ("a", "b", "c")]  # one seed: identical values
    low = _rec("planted_sst", "d", 0.1, 1)
    b = build_boards(_items(*same, low))[0]
    assert any(f.startswith("saturated: 3 of 4 submissions score within the best one's") for f in b.flags)
    spread = [_rec("planted_sst", s, q, i) for i, (s, q) in enumerate((("a", 0.9), ("b", 0.5), ("c", 0.1)))]
    assert not build_boards(_items(*spread))[0].flags


def test_pr_check_prints_no_overall_rank_from_a_partial_run():
    from harness.cli.prcheck import PRCheckReport, rank_against

    existing = _items(*[_rec(t, s, q, i) for i, (t, s, q) in enumerate(
        (("planted_sst", "random", 0.1), ("planted_sst", "gradient", 0.6),
         ("esnli_plausibility", "random", 0.1), ("esnli_plausibility", "gradient", 0.6)))])
    new = _items(_rec("planted_sst", "mine", 0.95, 9))
    ranks, over = rank_against(existing, new, "mine")
    assert [r["board"] for r in ranks] == ["planted_sst/tiny-bert"] and ranks[0]["rank"] == 1
    assert over == {"boards": 1, "counted_boards": 2, "missing": ["esnli_plausibility/tiny-bert"]}
    text = PRCheckReport("f", "mine", ranks=ranks, overall=over).render()
    assert "overall: not computed: the submission ran on 1 of the 2 counted boards" in text
    assert "overall: rank" not in text
    ranks, over = rank_against(existing, new + _items(_rec("esnli_plausibility", "mine", 0.95, 10)), "mine")
    assert over["rank"] == 1 and over["boards"] == 2
