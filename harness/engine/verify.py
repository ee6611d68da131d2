"""Re-check a result record from its provenance: ``attriboard verify``.

For every record the verifier

1. checks the record against itself: each score must be the mean of the record's own
   per-example values and its CI their bootstrap interval (a hand-edited number fails here
   already, without re-running anything);
2. checks the run spec (:class:`~harness.engine.records.RunSpec`, stored verbatim in the
   record): the run key is its hash and it agrees with the record's own fields; then rebuilds
   the run from it, with no search: the submission (built-in name or ``--submission``
   folder), the task (``get_task(spec.task, **spec.task_overrides)``; flags given here take
   precedence), the run config (seed, aggregation, batch size, masked LM); compares what it
   can recompute before running: submission code hash, version and parameters, task version
   and spec hash, data hash;
3. re-runs the submission on the task into a temporary results folder with an empty
   attribution cache (reference models and masked LMs are loaded from the cache by content
   hash unless ``--retrain``), then compares the model recipe hash, model hash, masked-LM
   hash and the fresh record's run spec field by field;
4. compares every score: value, CI low and CI high within the declared tolerance
   (:func:`declared_tolerance`) *and* overlapping confidence intervals, per metric
   ``OK`` or ``MISMATCH``;
5. lists differences in the environment (package versions, Python, platform, hardware,
   device, git state) as warnings ("environment differs"); they explain a mismatch but are
   not one.

The verdict is ``VERIFIED`` when no check mismatched and every score is ``OK``.  Exit codes
of the command: 0 verified, 1 mismatch, 2 unusable input (no record, invalid record,
submission or task cannot be built).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness.engine.records import ResultRecord

log = logging.getLogger(__name__)

#: Absolute and relative tolerance for a re-run on the same kind of device on CPU: the runner
#: seeds everything and CPU kernels are deterministic, so the numbers must agree to rounding.
CPU_TOLERANCE = (1e-6, 1e-6)
#: On CUDA, or when the re-run's device differs from the recorded one, kernels are not bitwise
#: reproducible (atomics in reductions, TF32, other BLAS): a word map can reorder a near-tie and
#: flip a per-example 0/1 outcome.  0.02 absolute is one flipped example in 50 on a mean of 0/1
#: values; the CIs must overlap as well.
DEVICE_TOLERANCE = (0.02, 0.0)
#: Candidate batch sizes tried when recovering the recorded run configuration from its run key.
#: run-spec fields that may differ in a re-run without changing what it computes
SPEC_ENVIRONMENT = ("device", "isolation")
#: Cache folders a verification may share with the normal run (content-addressed models).
MODEL_CACHES = ("models", "mlm")


class VerifyError(Exception):
    """The input cannot be verified at all (exit code 2)."""


@dataclass(frozen=True)
class Tolerance:
    abs: float
    rel: float
    basis: str

    def ok(self, recorded: float, rerun: float) -> bool:
        return abs(recorded - rerun) <= self.abs + self.rel * abs(recorded)

    def __str__(self) -> str:
        rel = f" + {self.rel:g} x |recorded|" if self.rel else ""
        return f"|delta| <= {self.abs:g}{rel} ({self.basis})"


def declared_tolerance(recorded_device: str | None, rerun_device: str | None,
                       override: float | None = None) -> Tolerance:
    """The tolerance a score comparison uses (see :data:`CPU_TOLERANCE`, :data:`DEVICE_TOLERANCE`)."""
    if override is not None:
        return Tolerance(float(override), 0.0, "set with --tolerance")
    if recorded_device == rerun_device == "cpu":
        return Tolerance(*CPU_TOLERANCE, "deterministic CPU re-run")
    if recorded_device == rerun_device:
        return Tolerance(*DEVICE_TOLERANCE, f"{rerun_device}: kernels not bitwise reproducible")
    return Tolerance(*DEVICE_TOLERANCE, f"device differs: recorded {recorded_device}, re-run {rerun_device}")


@dataclass
class Check:
    """One provenance comparison: ``match``, ``mismatch`` or ``skipped``."""

    name: str
    status: str
    recorded: Any = None
    current: Any = None
    note: str = ""

    def render(self) -> str:
        if self.status == "match":
            text = f"  [match] {self.name}" + (f" ({self.recorded})" if self.recorded not in (None, "") else "")
        elif self.status == "mismatch":
            text = f"  [MISMATCH] {self.name}" + ("" if self.recorded is None and self.current is None else
                                                  f": recorded {self.recorded!r}, now {self.current!r}")
        else:
            text = f"  [skipped] {self.name}"
        return text + (f" -- {self.note}" if self.note else "")


@dataclass
class MetricVerdict:
    metric: str
    ok: bool
    recorded: tuple[float, float, float] | None
    rerun: tuple[float, float, float] | None
    ci_overlap: bool
    note: str = ""

    @property
    def delta(self) -> float | None:
        if self.recorded is None or self.rerun is None:
            return None
        return self.rerun[0] - self.recorded[0]

    def render(self) -> str:
        def fmt(t):
            return "-" if t is None else f"{t[0]:.6f} [{t[1]:.6f}, {t[2]:.6f}]"

        d = "" if self.delta is None else f", delta {self.delta:+.2e}"
        ci = "" if self.recorded is None or self.rerun is None else (", CIs overlap" if self.ci_overlap
                                                                     else ", CIs do not overlap")
        return (f"  [{'OK' if self.ok else 'MISMATCH'}] {self.metric}: recorded {fmt(self.recorded)}, "
                f"re-run {fmt(self.rerun)}{d}{ci}" + (f"; {self.note}" if self.note else ""))


@dataclass
class VerifyReport:
    source: str
    submission: str
    task: str
    model: str
    checks: list[Check] = field(default_factory=list)
    metrics: list[MetricVerdict] = field(default_factory=list)
    environment: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tolerance: Tolerance | None = None
    rerun: bool = True
    error: str | None = None
    unusable: bool = False
    """The record could not be verified at all (exit code 2)."""

    @property
    def passed(self) -> bool:
        return (self.error is None and not any(c.status == "mismatch" for c in self.checks)
                and all(m.ok for m in self.metrics))

    def render(self) -> str:
        verdict = "VERIFIED" if self.passed else ("CANNOT VERIFY" if self.unusable else "MISMATCH")
        if self.passed and not self.rerun:
            verdict = "CONSISTENT (not re-run)"
        L = [f"verify {self.submission} on {self.task}/{self.model} ({self.source}): {verdict}"]
        if self.checks:
            L.append(" provenance:")
            L += [c.render() for c in self.checks]
        if self.metrics:
            L.append(f" scores (tolerance: {self.tolerance}; CIs must overlap):")
            L += [m.render() for m in self.metrics]
        if self.environment:
            L.append(" environment differs (reported, not a mismatch by itself):")
            L += [f"  [warn] {e}" for e in self.environment]
        L += [f" note: {n}" for n in self.notes]
        if self.error:
            L.append(f" error: {self.error}")
        return "\n".join(L)

    def to_dict(self) -> dict:
        return {"source": self.source, "submission": self.submission, "task": self.task, "model": self.model,
                "passed": self.passed, "rerun": self.rerun, "error": self.error, "unusable": self.unusable,
                "tolerance": None if self.tolerance is None else dataclasses.asdict(self.tolerance),
                "checks": [dataclasses.asdict(c) for c in self.checks],
                "metrics": [{**dataclasses.asdict(m), "delta": m.delta} for m in self.metrics],
                "environment": self.environment, "notes": self.notes}


@dataclass
class VerifyOptions:
    """How to rebuild and re-run a record.  The task overrides are those of ``attriboard run``."""

    overrides: dict[str, Any] = field(default_factory=dict)
    secret: str | None = field(default=None, repr=False)
    """The maintainers' secret, to verify a record of an official run (never printed or stored)."""
    secret_file: str | None = None
    """Where the secret came from (hidden from sandboxed workers)."""
    submission: str | None = None
    """A submission folder to use instead of resolving the record's submission name."""
    device: str | None = None
    """Re-run device; default: the recorded device class (``cpu`` or ``cuda`` when available)."""
    batch_size: int | None = None
    tolerance: float | None = None
    cache_dir: Path | None = None
    retrain: bool = False
    """Train reference models and masked LMs afresh instead of loading them by content hash."""
    rerun: bool = True
    threads: int | str | None = "auto"
    isolation: str | None = None
    """``process`` or ``none``; default: as recorded (``none`` for records without the field)."""


# -- inputs ---------------------------------------------------------------------------------------

def collect_records(target: str, results_dir: Path) -> tuple[list[tuple[ResultRecord, Path]], str | None]:
    """The records ``target`` names, and a submission folder if ``target`` is one.

    ``target``: a result file; a results folder (every record under it); a submission folder
    (every record of that submission under ``results_dir``); or a submission name.
    """
    p = Path(target)
    if p.is_file():
        return [(_read(p), p)], None
    sub_folder = None
    if p.is_dir() and (p / "submission.toml").exists():
        from harness.core.submission import SubmissionError, load_submission

        try:
            name = load_submission(p).name
        except SubmissionError as e:
            raise VerifyError(str(e)) from e
        sub_folder, files = str(p), _record_files(Path(results_dir), name)
        where = f"records of submission {name} under {results_dir}"
    elif p.is_dir():
        files, where = sorted(p.rglob("*.json")), f"result records under {p}"
    elif p.suffix == ".json" or "/" in target:
        raise VerifyError(f"{target}: no such result file or folder")
    else:
        files, where = _record_files(Path(results_dir), target), f"records of submission {target!r} under {results_dir}"
    if not files:
        raise VerifyError(f"no {where}")
    return [(_read(f), f) for f in files], sub_folder


def _record_files(results_dir: Path, name: str) -> list[Path]:
    if not results_dir.is_dir():
        return []
    return sorted(f for f in results_dir.rglob(f"{name}.json") if _read(f).submission.name == name)


def _read(path: Path) -> ResultRecord:
    try:
        return ResultRecord.read(path)
    except Exception as e:
        raise VerifyError(f"{path}: not a valid result record: {e}") from e


# -- checks ---------------------------------------------------------------------------------------

def _check(name: str, recorded, current, note: str = "") -> Check:
    return Check(name, "match" if recorded == current else "mismatch", recorded, current, note)


def self_consistency(rec: ResultRecord) -> Check:
    """Every score recomputed from the record's own per-example values (mean and bootstrap CI)."""
    from harness.metrics.stats import bootstrap_ci

    if rec.status != "ok":
        return Check("record self-consistency", "skipped", note="error record, no scores")
    problems = []
    for name, s in sorted(rec.scores.items()):
        vals = rec.per_example.get(name)
        if vals is None:
            problems.append(f"{name}: no per-example values")
            continue
        if len(vals) != s.n:
            problems.append(f"{name}: n={s.n} but {len(vals)} per-example values")
            continue
        mean, lo, hi = bootstrap_ci(vals)
        for what, recorded, recomputed in (("value", s.value, mean), ("ci_low", s.ci_low, lo), ("ci_high", s.ci_high, hi)):
            if not math.isclose(recorded, recomputed, rel_tol=1e-9, abs_tol=1e-12):
                problems.append(f"{name}.{what} = {recorded:.6g} but its per-example values give {recomputed:.6g}")
    if rec.example_ids and any(len(v) != len(rec.example_ids) for v in rec.per_example.values()):
        problems.append("per-example values and example ids differ in length")
    if problems:
        return Check("record self-consistency", "mismatch", note="; ".join(problems))
    return Check("record self-consistency", "match",
                 note="scores and CIs equal the mean and bootstrap CI of the record's per-example values")


def environment_diffs(old: ResultRecord, new: ResultRecord | None) -> list[str]:
    """Differences in package versions, Python, platform, hardware, device and git state."""
    from harness import __version__
    from harness.core.provenance import git_state, hardware, package_versions
    import platform

    if new is not None:
        cur = new.provenance
        cur_pk, cur_py, cur_plat, cur_hw = cur.packages, cur.python, cur.platform, cur.hardware
        cur_sha, cur_dirty, cur_ver = cur.git_sha, cur.git_dirty, cur.harness_version
    else:
        cur_pk, cur_py, cur_plat, cur_hw = package_versions(), platform.python_version(), platform.platform(), hardware()
        (cur_sha, cur_dirty), cur_ver = git_state(), __version__
    p = old.provenance
    out = []
    if p.harness_version != cur_ver:
        out.append(f"harness version: recorded {p.harness_version}, now {cur_ver}")
    for pkg in sorted(set(p.packages) | set(cur_pk)):
        a, b = p.packages.get(pkg, "absent"), cur_pk.get(pkg, "absent")
        if a != b:
            out.append(f"package {pkg}: recorded {a}, now {b}")
    if p.python != cur_py:
        out.append(f"python: recorded {p.python}, now {cur_py}")
    if p.platform != cur_plat:
        out.append(f"platform: recorded {p.platform}, now {cur_plat}")
    for k in sorted(set(p.hardware) | set(cur_hw)):
        if k == "torch_threads":
            continue
        a, b = p.hardware.get(k), cur_hw.get(k)
        if a != b:
            out.append(f"hardware {k}: recorded {a}, now {b}")
    if new is not None and old.timing and new.timing and old.timing.device != new.timing.device:
        out.append(f"device: recorded {old.timing.device}, re-run on {new.timing.device}")
    iso_old = getattr(getattr(old, "isolation", None), "mode", None)
    iso_new = getattr(getattr(new, "isolation", None), "mode", None) if new is not None else iso_old
    if iso_old != iso_new:
        out.append(f"isolation: recorded {iso_old}, re-run {iso_new}")
    if p.git_sha != cur_sha:
        out.append(f"git commit: recorded {p.git_sha}, now {cur_sha} (code hashes above tell what matters)")
    if p.git_dirty and p.git_sha == cur_sha:
        out.append("the recorded run had uncommitted changes (git dirty): the code hashes above, not the "
                   "commit, identify its code")
    return out


def compare_scores(old: ResultRecord, new: ResultRecord, tol: Tolerance) -> list[MetricVerdict]:
    out = []
    for name in sorted(set(old.scores) | set(new.scores)):
        a, b = old.scores.get(name), new.scores.get(name)
        if a is None or b is None:
            t = (lambda s: None if s is None else (s.value, s.ci_low, s.ci_high))
            out.append(MetricVerdict(name, False, t(a), t(b), False,
                                     "not in the record" if a is None else "missing from the re-run"))
            continue
        ra, rb = (a.value, a.ci_low, a.ci_high), (b.value, b.ci_low, b.ci_high)
        within = all(tol.ok(x, y) for x, y in zip(ra, rb))
        overlap = max(a.ci_low, b.ci_low) <= min(a.ci_high, b.ci_high) + tol.abs
        notes = []
        va, vb = old.per_example.get(name), new.per_example.get(name)
        if va is not None and vb is not None and len(va) == len(vb):
            n_diff = int(np.sum(~np.isclose(va, vb, rtol=tol.rel, atol=tol.abs)))
            if n_diff:
                notes.append(f"{n_diff}/{len(va)} per-example values differ")
        if a.params != b.params:
            notes.append(f"metric parameters differ: recorded {a.params}, re-run {b.params}")
        if not within:
            notes.append("outside the tolerance")
        out.append(MetricVerdict(name, within and overlap and a.params == b.params, ra, rb, overlap, "; ".join(notes)))
    return out


# -- rebuilding -----------------------------------------------------------------------------------

def run_spec_of(rec: ResultRecord):
    """The record's run spec; a record without one (written before run specs) cannot be re-run."""
    if rec.run_spec is None:
        raise VerifyError("the record has no run spec (written by an attriboard before run specs were recorded): "
                          "it cannot be rebuilt; re-run the submission to get a verifiable record")
    return rec.run_spec


def spec_checks(rec: ResultRecord) -> list[Check]:
    """The recorded run key is the hash of the recorded run spec, and the spec agrees with
    the record's own submission, task and model fields."""
    spec = run_spec_of(rec)
    pairs = {"submission": (spec.submission, rec.submission.name), "code_hash": (spec.code_hash, rec.submission.code_hash),
             "submission_version": (spec.submission_version, rec.submission.version),
             "params": (spec.params, rec.submission.params), "task": (spec.task, rec.task.name),
             "task_spec_hash": (spec.task_spec_hash, rec.task.spec_hash), "data_hash": (spec.data_hash, rec.task.data_hash),
             "model_hash": (spec.model_hash, rec.model.model_hash),
             "mlm_hash": (spec.mlm_hash, rec.mlm.model_hash if rec.mlm else None)}
    bad = [f"{k}: spec {a!r}, record {b!r}" for k, (a, b) in pairs.items() if a != b]
    return [_check("run key = hash of the run spec", rec.run_key, spec.key()),
            Check("run spec agrees with the record", "mismatch" if bad else "match",
                  note="; ".join(bad) if bad else "submission, code, task, data and model hashes")]


def rebuild_task(rec: ResultRecord, overrides: dict[str, Any], secret: str | None = None):
    """The task of ``rec``, rebuilt from its run spec: ``get_task(task, **task_overrides)``
    (``overrides`` given here take precedence, e.g. another ``--data-dir``).  With ``secret``
    (an official run's record) the task draws its secret variant before its spec is compared.
    Returns (task, spec-hash check)."""
    from harness.engine.task import get_task

    spec = run_spec_of(rec)
    ov = {**spec.task_overrides, **overrides}
    try:
        task = get_task(spec.task, **ov)
    except KeyError as e:
        raise VerifyError(f"task {spec.task!r} is not registered: {e}") from e
    except (TypeError, ValueError) as e:
        raise VerifyError(f"task {spec.task} cannot be built with {ov}: {e}") from e
    if secret is not None:
        task.use_secret(secret)
    note = f"rebuilt with {ov}" if ov else "rebuilt with the task's defaults"
    if task.spec.hash() != spec.task_spec_hash:
        note += ("; the task code changed since the run (version bump?) or its environment did "
                 "(another data folder or model)")
    return task, _check("task spec hash", spec.task_spec_hash, task.spec.hash(), note)


def config_from_spec(rec: ResultRecord, opts: VerifyOptions, **kw):
    """The run configuration of the record's run spec (seed, aggregation, batch size, masked
    LM); ``opts.batch_size`` overrides the batch size."""
    from harness.engine.runner import RunConfig

    spec = run_spec_of(rec)
    return RunConfig(seed=spec.seed, aggregation=spec.aggregation, batch_size=opts.batch_size or spec.batch_size,
                     mlm=spec.mlm or "none", dtype=spec.dtype, **kw)


def compare_specs(old, new) -> Check:
    """The re-run's spec against the recorded one, field by field: a difference in what was
    computed (code, data, models, parameters) is a mismatch; device and isolation are noted."""
    a, b = old.model_dump(), new.model_dump()
    differ = [k for k in a if a[k] != b.get(k)]
    real = [k for k in differ if k not in SPEC_ENVIRONMENT]
    env = [k for k in differ if k in SPEC_ENVIRONMENT]
    note = "; ".join([*[f"{k}: recorded {a[k]!r}, re-run {b[k]!r}" for k in real][:6],
                      *(f"{k} differs (environment, expected)" for k in env)])
    return Check("run spec (re-run)", "mismatch" if real else "match", old.key(), new.key(),
                 note or "every field equal")


def _rerun_device(rec: ResultRecord, opts: VerifyOptions) -> str:
    if opts.device:
        return opts.device
    import torch

    recorded = run_spec_of(rec).device
    return "cuda" if recorded.startswith("cuda") and torch.cuda.is_available() else "cpu"


def _isolation(rec: ResultRecord, opts: VerifyOptions) -> dict[str, Any]:
    """Re-run the explainer as the record says it ran (sandboxed worker or in process), where the
    runner supports isolation; ``--isolation`` overrides."""
    from harness.cli.prcheck import isolation_kwargs

    # a record is data from anyone: it never decides that code runs in this process; only an
    # explicit ``--isolation none`` (trusted built-ins, fast tests) does
    kwargs = isolation_kwargs(opts.isolation or "process")
    if kwargs.get("isolation") == "process" and opts.secret_file:  # the worker must not see the secret file
        from harness.sandbox.isolation import IsolationSettings

        kwargs["isolation_settings"] = IsolationSettings(hidden_paths=(str(Path(opts.secret_file).resolve()),))
    return kwargs


def _temp_cache(root: Path, cache_dir: Path, retrain: bool) -> Path:
    """A cache folder for the re-run: no attribution cache; models and masked LMs shared by
    content hash unless ``retrain``; other resources (downloads, extracted packages) shared."""
    tmp = root / "cache"
    tmp.mkdir()
    if cache_dir.is_dir():
        for entry in sorted(cache_dir.iterdir()):
            if entry.name == "attributions" or (retrain and entry.name in MODEL_CACHES):
                continue
            (tmp / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    return tmp


# -- verification ---------------------------------------------------------------------------------

def official_secret(rec: ResultRecord, opts: VerifyOptions) -> str | None:
    """The secret to re-run ``rec`` with: None for a public run; for an official run the given
    secret, which must match the recorded commitment (else :class:`VerifyError`)."""
    from harness.engine.official import commitment

    if rec.official is None:
        return None
    if opts.secret is None:
        raise VerifyError("the record is from an official run (secret commitment "
                          f"{rec.official.secret_commitment[:16]}...); only the maintainers can re-run it: pass "
                          "--secret-seed-file or set $ATTRIBOARD_SECRET_SEED")
    if commitment(opts.secret) != rec.official.secret_commitment:
        raise VerifyError("the given secret is not the one this official run used (its commitment differs)")
    return opts.secret


def verify_record(rec: ResultRecord, source: str, opts: VerifyOptions) -> VerifyReport:
    from harness.core.provenance import REPO_ROOT
    from harness.engine.runner import run_grid
    from harness.core.submission import SubmissionError, load_submission, resolve

    report = VerifyReport(source, rec.submission.name, rec.task.name, rec.model.name, rerun=opts.rerun)
    report.checks.append(self_consistency(rec))
    report.checks += spec_checks(rec)
    spec = run_spec_of(rec)
    report.checks.append(Check("run config (from the run spec)", "match", note=(
        f"seed {spec.seed}, aggregation {spec.aggregation}, batch size {opts.batch_size or spec.batch_size}"
        f"{' (--batch-size)' if opts.batch_size else ''}, masked LM {spec.mlm or 'none'}, device {spec.device}")))
    try:
        sub = load_submission(Path(opts.submission)) if opts.submission else resolve(rec.submission.name)
    except (SubmissionError, KeyError) as e:
        raise VerifyError(f"submission {rec.submission.name!r} cannot be loaded: {e}; pass its folder "
                          "with --submission") from e
    if sub.name != rec.submission.name:
        raise VerifyError(f"--submission {opts.submission} is {sub.name!r}, the record is of {rec.submission.name!r}")
    report.checks += [_check("submission code hash", rec.submission.code_hash, sub.code_hash),
                      _check("submission version", rec.submission.version, sub.meta.version),
                      _check("submission parameters", rec.submission.params, sub.params)]
    secret = official_secret(rec, opts)
    if secret is not None:
        report.checks.append(Check("official run: secret commitment", "match", rec.official.secret_commitment,
                                   note="the given secret is the one the run used (the secret is not printed)"))
    task, spec_check = rebuild_task(rec, opts.overrides, secret)
    report.checks += [_check("task version", rec.task.version, task.spec.version), spec_check]
    data = task.prepare()
    if secret is not None and rec.official.hidden_subset:
        from harness.engine.official import hidden_subset

        data = hidden_subset(data, secret, task.spec.name, rec.official.hidden_subset)
    report.checks.append(_check("data hash", rec.task.data_hash, data.data_hash))
    report.checks.append(_check("number of examples", rec.task.n_examples, len(data.examples)))
    if [e.id for e in data.examples] != rec.example_ids and rec.example_ids:
        report.checks.append(Check("example ids", "mismatch", note="the rebuilt examples are not the recorded ones"))
    if not opts.rerun:
        report.environment = environment_diffs(rec, None)
        report.notes.append("--check-only: scores not re-computed")
        return report
    cache_dir = Path(opts.cache_dir) if opts.cache_dir else REPO_ROOT / ".attriboard"
    with tempfile.TemporaryDirectory(prefix="attriboard-verify-") as tmp:
        tmp = Path(tmp)
        config = config_from_spec(rec, opts, results_dir=tmp / "results",
                                  cache_dir=_temp_cache(tmp, cache_dir, opts.retrain), force=True,
                                  device=_rerun_device(rec, opts), all_submissions=True, threads=opts.threads,
                                  secret=secret,
                                  hidden_subset=rec.official.hidden_subset if rec.official is not None else None,
                                  **_isolation(rec, opts))
        log.info("re-running %s on %s (%s) into %s", sub.name, rec.task.name, config.device, tmp)
        summary = run_grid([task], [sub], config)
        files = sorted((tmp / "results").rglob("*.json"))
        if summary.task_failures or not files:
            report.error = "re-run failed: " + ("; ".join(summary.task_failures.values()) or "no record written")
            report.environment = environment_diffs(rec, None)
            return report
        new = ResultRecord.read(files[0])
    report.checks += [
        _check("model recipe hash", rec.model.recipe_hash, new.model.recipe_hash),
        _check("model hash", rec.model.model_hash, new.model.model_hash,
               "" if not opts.retrain else "retrained from scratch"),
        _check("model dev accuracy", rec.model.dev_accuracy, new.model.dev_accuracy),
        _check("masked LM hash", rec.mlm.model_hash if rec.mlm else None, new.mlm.model_hash if new.mlm else None),
        compare_specs(run_spec_of(rec), new.run_spec),
        _check("status", rec.status, new.status, new.error.message[:300] if new.error else ""),
    ]
    if rec.status == "error" and new.status == "error":
        report.checks.append(_check("error stage and type", (rec.error.stage, rec.error.type),
                                    (new.error.stage, new.error.type)))
    report.tolerance = declared_tolerance(rec.timing.device if rec.timing else None,
                                          new.timing.device if new.timing else None, opts.tolerance)
    if rec.status == "ok" and new.status == "ok":
        report.metrics = compare_scores(rec, new, report.tolerance)
        if rec.timing and new.timing:
            report.notes.append(f"time per example: recorded {rec.timing.per_example_mean_s * 1000:.2f} ms, "
                                f"re-run {new.timing.per_example_mean_s * 1000:.2f} ms (not compared)")
        if rec.cost and new.cost and (rec.cost.forward_passes, rec.cost.backward_passes, rec.cost.mlm_calls) != \
                (new.cost.forward_passes, new.cost.backward_passes, new.cost.mlm_calls):
            report.notes.append(f"model calls differ: recorded fwd/bwd/mlm {rec.cost.forward_passes}/"
                                f"{rec.cost.backward_passes}/{rec.cost.mlm_calls}, re-run {new.cost.forward_passes}/"
                                f"{new.cost.backward_passes}/{new.cost.mlm_calls}")
    report.environment = environment_diffs(rec, new)
    return report


def verify(target: str, results_dir: Path, opts: VerifyOptions) -> list[VerifyReport]:
    """Verify every record ``target`` names (see :func:`collect_records`)."""
    records, sub_folder = collect_records(target, results_dir)
    if sub_folder and not opts.submission:
        opts = dataclasses.replace(opts, submission=sub_folder)
    reports = []
    for rec, path in records:
        try:
            reports.append(verify_record(rec, str(path), opts))
        except VerifyError as e:
            reports.append(VerifyReport(str(path), rec.submission.name, rec.task.name, rec.model.name,
                                        error=str(e), unusable=True))
    return reports


def render_summary(reports: Sequence[VerifyReport]) -> str:
    ok, bad = sum(r.passed for r in reports), sum(r.unusable for r in reports)
    text = f"verified {ok}/{len(reports)} records"
    if len(reports) - ok - bad:
        text += f"; {len(reports) - ok - bad} MISMATCH"
    return text + (f"; {bad} cannot be verified" if bad else "")


def write_json(reports: Sequence[VerifyReport], path: Path) -> None:
    Path(path).write_text(json.dumps([r.to_dict() for r in reports], indent=1, sort_keys=True, default=str) + "\n")
