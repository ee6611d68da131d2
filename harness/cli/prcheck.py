"""The pull-request check for a new submission: ``attriboard pr-check FOLDER``.

What a maintainer's CI runs on a pull request that adds ``submissions/<name>/``
(``docs/SUBMITTING.md``):

1. **package**: the folder loads (``submission.toml`` against the strict metadata schema; the
   entry point imports and its class constructs, checked in a sandboxed worker: the harness
   process never imports submission code, whose module level could patch the scorer), the
   name is free (or is the folder's own built-in), authors, paper and licence are filled in,
   the folder is small (code, not data or weights: at most :data:`MAX_FOLDER_MB`), and every
   requirement in its ``requirements.txt`` is installed in the pinned environment at a
   matching version (runs are offline: nothing is installed for a submission);
2. **validate**: the conformance suite (:func:`harness.engine.validation.validate`);
3. **run**: the default suite (``harness.cli.main.DEFAULT_TASKS``, every task also when it declares a
   default subset) into a fresh results folder, with the normal model cache, the explainer in a
   sandboxed worker process (``isolation="process"``: pr-check refuses anything else);
4. **rank**: the fresh records placed on the existing board (``leaderboard/results``; older
   records of the same name are replaced) and the submission's rank per board and overall.

The check passes when packaging and validation pass and every run produced an ``ok`` record.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

MAX_FOLDER_MB = 5.0
REQUIRED_TEXT = ("authors", "paper", "license")


@dataclass
class Step:
    name: str
    passed: bool
    lines: list[str] = field(default_factory=list)

    def render(self) -> str:
        head = f"[{'ok' if self.passed else 'FAIL'}] {self.name}"
        return "\n".join([head] + [f"  {line}" for line in self.lines])


@dataclass
class PRCheckReport:
    folder: str
    name: str | None = None
    steps: list[Step] = field(default_factory=list)
    ranks: list[dict[str, Any]] = field(default_factory=list)
    overall: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(s.passed for s in self.steps)

    def render(self) -> str:
        L = [f"pr-check {self.name or self.folder}: {'PASS' if self.passed else 'FAIL'}"]
        L += [s.render() for s in self.steps]
        if self.ranks:
            L.append("rank against the existing board:")
            for r in self.ranks:
                L.append(f"  {r['board']}: rank {r['rank']}/{r['of']} by {r['main_metric']} = {r['value']:.3f} "
                         f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
                         + (f" (not counted overall: {r['not_counted']})" if r.get("not_counted") else ""))
        if self.overall and "rank" in self.overall:
            o = self.overall
            L.append(f"  overall: rank {o['rank']}/{o['of']} (mean task rank {o['mean_task_rank']:.2f})")
        elif self.overall and not self.overall["counted_boards"]:
            L.append("  overall: not computed: no board of this comparison is counted (see the reasons above)")
        elif self.overall:
            o = self.overall
            L.append(f"  overall: not computed: the submission ran on {o['boards']} of the {o['counted_boards']} "
                     f"counted boards (missing: {', '.join(o['missing'])}); an overall rank from a partial run "
                     "would count every missing board as a failure. Run pr-check on every task of the board "
                     "(--tasks ...) for it.")
        return "\n".join(L)


#: Limits of the worker that loads the submission for the package check (import the entry point,
#: construct the class): a load that takes longer than this fails the check.
PACKAGE_LOAD_TIMEOUT_S = 60.0


def package_settings(hidden_paths: Sequence[str] = ()) -> Any:
    """:class:`harness.sandbox.isolation.IsolationSettings` of the package check's worker."""
    from harness.sandbox.isolation import IsolationSettings

    return IsolationSettings(timeout_s=PACKAGE_LOAD_TIMEOUT_S, startup_timeout_s=PACKAGE_LOAD_TIMEOUT_S,
                             hidden_paths=tuple(str(p) for p in hidden_paths))


def load_in_sandbox(sub, settings: Any = None) -> str | None:
    """Import the entry point and construct the explainer in a sandboxed worker
    (:func:`harness.sandbox.isolation.open_explainer`), never in this process: a submission's
    module-level code is as untrusted as its ``explain``.  None when it loads, else the
    failure as ``stage: type: message``."""
    from harness.sandbox.isolation import WorkerError, open_explainer

    try:
        with open_explainer(sub, settings or package_settings(), bundle=None):
            pass
    except WorkerError as e:
        return f"loading the entry point in a sandboxed worker failed at {e.stage}: {e.error_type}: {e.message}"
    except Exception as e:  # no worker, no check: the package step fails rather than passing unchecked
        return f"could not load the entry point in a sandboxed worker: {type(e).__name__}: {e}"
    return None


def check_package(folder: Path, settings: Any = None) -> tuple[Step, Any]:
    """Metadata, name, size and dependencies of a submission folder, and whether its entry point
    imports and its class constructs: in a sandboxed worker (``settings``: its limits, default
    :func:`package_settings`), never in this process.  (step, submission or None)."""
    from harness.core.submission import BUILTIN_DIR, SubmissionError, discover, load_submission

    step = Step("package", True)
    try:
        sub = load_submission(folder)  # reads submission.toml and hashes the folder: runs no code
    except SubmissionError as e:
        step.passed = False
        step.lines.append(str(e))
        return step, None
    failure = load_in_sandbox(sub, settings)
    if failure is not None:
        step.passed = False
        step.lines += [f"{sub.name} {sub.meta.version}, entry point {sub.meta.entry_point}", failure]
        return step, None
    problems, lines = [], [f"{sub.name} {sub.meta.version}, entry point {sub.meta.entry_point}, code hash {sub.code_hash}"]
    for key in REQUIRED_TEXT:
        if not getattr(sub.meta, key):
            problems.append(f"submission.toml: {key} is empty")
    builtin = discover(BUILTIN_DIR)
    if sub.name in builtin and builtin.get(sub.name).path.resolve() != Path(folder).resolve():
        problems.append(f"the name {sub.name!r} is taken by submissions/{sub.name}; choose another name "
                        "(or bump the version in that folder when updating it)")
    files = [p for p in Path(folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    size_mb = sum(p.stat().st_size for p in files) / 2**20
    lines.append(f"{len(files)} files, {size_mb:.2f} MB")
    if size_mb > MAX_FOLDER_MB:
        problems.append(f"the folder holds {size_mb:.1f} MB (> {MAX_FOLDER_MB} MB): submit code, not data or weights")
    req = Path(folder) / "requirements.txt"
    if req.exists():
        ok, dep_lines = check_requirements(req.read_text().splitlines())
        lines += dep_lines
        if not ok:
            problems.append("requirements.txt names packages the pinned environment does not provide "
                            "(maintainers add them to pyproject.toml; runs install nothing)")
    step.lines = lines + problems
    step.passed = not problems
    return step, sub


def check_requirements(lines: Sequence[str]) -> tuple[bool, list[str]]:
    """Each requirement line (PEP 508) installed at a matching version?"""
    from packaging.requirements import InvalidRequirement, Requirement

    ok, out = True, []
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            r = Requirement(line)
        except InvalidRequirement as e:
            ok = False
            out.append(f"requirement {line!r}: invalid: {e}")
            continue
        try:
            have = metadata.version(r.name)
        except metadata.PackageNotFoundError:
            ok = False
            out.append(f"requirement {line}: not installed")
            continue
        if r.specifier and not r.specifier.contains(have, prereleases=True):
            ok = False
            out.append(f"requirement {line}: installed {have} does not match")
        else:
            out.append(f"requirement {line}: installed {have}")
    return ok, out


def isolation_kwargs(mode: str | None) -> dict[str, Any]:
    """``RunConfig(isolation=mode)`` where the runner supports sandboxed workers, nothing
    otherwise (``attriboard verify``; pr-check uses :func:`sandboxed_run_kwargs`)."""
    import dataclasses

    from harness.engine.runner import RunConfig

    return {"isolation": mode} if mode and "isolation" in {f.name for f in dataclasses.fields(RunConfig)} else {}


def sandboxed_run_kwargs() -> dict[str, Any]:
    """``RunConfig(isolation="process")`` for pr-check: a pull request's code is untrusted, so a
    runner without sandboxed workers is an error, never a silent fall-back to this process."""
    kwargs = isolation_kwargs("process")
    if not kwargs:
        raise RuntimeError("harness.engine.runner.RunConfig has no 'isolation' field: pr-check refuses to run "
                           "a submission outside a sandboxed worker")
    return kwargs


def rank_against(existing: list, new: list, name: str) -> tuple[list[dict], dict | None]:
    """The submission's ranks when ``new`` records join the ``existing`` board."""
    from harness.board.leaderboard import build_boards, overall, ranking_boards

    merged = [(r, p) for r, p in existing if r.submission.name != name] + list(new)
    boards = build_boards(merged)
    ranks = []
    for b in boards:
        for rank, r, _ in b.ranked:
            if r.submission.name == name:
                s = r.scores[b.main_metric]
                ranks.append({"board": b.key, "rank": rank, "of": len(b.ranked), "main_metric": b.main_metric,
                              "value": s.value, "ci_low": s.ci_low, "ci_high": s.ci_high})
    for r in ranks:  # a board the overall rank leaves out says why, next to the rank on it
        b = next(b for b in boards if b.key == r["board"])
        if b.audit or b.not_counted:
            r["not_counted"] = "diagnostic board" if b.audit else b.not_counted
    counted = ranking_boards(boards)
    if not counted:
        return ranks, dict(boards=0, counted_boards=0, missing=[])
    ran = {b.key for b in counted if any(r.submission.name == name for _, r, _ in b.ranked)}
    missing = sorted(b.key for b in counted if b.key not in ran)
    if missing:  # never an overall rank from a partial run: say what is missing instead
        return ranks, dict(boards=len(ran), counted_boards=len(counted), missing=missing)
    rows = overall(boards)
    mine = [dict(rank=rk, of=len(rows), mean_task_rank=m, boards=k) for rk, n, m, k in rows if n == name]
    return ranks, (mine[0] if mine else None)


def _build_task(get_task, name: str, overrides: dict[str, Any]):
    """``get_task(name, **overrides)``, a bad parameter value reported as the user's error (as ``run`` does)."""
    from harness.core.errors import UserError

    try:
        return get_task(name, **overrides)
    except ValueError as e:
        raise UserError(f"task {name}: {e}") from e


def pr_check(folder: Path, tasks: Sequence[str], overrides: dict[str, Any] | None = None,
             board_results: Path | None = None, cache_dir: Path | None = None, out_dir: Path | None = None,
             time_budget_s: float = 120.0, seed: int = 0, batch_size: int = 16, device: str = "auto",
             skip_run: bool = False, isolation: str = "process") -> PRCheckReport:
    """Package, validate, run and rank one submission folder (see the module docstring).

    The submission's code only ever runs in sandboxed workers (:mod:`harness.sandbox.isolation`),
    from the package check's import of its entry point on: ``isolation`` must be ``"process"``
    (anything else raises :class:`ValueError`).

    ``out_dir``: keep the fresh records (``out_dir/results``) and a preview of the whole board
    with the submission on it (``out_dir/board``: Markdown, CSV, JSON, HTML)."""
    from harness.board import leaderboard
    from harness.core.provenance import REPO_ROOT
    from harness.engine.runner import RunConfig, run_grid
    from harness.engine.task import get_task
    from harness.engine.validation import validate

    if isolation != "process":
        raise ValueError(f"pr-check runs a pull request's code in sandboxed workers only (isolation='process'), "
                         f"got isolation={isolation!r}")
    folder = Path(folder)
    # the tasks first: a misspelt task name or --set key is the user's error (one line from the
    # CLI), reported now rather than after minutes of packaging and validation
    built = [] if skip_run else [_build_task(get_task, t, overrides or {}) for t in tasks]
    report = PRCheckReport(str(folder))
    board_results = Path(board_results) if board_results else REPO_ROOT / "leaderboard" / "results"
    cache_dir = Path(cache_dir) if cache_dir else REPO_ROOT / ".attriboard"
    step, sub = check_package(folder, package_settings([board_results, cache_dir]))
    report.steps.append(step)
    if sub is None:
        return report
    report.name = sub.name
    # the pull request's code is untrusted: the conformance suite runs it in sandboxed workers too
    v = validate(sub, time_budget_s=time_budget_s, seed=seed, isolation="process")
    report.steps.append(Step("validate (conformance suite)", v.passed, [x.strip() for x in v.render().splitlines()[1:]]))
    if not v.passed or skip_run:
        return report
    tmp = Path(tempfile.mkdtemp(prefix="attriboard-prcheck-"))
    try:
        results = (Path(out_dir) / "results") if out_dir else tmp / "results"
        if results.exists():
            shutil.rmtree(results)
        config = RunConfig(results_dir=results, cache_dir=cache_dir, seed=seed, batch_size=batch_size,
                           device=device, all_submissions=True, **sandboxed_run_kwargs())
        run_step = Step(f"run on {', '.join(tasks)}", True)
        summary = run_grid(built, [sub], config)
        for name, msg in summary.task_failures.items():
            run_step.passed = False
            run_step.lines.append(f"task {name} failed: {msg}")
        new = leaderboard.load_results(results) if results.exists() else []
        for r, rel in new:
            if r.status == "ok":
                s = r.scores[r.main_metric]
                run_step.lines.append(f"{r.task.name}/{r.model.name}: {r.main_metric} = {s.value:.3f} "
                                      f"[{s.ci_low:.3f}, {s.ci_high:.3f}], {r.timing.per_example_mean_s * 1000:.1f} "
                                      f"ms/example, fwd/bwd per example {r.cost.forward_per_example:.1f}/"
                                      f"{r.cost.backward_per_example:.1f}"
                                      + (f" (record: {results / rel})" if out_dir else
                                         " (record not kept: pass --out DIR to keep it)"))
            else:
                run_step.passed = False
                run_step.lines.append(f"{r.task.name}/{r.model.name}: FAILED at {r.error.stage}: "
                                      f"{r.error.type}: {r.error.message[:300]}")
        if not new:
            run_step.passed = False
            run_step.lines.append("no result written")
        report.steps.append(run_step)
        existing = leaderboard.load_results(board_results) if board_results.is_dir() else []
        report.ranks, report.overall = rank_against(existing, new, sub.name)
        if out_dir:
            merged = Path(out_dir) / "board"
            if merged.exists():
                shutil.rmtree(merged)
            for r, rel in [(r, p) for r, p in existing if r.submission.name != sub.name] + new:
                r.write(merged / "results" / rel)
            leaderboard.build(merged / "results", merged)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report
