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
    (["run", "--tasks", "planted_sst", "--model", "tiny-bret"], "unknown model preset 'tiny-bret'; did you mean 'tiny-bert'?"),
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


@pytest.mark.parametrize("argv, expect", [
    (["run", "--tasks", "planted_sst", "--jobs", "0"], "run: --jobs must be at least 1, got 0"),
    (["run", "--tasks", "planted_sst", "--set", "n_eval"], "--set expects key=value, got 'n_eval'"),
    (["run", "--tasks", "planted_sst", "--threads", "many"], "--threads expects a number, 'auto' or 'default'"),
    (["run", "--tasks", "planted_sst", "--models", "tiny-bret"], "did you mean 'tiny-bert'?"),
    (["run", "--tasks", "planted_sst", "--model", "tiny-bert", "--models", "tiny-bert"], "give --model or --models"),
    (["validate"], "validate: name a submission"),
    (["validate", "random", "--families", "bret"], "unknown model family 'bret'"),
])
def test_usage_errors_are_one_line_and_exit_2(capsys, tmp_path, argv, expect):
    """Bad flags exit 2 like argparse's own errors (a SystemExit to an in-process caller), never 1,
    the code of a run whose submissions failed."""
    extra = ["--results-dir", str(tmp_path / "r"), "--no-leaderboard"] if argv[0] == "run" else []
    with pytest.raises(SystemExit) as e:
        main([*argv, *extra])
    assert e.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attriboard: error: ") and expect in lines[0], lines


def test_pr_check_user_errors_come_first(capsys, tmp_path):
    """A wrong folder is the user's error (exit 2), not a failed check (exit 1); a misspelt task or
    --set key is reported before the package and validation steps run."""
    rc, err = _err(capsys, "pr-check", str(tmp_path / "no_such_folder"))
    assert rc == 2 and err.count("\n") == 1 and "submission folder" in err and "does not exist" in err
    for argv, expect in ((["--tasks", "plantd_sst"], "did you mean 'planted_sst'"),
                         (["--set", "n_evl=3"], "did you mean n_eval")):
        rc, err = _err(capsys, "pr-check", str(FIXTURES / "submissions" / "hostile_infinite_loop"), *argv)
        assert rc == 2 and err.count("\n") == 1 and expect in err and "Traceback" not in err, err
    assert "pr-check" not in capsys.readouterr().out  # no step ran


def test_run_help_documents_the_exit_status(capsys):
    from harness.cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status: 0 every cell ran; 1 a submission error or task failure" in text
    assert "2 a user error" in text and "130 interrupted" in text


def test_threads_flag_reaches_the_run_config(tmp_path, monkeypatch):
    import harness.engine.runner as runner

    seen = []

    def fake(tasks, subs, config, **kw):
        seen.append(config.threads)
        return runner.RunSummary()

    monkeypatch.setattr(runner, "run_grid", fake)
    for flag, want in (("2", 2), ("default", None), ("auto", "auto")):
        assert main(["run", "--tasks", "planted_sst", "--submissions", "random", "--threads", flag,
                     "--results-dir", str(tmp_path), "--no-leaderboard"]) == 0
        assert seen[-1] == want


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
    assert err.count("\n") == 1 and err.rstrip().endswith(  # the command to copy, quoted for the shell
        f"attriboard run --tasks planted_sst --submissions random --results-dir {tmp_path / 'r'} --no-leaderboard")


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
    with caplog.at_level(logging.INFO, logger="test.progress"):  # a status (the epoch) after the count
        with Progress(4, "training tiny-bert for planted_sst", log, unit="batches", every_s=10.0, tty=False,
                      clock=clock) as p:
            for epoch in range(2):
                p.set_status(f"epoch {epoch + 1}/2 of 100 rows")
                for _ in range(2):
                    clock.t += 6.0
                    p.update(1)
    assert [r.getMessage() for r in caplog.records] == [
        "training tiny-bert for planted_sst: 2/4 batches (50%), epoch 1/2 of 100 rows, 12 s",
        "training tiny-bert for planted_sst: 4/4 batches (100%), epoch 2/2 of 100 rows, 24 s"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="test.progress"):
        with Progress(5, "short", log, tty=False, clock=clock) as p:
            p.update(5)
    assert caplog.records == []  # a step shorter than the interval stays quiet
