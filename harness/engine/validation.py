"""The conformance suite every submission must pass (``attriboard validate``).

Runs the explainer on a tiny in-memory task (:mod:`harness.testing`, the *sensitive* tiny
BERT, whose outputs depend strongly on the input) and checks: it can be built from its
metadata; correct shape; finite values; zero on special tokens; sentence pairs work; an
input with no words works; deterministic under a seed; invariant to batch composition
(single sentences and pairs); leaves the model unchanged; within a time budget.  Each
violation has its own message.  With ``family`` the suite runs on a tiny random model of that
model family; an explainer that raises :class:`harness.protocols.NotApplicableError` there is
reported as not applicable (on the default tiny BERT that is a failure).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from harness.core.outputs import OutputError, check_attributions, word_maps
from harness.core.submission import Submission

DEFAULT_TIME_BUDGET_S = 120.0
BATCH_ATOL = 1e-4
BATCH_RTOL = 1e-3


@dataclass
class Check:
    name: str
    passed: bool
    message: str = ""


@dataclass
class ValidationReport:
    submission: str
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    not_applicable: str | None = None
    """why the explainer declared itself not defined on the suite's model (a non-default family)"""

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def render(self) -> str:
        lines = [f"validate {self.submission}: {'PASS' if self.passed else 'FAIL'} ({self.seconds:.1f}s)"]
        for c in self.checks:
            lines.append(f"  [{'ok' if c.passed else 'FAIL'}] {c.name}" + (f": {c.message}" if c.message else ""))
        return "\n".join(lines)


def _maps(explainer, bundle, batch):
    attr = explainer.explain(bundle, batch)
    raw = check_attributions(attr, batch)
    return word_maps(attr, raw, batch, "absmax")


def _batch_problems(explainer, bundle, inputs, reference, seed, label_prefix) -> list[str]:
    """Explain each input alone and in a reversed batch; compare with the reference maps."""
    order = list(reversed(range(len(inputs))))
    rev = _maps(explainer, bundle, bundle.make_batch([inputs[i] for i in order], seed=seed))
    problems = []
    for i in range(len(inputs)):
        alone = _maps(explainer, bundle, bundle.make_batch([inputs[i]], seed=seed))[0]
        for label, other in (("alone", alone), ("in reversed batch", rev[order.index(i)])):
            if not np.allclose(reference[i], other, atol=BATCH_ATOL, rtol=BATCH_RTOL):
                problems.append(f"{label_prefix}example {i} {label} differs by "
                                f"{float(np.abs(reference[i] - other).max()):.3g}")
    return problems


def _etype(e: BaseException) -> str:
    """The error's name; a sandboxed worker's failure names what happened (SandboxViolation, Timeout, ...)."""
    return getattr(e, "error_type", None) or type(e).__name__


def _params_snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def validate(sub: Submission, time_budget_s: float = DEFAULT_TIME_BUDGET_S, seed: int = 0,
             isolation: str = "none", family: str | None = None) -> ValidationReport:
    """The conformance suite.  ``isolation="process"``: the submission runs in sandboxed worker
    processes (:mod:`harness.sandbox.isolation`), as on a board run; use it for untrusted code (a pull
    request).  Its model is then the worker's copy, so "model left unchanged" is checked by
    re-sending nothing and comparing what the explainer returns for the same inputs at the end.
    ``family``: run the suite on a tiny random model of that model family (default: the
    word-level tiny BERT)."""
    from contextlib import ExitStack

    if isolation not in ("none", "process"):
        raise ValueError(f"isolation must be 'none' or 'process', got {isolation!r}")
    with ExitStack() as stack:
        return _validate(sub, time_budget_s, seed, isolation, stack, family)


def _validate(sub, time_budget_s, seed, isolation, stack, family=None) -> ValidationReport:
    from harness.testing import TINY_PAIRS, TINY_SENTENCES, tiny_bundle

    report = ValidationReport(sub.name + (f" on {family}" if family else ""))
    t0 = time.perf_counter()
    bundle = tiny_bundle(sensitive=True, family=family)

    def instantiate():
        if isolation == "none":
            return sub.instantiate()
        from harness.sandbox.isolation import IsolationSettings, open_explainer

        # one call may take at most the suite's whole time budget (not the 30-minute board default)
        settings = IsolationSettings(timeout_s=max(30.0, float(time_budget_s)))
        return stack.enter_context(open_explainer(sub, settings, bundle=bundle))

    def add(name, ok, msg=""):
        report.checks.append(Check(name, ok, msg))
        return ok

    try:
        explainer = instantiate()
    except Exception as e:  # reported, not hidden: the report fails
        add("construct", False, f"{_etype(e)}: {e}")
        report.seconds = time.perf_counter() - t0
        return report
    add("construct", True)

    before = _params_snapshot(bundle.model)
    batch = bundle.make_batch(TINY_SENTENCES, seed=seed)
    try:
        first = _maps(explainer, bundle, batch)
        add("output (shape, finite, zero on specials)", True)
    except OutputError as e:
        add("output (shape, finite, zero on specials)", False, str(e))
        report.seconds = time.perf_counter() - t0
        return report
    except Exception as e:
        if _etype(e) == "NotApplicableError" and family is not None:
            # declared not defined on this family (e.g. mask removal without a mask token): said, not failed
            report.not_applicable = str(e)
            add("applicable", True, f"not applicable on {family}: {e}")
            report.seconds = time.perf_counter() - t0
            return report
        add("output (shape, finite, zero on specials)", False, f"explain() raised {_etype(e)}: {e}")
        report.seconds = time.perf_counter() - t0
        return report

    pair_maps = None
    try:
        pair_maps = _maps(explainer, bundle, bundle.make_batch(TINY_PAIRS, seed=seed))
        add("sentence pairs", True)
    except Exception as e:
        add("sentence pairs", False, f"{_etype(e)}: {e}")

    try:
        empty = _maps(explainer, bundle, bundle.make_batch([((),), TINY_SENTENCES[0]], seed=seed))
        add("input with no words", empty[0].shape == (0,), "" if empty[0].shape == (0,) else
            f"expected no word scores, got shape {empty[0].shape}")
    except Exception as e:
        add("input with no words", False, f"{_etype(e)}: {e}")

    try:
        again = _maps(instantiate(), bundle, bundle.make_batch(TINY_SENTENCES, seed=seed))
        diffs = [float(np.abs(a - b).max()) for a, b in zip(first, again)]
        worst = max(diffs)
        add("deterministic under a seed", worst <= 1e-6,
            "" if worst <= 1e-6 else f"two runs with seed {seed} differ by up to {worst:.3g} (example {int(np.argmax(diffs))})")
    except Exception as e:
        add("deterministic under a seed", False, f"{_etype(e)}: {e}")

    try:
        problems = _batch_problems(explainer, bundle, TINY_SENTENCES, first, seed, "")
        if pair_maps is not None:
            problems += _batch_problems(explainer, bundle, TINY_PAIRS, pair_maps, seed, "pair ")
        add("invariant to batch composition", not problems, "; ".join(problems[:3]))
    except Exception as e:
        add("invariant to batch composition", False, f"{_etype(e)}: {e}")

    if isolation == "none":
        after = bundle.model.state_dict()
        changed = [k for k, v in before.items() if not np.array_equal(v.numpy(), after[k].detach().numpy())]
        ok = not changed and not bundle.model.training
        add("model left unchanged", ok,
            "" if ok else (f"parameters changed: {changed[:3]}" if changed else "model left in training mode"))
    else:  # the worker explains its own copy: a changed copy shows as changed maps for the same inputs
        try:
            last = _maps(explainer, bundle, bundle.make_batch(TINY_SENTENCES, seed=seed))
            worst = max(float(np.abs(a - b).max()) for a, b in zip(first, last))
            add("model left unchanged", worst <= 1e-6, "" if worst <= 1e-6 else
                f"after the other checks the same inputs get maps differing by up to {worst:.3g}: the explainer "
                "changes its model (or keeps state between calls)")
        except Exception as e:
            add("model left unchanged", False, f"{_etype(e)}: {e}")

    report.seconds = time.perf_counter() - t0
    add("time budget", report.seconds <= time_budget_s,
        f"{report.seconds:.1f}s" + ("" if report.seconds <= time_budget_s else f" > budget {time_budget_s:.0f}s"))
    return report
