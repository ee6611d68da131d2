"""User errors are one line with the fix, no traceback unless --debug; Ctrl-C says how to resume;
``run`` exits non-zero when a submission failed; long steps log progress when not on a terminal."""

from __future__ import annotations

import logging
import shutil

import pytest

from harness.cli.main import main
from harness.core.progress import Progress

from conftest import FIXTURES, SMALL_TASK

SMALL = ["--n-eval", "6"] + [a for k, v in SMALL_TASK.items() if k != "n_eval" for a in ("--set", f"{k}={v}")]


def _err(capsys, *argv) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("argv, expect", [
    (["run", "--tasks", "plantd_sst"], "unknown task 'plantd_sst'; did you mean 'planted_sst'"),
    (["run", "--tasks", "planted_sst", "--submissions", "gradiant"], "unknown submission 'gradiant'; did you mean 'gradient'"),
    (["run", "--tasks", "planted_sst", "--model", "tiny-bret"], "unknown model preset 'tiny-bret'; did you mean ['tiny-bert']"),
    (["run", "--tasks", "planted_sst", "--set", "bogus_key=1"], "task 'planted_sst' has no parameter 'bogus_key'"),
    (["run", "--tasks", "planted_sst", "--set", "n_evl=3"], "did you mean n_eval"),
    (["run", "--tasks", "planted_sst", "--set", "position=middle"], "position must be 'end', 'start' or 'random'"),
    (["run", "--tasks", "planted_sst", "--submissions", "./no_such_folder/"], "submission folder ./no_such_folder/ does not exist"),
    (["verify", "no_such_submission_name", "--check-only"], None),
])
def test_user_errors_are_one_line(capsys, tmp_path, argv, expect):
    rc, err = _err(capsys, *argv, *(["--results-dir", str(tmp_path / "r"), "--no-leaderboard"] if argv[0] == "run" else
                                   ["--results-dir", str(tmp_path / "r")]))
    if expect is None:  # verify reports its own unusable input (exit 2), never a traceback
        assert rc == 2 and "Traceback" not in err
        return
    assert rc == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attriboard: error: ") and expect in lines[0], err
    if "bogus_key" in expect:
        assert "(valid: " in lines[0] and "n_eval" in lines[0] and "position" in lines[0]


def test_debug_shows_the_traceback(tmp_path):
    from harness.core.registry import UnknownNameError

    with pytest.raises(UnknownNameError, match="plantd_sst"):
        main(["--debug", "run", "--tasks", "plantd_sst", "--results-dir", str(tmp_path), "--no-leaderboard"])


def test_a_folder_without_submission_toml_is_named(capsys, tmp_path):
    (tmp_path / "mine").mkdir()
    rc, err = _err(capsys, "run", "--tasks", "planted_sst", "--submissions", str(tmp_path / "mine"),
                   "--results-dir", str(tmp_path / "r"), "--no-leaderboard")
    assert rc == 2 and "a folder without a submission.toml" in err and err.count("\n") == 1


def test_ctrl_c_says_what_finished_and_how_to_resume(capsys, tmp_path, monkeypatch):
    import harness.engine.runner as runner

    def interrupted(*a, **k):
        (tmp_path / "r" / "t").mkdir(parents=True)
        (tmp_path / "r" / "t" / "done.json").write_text("{}")  # a record this run finished
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_grid", interrupted)
    rc, err = _err(capsys, "run", "--tasks", "planted_sst", "--submissions", "random", "--results-dir",
                   str(tmp_path / "r"), "--no-leaderboard")
    assert rc == 130 and "Traceback" not in err
    assert err.startswith("attriboard: interrupted. 1 result record(s) finished in this run are saved under")
    assert "run the same command again to resume" in err


def test_run_exits_non_zero_when_a_submission_failed(capsys, tmp_path, cache_dir):
    raises = tmp_path / "raises"
    shutil.copytree(FIXTURES / "submissions" / "raises", raises)
    rc = main(["run", "--tasks", "planted_sst", "--submissions", str(raises), "random", *SMALL,
               "--results-dir", str(tmp_path / "r"), "--out-dir", str(tmp_path / "b"), "--cache-dir", str(cache_dir),
               "--isolation", "none"])
    assert rc == 1
    assert (tmp_path / "r" / "planted_sst" / "tiny-bert" / "random.json").is_file()  # the others are kept
    assert (tmp_path / "b" / "LEADERBOARD.md").is_file()


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_progress_logs_at_intervals_off_a_terminal(caplog):
    clock, log = _Clock(), logging.getLogger("test.progress")
    with caplog.at_level(logging.INFO, logger="test.progress"):
        with Progress(100, "training x", log, unit="batches", every_s=10.0, tty=False, clock=clock) as p:
            for _ in range(100):
                clock.t += 0.25  # 25 s in all: a line at 10 s and 20 s, then the closing one
                p.update(1)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:2] == ["training x: 40/100 batches (40%), 10 s", "training x: 80/100 batches (80%), 20 s"]
    assert len(lines) == 3 and lines[-1] == "training x: 100/100 batches (100%), 25 s"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="test.progress"):
        with Progress(5, "short", log, tty=False, clock=clock) as p:
            p.update(5)
    assert caplog.records == []  # a step shorter than the interval stays quiet
