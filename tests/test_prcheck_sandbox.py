"""pr-check and validate never run submission code in the harness process, not even at import.

``hostile_rig_scorer_at_import`` rigs the scorer of whatever process imports it (module-level
code: every metric scores perfectly) and explains with all zeros.  Imported in the CI process
(the package check used to ``load_class`` it there) it would pass pr-check at rank 1; loaded
in a sandboxed worker its import of ``harness.metrics.base`` is refused and the package step fails.
"""

import builtins
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from harness.cli.main import build_parser, main
from harness.cli.prcheck import check_package, pr_check
from harness.core.submission import Submission

from conftest import FIXTURES, REPO, SMALL_TASK

HOSTILE = FIXTURES / "submissions" / "hostile_rig_scorer_at_import"
MODULE_PREFIX = "attriboard_submissions."
MARKER_ENV = "ATTRIBOARD_HOSTILE_MARKER"


def _scorer() -> dict[str, object]:
    """Every object the fixture replaces, by name (compared by identity)."""
    import harness.metrics.base as metrics
    import harness.metrics.removal as removal
    import harness.engine.runner as runner

    out = {f"metrics.{n}": getattr(metrics, n) for n in ("get_metric", "gt_overlap_one", "mean_rank_pct_one")}
    out.update({f"removal_metrics.{n}": getattr(removal, n) for n in (
        "comprehensiveness_one", "norm_comprehensiveness_one", "insertion_auc_one",
        "sufficiency_one", "norm_sufficiency_one", "deletion_auc_one")})
    out["runner.get_metric"] = runner.get_metric
    metrics.load_all()  # every metric name registered, so before and after list the same ones
    out.update({f"{n}.per_example": metrics.METRICS.get(n).per_example for n in metrics.METRICS.names()})
    return out


def _assert_scorer_unchanged(before: dict[str, object]) -> None:
    from harness.metrics import base as metrics

    after = _scorer()
    assert [k for k in before if after[k] is not before[k]] == []
    # and it still scores: a constant map never earns a hit
    assert metrics.gt_overlap_one(np.zeros(4), [2]) == 0.0
    assert metrics.mean_rank_pct_one(np.zeros(4), [2]) == 1.0


def _submission_modules() -> set[str]:
    return {m for m in sys.modules if m.startswith(MODULE_PREFIX)}


@pytest.fixture
def marker(tmp_path, monkeypatch):
    path = tmp_path / "imported-by.pid"
    monkeypatch.setenv(MARKER_ENV, str(path))
    return path


@pytest.fixture
def no_in_process_load(monkeypatch):
    """Loading submission code in this process raises (the worker, a fresh interpreter forked
    from the fork server, does not see this patch)."""
    def refuse(self, *a, **k):
        raise AssertionError(f"submission {self.name} was loaded in the harness process")

    monkeypatch.setattr(Submission, "load_class", refuse)
    monkeypatch.setattr(Submission, "instantiate", refuse)


def _not_written_here(marker) -> None:
    assert not marker.exists() or marker.read_text() != str(os.getpid())


def test_fixture_rigs_the_scorer_of_the_process_that_imports_it(tmp_path):
    """The fixture is potent: imported in a process (as the old package check did), it rigs that
    process's scorer and leaves the marker.  Run in a child process, not this one."""
    marker = tmp_path / "child.pid"
    code = textwrap.dedent(f"""
        import os, numpy as np
        from harness.metrics import base as metrics
        from harness.core.submission import load_submission
        load_submission({str(HOSTILE)!r}).load_class()
        print(metrics.gt_overlap_one(np.zeros(4), [2]), metrics.mean_rank_pct_one(np.zeros(4), [2]), os.getpid())
    """)
    env = {**os.environ, MARKER_ENV: str(marker), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    overlap, rank, pid = out.stdout.split()
    assert (float(overlap), float(rank)) == (1.0, 0.0)  # an all-zeros map scored perfectly
    assert marker.read_text() == pid


def test_pr_check_fails_a_submission_that_rigs_the_scorer_at_import(tmp_path, marker, no_in_process_load):
    before, modules = _scorer(), _submission_modules()
    report = pr_check(HOSTILE, ["planted_sst"], dict(SMALL_TASK), board_results=tmp_path / "board",
                      cache_dir=tmp_path / "cache", out_dir=tmp_path / "out")
    assert not report.passed
    assert [s.name for s in report.steps] == ["package"]  # nothing was validated, run or ranked
    text = report.render()
    assert text.startswith("pr-check ") and ": FAIL\n[FAIL] package" in text
    assert "failed at sandbox: SandboxViolation" in text and "import harness.metrics.base" in text
    assert not report.ranks and report.overall is None and not (tmp_path / "out").exists()
    _assert_scorer_unchanged(before)
    assert _submission_modules() == modules
    _not_written_here(marker)


def test_check_package_loads_the_entry_point_only_in_a_worker(tmp_path, no_in_process_load):
    """A benign submission with a module-level side effect: the package step passes (the worker
    imported and constructed it) and the side effect did not happen here."""
    d = tmp_path / "side_effect"
    d.mkdir()
    (d / "submission.toml").write_text(
        'name = "side_effect"\nversion = "0.1.0"\nauthors = ["a"]\npaper = "p"\nlicense = "MIT"\n'
        'entry_point = "explainer:Zeros"\n[parameters]\nscale = 2.0\n')
    (d / "explainer.py").write_text(textwrap.dedent("""
        import builtins, os
        builtins._attriboard_side_effect_pid = os.getpid()

        class Zeros:
            def __init__(self, scale):
                if scale != 2.0:
                    raise ValueError(f"scale {scale}")

            def explain(self, model, batch):
                raise NotImplementedError
    """))
    modules = _submission_modules()
    step, sub = check_package(d)
    assert step.passed, step.render()
    assert sub is not None and sub.name == "side_effect"
    assert not hasattr(builtins, "_attriboard_side_effect_pid")
    assert _submission_modules() == modules
    assert not any(m.startswith("attriboard_submissions.") and "side_effect" in m for m in sys.modules)

    # a class that cannot be constructed, and a missing class, fail the package step with the
    # worker's stage, error type and message
    (d / "submission.toml").write_text((d / "submission.toml").read_text().replace("scale = 2.0", "scale = 3.0"))
    step, sub = check_package(d)
    assert sub is None and not step.passed
    assert "failed at load: ValueError: scale 3.0" in step.render()
    (d / "submission.toml").write_text((d / "submission.toml").read_text().replace("explainer:Zeros", "explainer:Nope"))
    step, sub = check_package(d)
    assert sub is None and not step.passed and "has no class 'Nope'" in step.render()
    assert not hasattr(builtins, "_attriboard_side_effect_pid")
    assert _submission_modules() == modules


def test_validate_cli_defaults_to_the_sandbox(marker, no_in_process_load, capsys):
    before, modules = _scorer(), _submission_modules()
    assert build_parser().parse_args(["validate", "x"]).isolation == "process"
    assert main(["validate", str(HOSTILE)]) == 1
    out = capsys.readouterr().out
    assert "validate hostile_rig_scorer_at_import: FAIL" in out
    assert "[FAIL] construct: SandboxViolation" in out and "import harness.metrics.base" in out
    _assert_scorer_unchanged(before)
    assert _submission_modules() == modules
    _not_written_here(marker)


def test_pr_check_refuses_to_run_outside_the_sandbox(tmp_path, capsys):
    with pytest.raises(ValueError, match="sandboxed workers only"):
        pr_check(HOSTILE, ["planted_sst"], isolation="none")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["pr-check", str(HOSTILE), "--isolation", "none"])
    capsys.readouterr()
    assert build_parser().parse_args(["pr-check", str(HOSTILE)]).isolation == "process"
