"""The conformance suite fails each kind of broken submission with a specific message."""

import pytest

from harness.core.submission import SubmissionError, load_submission
from harness.engine.validation import validate

from conftest import FIXTURES


def _failures(name):
    report = validate(load_submission(FIXTURES / "submissions" / name))
    assert not report.passed, report.render()
    return {c.name: c.message for c in report.failures()}


@pytest.mark.parametrize("name, check, fragment", [
    ("wrong_shape", "output (shape, finite, zero on specials)", "shape: expected token scores of shape (6, 14)"),
    ("nan_scores", "output (shape, finite, zero on specials)", "finite: example 0 has 5 NaN or infinite word scores"),
    ("special_tokens", "output (shape, finite, zero on specials)", "special tokens: [CLS]/[SEP]/[PAD] positions must score 0"),
    ("wrong_dtype", "output (shape, finite, zero on specials)", "expected floating-point scores, got dtype <U1"),
    ("raises", "output (shape, finite, zero on specials)", "explain() raised RuntimeError: explainer exploded on purpose"),
    ("nondeterministic", "deterministic under a seed", "two runs with seed 0 differ"),
    ("batch_dependent", "invariant to batch composition", "example 0 alone differs by 5"),
])
def test_broken_submission_fails_with_specific_message(name, check, fragment):
    failures = _failures(name)
    assert check in failures, failures
    assert fragment in failures[check], failures[check]


def test_bad_metadata_is_reported_field_by_field():
    with pytest.raises(SubmissionError) as e:
        load_submission(FIXTURES / "submissions" / "bad_metadata")
    msg = str(e.value)
    for fragment in ("name: String should match pattern", "entry_point: String should match pattern",
                     "license: Field required"):
        assert fragment in msg, msg


def test_random_baseline_passes_everything():
    from harness.core.submission import resolve

    report = validate(resolve("random"))
    assert report.passed, report.render()
    assert [c.name for c in report.checks] == [
        "construct", "output (shape, finite, zero on specials)", "sentence pairs", "input with no words",
        "deterministic under a seed",
        "invariant to batch composition", "model left unchanged", "time budget"]


def test_model_mutation_is_caught_in_process_and_in_a_sandboxed_worker():
    sub = load_submission(FIXTURES / "submissions" / "mutates_model")
    for isolation in ("none", "process"):
        report = validate(sub, isolation=isolation)
        failures = {c.name: c.message for c in report.failures()}
        assert "model left unchanged" in failures, (isolation, report.render())
    # in process the parent's own parameters changed; isolated, only the worker's copy did
    assert "parameters changed" in {c.name: c.message for c in validate(sub).failures()}["model left unchanged"]


def test_isolated_conformance_suite_passes_a_baseline_and_contains_a_hostile_submission():
    from harness.core.submission import resolve

    report = validate(resolve("gradient"), isolation="process")
    assert report.passed, report.render()
    hostile = validate(load_submission(FIXTURES / "submissions" / "hostile_read_gold"), isolation="process")
    failures = {c.name: c.message for c in hostile.failures()}
    assert "SandboxViolation" in failures.get("output (shape, finite, zero on specials)", ""), hostile.render()
