"""Result records grouped into boards and ranked: what every part of the board is computed from.

Per task (and reference model): submissions ordered by the task's main metric, respecting
``higher_is_better``, and grouped into statistical rank groups (:mod:`harness.board.ranking`,
``grouping="leader"``: walking down the order, a submission joins the group of the ones above
it unless its paired difference to the group's best, on the shared examples, is significant
after a Bonferroni correction over the m-1 tests; a group is shown as a range, e.g. ``2-4``;
each member's rank is the group's best position).  Overall rule (:data:`OVERALL_RULE`): a submission's mean per-task rank
over the task boards, a rank group counting its mean position (2-4 counts 3), a failed result
counting as rank (number of ranked submissions on that board + 1); ties broken by name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from harness.engine.records import ResultRecord

log = logging.getLogger("harness.board.leaderboard")  # the name the build log has always used

AUDIT_FAMILIES = frozenset({"sanity"})
OVERALL_RULE = ("mean over the task boards a submission was run on of its per-task rank by the main "
                "metric, a statistical rank group counting its mean position (a tie 2-4 counts 3); a failed result counts as (ranked submissions on that board + 1); boards a "
                "submission was not run on (e.g. tasks with a default subset) are not counted; diagnostic "
                "boards (the sanity checks) are shown but not counted; ties broken by name")


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
    elif rec.error is None:
        return "status error but no error"
    return None


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
        boards.append(Board(g.task, ref.task.version, g.model, ref.model.description, ref.model.dev_accuracy,
                            "; ".join(mlms) or None, g.main_metric, g.higher_is_better, ranked, g.failed, audit,
                            rank_groups))
    return boards


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
    """The boards the overall rank is computed over (all but diagnostic ones)."""
    return [b for b in boards if not b.audit]


def overall(boards: list[Board]) -> list[tuple[int, str, float, int]]:
    boards = ranking_boards(boards)
    names = sorted({r.submission.name for b in boards for _, r, _ in b.ranked} |
                   {r.submission.name for b in boards for r, _ in b.failed})
    rows = []
    for n in names:
        ranks = []
        for b in boards:
            found = [b.groups[n].rank if n in b.groups else rk for rk, r, _ in b.ranked if r.submission.name == n]
            if found:
                ranks.append(found[0])  # the rank group's mean position: a tie of 2-4 counts 3 for each
            elif any(r.submission.name == n for r, _ in b.failed):
                ranks.append(len(b.ranked) + 1)
        if not ranks:
            continue
        rows.append((sum(ranks) / len(ranks), n, sum(1 for b in boards for _, r, _ in b.ranked if r.submission.name == n)))
    rows.sort()
    out, prev, rank = [], None, 0
    for i, (mean, n, k) in enumerate(rows):
        if prev is None or mean != prev:
            rank, prev = i + 1, mean
        out.append((rank, n, mean, k))
    return out
