"""Result records grouped into boards and ranked: what every part of the board is computed from.

Per task (and reference model): submissions ordered by the task's main metric, respecting
``higher_is_better``, and grouped into statistical rank groups (:mod:`harness.board.ranking`,
``grouping="leader"``: walking down the order, a submission joins the group of the ones above
it unless its paired difference to the group's best, on the shared examples, is significant
after a Bonferroni correction over the m-1 tests; a group is shown as a range, e.g. ``2-4``;
each member's rank is the group's best position).

Overall rule (:data:`OVERALL_RULE`): the mean per-board rank over the *counted* boards, a
missing or failed result counting as (ranked submissions on that board + 1), so that skipping a
board can never help.  A board is not counted (but shown, with the reason) when it is
diagnostic (the sanity checks), a pipeline check (its reference model is too close to chance:
:func:`chance_level`), mixed (its records disagree on the model, data or settings), or a task
run on its declared default subset of the submissions only (``--all-submissions`` makes it
complete, and counted).

Records are checked before they go on a board (:func:`record_problem`): schema, the fields an
``ok`` record needs, and self-consistency (each score is the mean of its per-example values,
inside its own confidence interval, over as many examples as it says).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from harness.engine.records import ResultRecord

log = logging.getLogger("harness.board.leaderboard")  # the name the build log has always used

AUDIT_FAMILIES = frozenset({"sanity", "facade"})
OVERALL_RULE = ("mean over the counted boards of a submission's per-board rank by the main metric, a "
                "statistical rank group counting its mean position (a tie 2-4 counts 3); a failed or missing "
                "result counts as (ranked submissions on that board + 1), so skipping a board never helps; "
                "not counted (shown, with the reason): diagnostic boards (the sanity checks, FACADE), pipeline checks "
                "(reference model too close to chance), boards whose records mix models, data or settings, "
                "and tasks run on their default subset of submissions only; ties broken by name")

#: a board counts only if its reference model's dev accuracy is at least this far from chance to
#: perfect: chance + PIPELINE_MARGIN * (1 - chance) (2 classes at chance 0.5: 0.625; 3 at 1/3: 0.5)
PIPELINE_MARGIN = 0.25

#: relative tolerance of the self-consistency checks (a mean recomputed from per-example values)
CONSISTENCY_TOL = 1e-6

#: a board is flagged saturated when more than this share of its ranked submissions score within the
#: best one's confidence interval
SATURATED_SHARE = 0.5


MAX_RECORD_BYTES = 64 * 2**20
"""Result files larger than this are not read (a record is a few hundred kB at most)."""


@dataclass
class Board:
    task: str
    task_version: str
    model: str
    model_description: str
    dev_accuracy: float
    mlm_description: str | None
    main_metric: str
    higher_is_better: bool
    ranked: list[tuple[int, ResultRecord, str]]  # (rank, record, relative path)
    failed: list[tuple[ResultRecord, str]]
    audit: bool = False
    """A diagnostic board (main-metric family in AUDIT_FAMILIES, e.g. the T5 sanity checks):
    shown, but not counted in the overall rank."""
    groups: dict = field(default_factory=dict)
    """submission name -> :class:`harness.board.ranking.RankGroup` (statistical rank group)."""
    not_counted: str | None = None
    """Why the board is not counted in the overall rank (None: it is, or it is diagnostic)."""
    flags: tuple = ()
    """Warnings shown on the board (mixed records, a saturated task, a chance-level model)."""

    @property
    def key(self) -> str:
        return f"{self.task}/{self.model}"


def record_problem(rec: ResultRecord) -> str | None:
    """Why a schema-valid record still cannot go on a board (None: it can)."""
    if rec.status == "ok":
        missing = [f for f in ("timing", "cost", "memory", "truncation") if getattr(rec, f) is None]
        if missing:
            return f"status ok but no {', '.join(missing)}"
        if rec.main_metric not in rec.scores:
            return f"status ok but no score for its main metric {rec.main_metric!r}"
        return consistency_problem(rec)
    elif rec.error is None:
        return "status error but no error"
    return None


def consistency_problem(rec: ResultRecord) -> str | None:
    """Why a record's scores contradict themselves (None: they agree): every score must lie inside
    its own confidence interval, count at most the task's examples, and, where the record keeps
    per-example values for it, count exactly those and equal their mean (:data:`CONSISTENCY_TOL`)."""
    import math

    n_examples = rec.task.n_examples
    ids = len(rec.example_ids)
    for m, sc in sorted(rec.scores.items()):
        tol = CONSISTENCY_TOL * max(1.0, abs(sc.value))
        if not sc.ci_low - tol <= sc.value <= sc.ci_high + tol:
            return f"score {m} = {sc.value:.6g} lies outside its own CI [{sc.ci_low:.6g}, {sc.ci_high:.6g}]"
        if sc.n > n_examples:
            return f"score {m} counts n={sc.n} examples, but the task evaluated {n_examples}"
        vals = rec.per_example.get(m)
        if vals is None:
            continue
        if len(vals) != sc.n:
            return f"score {m} says n={sc.n} but the record has {len(vals)} per-example values"
        if ids and len(vals) != ids:
            return f"score {m} has {len(vals)} per-example values for {ids} example ids"
        if vals:
            mean = math.fsum(vals) / len(vals)
            if abs(mean - sc.value) > tol:
                return (f"score {m} = {sc.value:.6g} is not the mean of its per-example values "
                        f"({mean:.6g})")
    return None


def chance_level(rec: ResultRecord) -> float | None:
    """The accuracy of guessing: the larger of 1 / number of labels and the dev split's majority
    share, from the record (None: an older record that does not say)."""
    m = rec.model
    vals = [v for v in ((1.0 / m.num_labels) if m.num_labels else None, m.majority_dev_accuracy) if v is not None]
    return max(vals) if vals else None


def pipeline_bar(chance: float) -> float:
    """The dev accuracy a reference model needs for its board to count (:data:`PIPELINE_MARGIN`)."""
    return chance + PIPELINE_MARGIN * (1.0 - chance)


def declared_subset(task: str) -> tuple[str, ...] | None:
    """The built-in submissions ``task`` runs unless ``--all-submissions`` (None: every one, or an
    unknown task)."""
    from harness.engine.task import declared_default_submissions

    return declared_default_submissions(task)


def _short(e: Exception, limit: int = 600) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + "..."


def load_results(results_dir: Path, skip_invalid: bool = False,
                 skipped: list[tuple[str, str]] | None = None) -> list[tuple[ResultRecord, str]]:
    """Every result record under ``results_dir`` with its relative path, sorted by path.

    A file that is not a valid record (unreadable, not JSON, schema violation, a symbolic link,
    over :data:`MAX_RECORD_BYTES`) raises ``ValueError``; with ``skip_invalid`` it is left out
    with a warning instead (and ``(relative path, reason)`` appended to ``skipped``)."""
    results_dir = Path(results_dir)
    out = []
    for path in sorted(results_dir.rglob("*.json")):
        rel = path.relative_to(results_dir).as_posix()
        try:
            if path.is_symlink() or not path.is_file():
                raise ValueError("not a regular file (symbolic links are not followed)")
            size = path.stat().st_size
            if size > MAX_RECORD_BYTES:
                raise ValueError(f"{size} bytes, over the {MAX_RECORD_BYTES} byte limit")
            rec = ResultRecord.read(path)
            problem = record_problem(rec)
            if problem:
                raise ValueError(problem)
        except Exception as e:
            if not skip_invalid:
                raise ValueError(f"{path}: not a valid result record: {e}") from e
            reason = _short(e)
            log.warning("leaderboard: skipping %s: not a valid result record: %s", path, reason)
            if skipped is not None:
                skipped.append((rel, reason))
            continue
        out.append((rec, rel))
    return out


@dataclass
class Group:
    """The records of one board (task, reference model), ordered: what ranking works on."""

    task: str
    model: str
    items: list[tuple[ResultRecord, str]]
    ok: list[tuple[ResultRecord, str]]  # scored records, best first (ties in value by name)
    failed: list[tuple[ResultRecord, str]]  # error records, by name
    main_metric: str
    higher_is_better: bool


def group_records(records: list[tuple[ResultRecord, str]]) -> list[Group]:
    """The records grouped by (task, model), sorted, each group's scored records best first."""
    by_board: dict[tuple[str, str], list[tuple[ResultRecord, str]]] = {}
    for rec, rel in records:
        by_board.setdefault((rec.task.name, rec.model.name), []).append((rec, rel))
    out = []
    for (task, model), items in sorted(by_board.items()):
        main = items[0][0].main_metric
        ok = []
        for r, p in items:
            if r.status == "ok" and main not in r.scores:  # only forged or mixed-up records: keep the board
                log.warning("leaderboard: skipping %s: no score for the board's main metric %r", p, main)
            elif r.status == "ok":
                ok.append((r, p))
        failed = sorted([(r, p) for r, p in items if r.status != "ok"], key=lambda x: x[0].submission.name)
        hib = ok[0][0].scores[main].higher_is_better if ok else True
        sign = -1.0 if hib else 1.0
        ok.sort(key=lambda x: (sign * x[0].scores[main].value, x[0].submission.name))
        out.append(Group(task, model, items, ok, failed, main, hib))
    return out


def build_boards(records: list[tuple[ResultRecord, str]]) -> list[Board]:
    boards = []
    for g in group_records(records):
        rank_groups = rank_groups_of(g.ok, g.main_metric, g.higher_is_better)
        # a submission's rank is its group's best position: ties (not separable) share it
        ranked = [(rank_groups[r.submission.name].rank_range[0], r, p) for r, p in g.ok]
        ref = g.items[0][0]
        mlms = sorted({f"{r.mlm.name}: {r.mlm.description} (hash {r.mlm.model_hash})" for r, _ in g.items if r.mlm})
        audit = bool(g.ok) and g.ok[0][0].scores[g.main_metric].family in AUDIT_FAMILIES
        board = Board(g.task, ref.task.version, g.model, ref.model.description, ref.model.dev_accuracy,
                      "; ".join(mlms) or None, g.main_metric, g.higher_is_better, ranked, g.failed, audit,
                      rank_groups)
        mixed = mixed_records(g.items)
        chance = next((c for c in (chance_level(r) for r, _ in g.items) if c is not None), None)
        flags = []
        if mixed:
            flags.append("mixed records: " + "; ".join(mixed) + " (not comparable: re-run them together)")
            board.not_counted = "its records mix " + ", ".join(m.split(":")[0] for m in mixed)
        if chance is not None and board.dev_accuracy < pipeline_bar(chance):
            why = (f"pipeline check: the reference model's dev accuracy {board.dev_accuracy:.3f} is below "
                   f"{pipeline_bar(chance):.3f} (chance {chance:.3f} plus {PIPELINE_MARGIN:g} of the way to 1), "
                   "so its scores say little about the explainers")
            flags.append(why)
            board.not_counted = board.not_counted or why
        sat = None if audit else saturated(board)
        if sat:
            flags.append(sat)
        board.flags = tuple(flags)
        boards.append(board)
    everyone = {r.submission.name for b in boards if not b.audit for _, r, _ in b.ranked} | \
               {r.submission.name for b in boards if not b.audit for r, _ in b.failed}
    for b in boards:
        present = {r.submission.name for _, r, _ in b.ranked} | {r.submission.name for r, _ in b.failed}
        if not b.audit and b.not_counted is None and everyone - present and declared_subset(b.task) is not None:
            b.not_counted = (f"run on the task's default subset of submissions only ({len(present)} of "
                             f"{len(everyone)}; --all-submissions runs every one)")
    return boards


#: what the records of one board must agree on, and how a disagreement is named
_SAME = (("model hashes", lambda r: r.model.model_hash), ("task versions", lambda r: (r.task.version, r.task.spec_hash)),
         ("data", lambda r: r.task.data_hash), ("example counts", lambda r: r.task.n_examples),
         ("aggregations", lambda r: r.aggregation),
         ("masked LMs", lambda r: None if r.mlm is None else r.mlm.model_hash),
         ("model dtypes", lambda r: r.model.dtype))


def mixed_records(items: list[tuple[ResultRecord, str]]) -> list[str]:
    """What the records of one board disagree on (empty: nothing): each as ``"<what>: <values>"``.
    A record without a masked LM (a run that needed none) agrees with any masked LM, and one
    without a recorded dtype (written before dtypes were recorded: float32) with float32."""
    out = []
    for what, key in _SAME:
        vals = {key(r) for r, _ in items}
        if what == "masked LMs":
            vals.discard(None)
        if what == "model dtypes":
            vals = {"float32" if v is None else v for v in vals}
        if len(vals) > 1:
            shown = sorted(str(v if not isinstance(v, tuple) else v[0]) for v in vals)
            out.append(f"{what}: {len(vals)} different ({', '.join(shown[:4])}{', ...' if len(shown) > 4 else ''})")
    return out


def saturated(b: Board) -> str | None:
    """A flag when more than :data:`SATURATED_SHARE` of the ranked submissions score within the best
    one's confidence interval (the task no longer separates them), else None."""
    if len(b.ranked) < 3:
        return None
    best = b.ranked[0][1].scores[b.main_metric]
    within = sum(1 for _, r, _ in b.ranked if best.ci_low <= r.scores[b.main_metric].value <= best.ci_high)
    if within / len(b.ranked) <= SATURATED_SHARE:
        return None
    return (f"saturated: {within} of {len(b.ranked)} submissions score within the best one's confidence interval "
            f"[{best.ci_low:.3f}, {best.ci_high:.3f}]; this board barely separates them")


def rank_groups_of(ok: list[tuple[ResultRecord, str]], main: str, higher_is_better: bool) -> dict:
    """Statistical rank groups of a board's ranked records (in board order), from their
    per-example main-metric values on shared example ids (:func:`harness.board.ranking.rank_groups`).
    A record without usable per-example values is tested on nothing: it ties with its neighbours."""
    from harness.board.ranking import rank_groups

    entries = []
    for r, _ in ok:
        vals = r.per_example.get(main) or []
        ids = list(r.example_ids)
        if not vals or len(ids) != len(vals) or len(set(ids)) != len(ids):
            ids, vals = [f"<no per-example values: {r.submission.name}>"], [r.scores[main].value]
        entries.append((r.submission.name, ids, vals))
    return {g.name: g for g in rank_groups(entries, higher_is_better=higher_is_better, presorted=True,
                                           grouping="leader")}


def ranking_boards(boards: list[Board]) -> list[Board]:
    """The boards the overall rank is computed over: the counted ones (:data:`OVERALL_RULE`)."""
    return [b for b in boards if not b.audit and b.not_counted is None]


def overall(boards: list[Board]) -> list[tuple[int, str, float, int]]:
    """(rank, submission, mean rank, boards with a score) per submission on the counted boards, best
    first; a failed or missing result counts as (ranked submissions on that board + 1)."""
    boards = ranking_boards(boards)
    names = sorted({r.submission.name for b in boards for _, r, _ in b.ranked} |
                   {r.submission.name for b in boards for r, _ in b.failed})
    rows = []
    for n in names:
        ranks = []
        for b in boards:
            found = [b.groups[n].rank if n in b.groups else rk for rk, r, _ in b.ranked if r.submission.name == n]
            # the rank group's mean position (a tie of 2-4 counts 3 for each); failed or not run: last + 1
            ranks.append(found[0] if found else len(b.ranked) + 1)
        rows.append((sum(ranks) / len(ranks), n, sum(1 for b in boards for _, r, _ in b.ranked if r.submission.name == n)))
    rows.sort()
    out, prev, rank = [], None, 0
    for i, (mean, n, k) in enumerate(rows):
        if prev is None or mean != prev:
            rank, prev = i + 1, mean
        out.append((rank, n, mean, k))
    return out
