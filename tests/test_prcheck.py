"""``attriboard pr-check``: a new submission folder is packaged, validated, run on the suite,
ranked against the existing board, and its records verify; a bad folder fails with reasons."""

import pytest

from harness.cli.main import main
from harness.cli.prcheck import check_requirements
from harness.engine.records import ResultRecord
from harness.engine.runner import RunConfig, run_grid
from harness.core.submission import resolve
from harness.engine.task import get_task

from conftest import SMALL_TASK

TASK_ARGS = ["--n-eval", str(SMALL_TASK["n_eval"])] + [
    a for k, v in SMALL_TASK.items() if k != "n_eval" for a in ("--set", f"{k}={v}")]

TOML = """name = "{name}"
version = "0.1.0"
authors = ["Ada Lovelace"]
paper = "Lovelace 2026, https://example.org/position-prior"
code = "https://example.org/position-prior"
license = "MIT"
entry_point = "explainer:PositionPrior"
description = "Scores words by position: the last word first (a prior, not an explanation)."
[parameters]
slope = 1.0
"""

EXPLAINER = '''"""Position prior: word j of n scores slope * j (the last word scores highest)."""

import numpy as np

from harness.protocols import Attributions, ExplainBatch


class PositionPrior:
    def __init__(self, slope: float = 1.0):
        self.slope = float(slope)

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        return Attributions(level="word", scores=[self.slope * np.arange(batch.n_words(i), dtype=np.float64)
                                                  for i in range(len(batch))])
'''


def _folder(tmp_path, name="position_prior", requirements="numpy>=1.20\n"):
    d = tmp_path / name
    d.mkdir()
    (d / "submission.toml").write_text(TOML.format(name=name))
    (d / "explainer.py").write_text(EXPLAINER)
    if requirements is not None:
        (d / "requirements.txt").write_text(requirements)
    return d


@pytest.fixture(scope="module")
def board_results(tmp_path_factory, cache_dir):
    results = tmp_path_factory.mktemp("board-results")
    run_grid([get_task("planted_sst", **SMALL_TASK)], [resolve("random")],
             RunConfig(results_dir=results, cache_dir=cache_dir))
    return results


def test_pr_check_packages_validates_runs_and_ranks(tmp_path, board_results, cache_dir, capsys):
    folder, out = _folder(tmp_path), tmp_path / "out"
    args = ["pr-check", str(folder), "--tasks", "planted_sst", *TASK_ARGS, "--results-dir", str(board_results),
            "--cache-dir", str(cache_dir), "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "pr-check position_prior: PASS" in text
    assert "[ok] package" in text and "requirement numpy>=1.20: installed" in text
    assert "[ok] validate (conformance suite)" in text and "[ok] invariant to batch composition" in text
    assert "[ok] run on planted_sst" in text
    record = out / "results" / "planted_sst" / "tiny-bert" / "position_prior.json"
    assert record.is_file() and f"(record: {record})" in text  # the printed path is the kept record
    # planted words and distractors sit at random places, so a last-word prior does not find
    # them (on the old default, one word appended at the end, it ranked first with 1.000)
    mine = ResultRecord.read(record).scores["gt_overlap"]
    assert mine.value < 0.2
    assert f"planted_sst/tiny-bert: rank " in text and f"/2 by gt_overlap = {mine.value:.3f}" in text
    assert "overall: rank " in text and "/2 (mean task rank" in text
    board = (out / "board" / "index.html").read_text()
    assert "position_prior" in board and "random" in board and (out / "board" / "LEADERBOARD.md").is_file()
    # maintainers re-check the submission's numbers from its folder
    assert main(["verify", str(folder), "--results-dir", str(out / "results"), "--cache-dir", str(cache_dir),
                 *TASK_ARGS]) == 0
    assert "verified 1/1 records" in capsys.readouterr().out


def test_pr_check_rejects_a_bad_package(tmp_path, capsys):
    folder = _folder(tmp_path, name="random", requirements="numpy>=1.20\nno-such-package-xyz==1.0\nnumpy<1\n")
    assert main(["pr-check", str(folder), "--validate-only"]) == 1
    text = capsys.readouterr().out
    assert "pr-check random: FAIL" in text and "[FAIL] package" in text
    assert "the name 'random' is taken by submissions/random" in text
    assert "requirement no-such-package-xyz==1.0: not installed" in text
    assert "requirement numpy<1: installed" in text and "does not match" in text
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "submission.toml").write_text('name = "Bad Name"\n')
    assert main(["pr-check", str(broken)]) == 1
    assert "invalid metadata" in capsys.readouterr().out


def test_requirements_parser():
    ok, lines = check_requirements(["# comment", "", "numpy", "not a requirement !!"])
    assert not ok and lines[0].startswith("requirement numpy: installed") and "invalid" in lines[1]
