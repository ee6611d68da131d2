"""``leaderboard.csv`` and ``leaderboard.json``, rendered from a :class:`~harness.board.model.BoardModel`:
one row per result (ranked, then failed, board by board), through :mod:`csv` and
:func:`json.dumps` (NaN and infinity refused)."""

from __future__ import annotations

import csv
import io
import json

from harness.board.model import BoardModel


def table_rows(model: BoardModel) -> list[dict]:
    """The board rows as dicts (CSV rows, JSON ``boards``)."""
    rows = []
    for b in model.boards:
        for r in b.rows:
            row = {"task": b.task, "task_version": b.task_version, "model": b.model, "rank": r.rank,
                   "rank_group": r.rank_group,
                   "submission": r.submission, "version": r.version, "status": "ok", "main_metric": b.main_metric}
            for c, s in zip(b.columns, r.scores):  # setdefault: a metric named like a column cannot overwrite it
                m = c.metric
                row.setdefault(m, None if s is None else round(s.value, 6))
                row.setdefault(f"{m}_ci_low", None if s is None else round(s.ci_low, 6))
                row.setdefault(f"{m}_ci_high", None if s is None else round(s.ci_high, 6))
                if s is not None and s.params_json is not None:
                    row.setdefault(f"{m}_params", s.params_json)
                for k, v in (() if s is None else s.details):
                    row.setdefault(f"{m}_{k}", round(v, 6))
            row.update({"s_per_example_p50": round(r.p50_s, 6),
                        "s_per_example_p95": round(r.p95_s, 6),
                        "forward_per_example": round(r.forward_per_example, 3),
                        "backward_per_example": round(r.backward_per_example, 3),
                        "mlm_per_example": round(r.mlm_per_example, 3),
                        "cpu_s_total": None if r.cpu_total_s is None else round(r.cpu_total_s, 6),
                        "measured_by": r.measured_by, "passes_self_reported": r.self_reported,
                        "pass_check": r.pass_check,
                        "peak_rss_mb": round(r.peak_rss_mb, 1), "device": r.device,
                        "n_truncated": r.n_truncated, "record": f"results/{r.record}"})
            rows.append(row)
        for f in b.failed:
            rows.append({"task": b.task, "task_version": b.task_version, "model": b.model, "rank": None,
                         "submission": f.submission, "version": f.version, "status": "error",
                         "main_metric": b.main_metric, "error": f"{f.stage}: {f.error_type}: {f.message[:300]}",
                         "record": f"results/{f.record}"})
    return rows


_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(v):
    """A cell value; a text starting like a spreadsheet formula gets a leading ``'`` (CSV injection)."""
    if v is None:
        return ""
    if isinstance(v, str) and v.startswith(_CSV_FORMULA):
        return "'" + v
    return v


def render_csv(rows) -> str:
    """The board rows (a :class:`BoardModel` or :func:`table_rows`' dicts) through :mod:`csv`
    (quoting, embedded newlines and commas handled by it)."""
    if isinstance(rows, BoardModel):
        rows = table_rows(rows)
    cols: list[str] = []
    for row in rows:
        for k in row:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow({k: csv_cell(k) for k in cols})
    for row in rows:
        w.writerow({k: csv_cell(row.get(k)) for k in cols})
    return buf.getvalue()


def json_doc(model: BoardModel) -> dict:
    return {"overall_rule": model.overall_rule,
            "overall": [{"rank": o.rank, "submission": o.submission, "mean_task_rank": round(o.mean_rank, 6),
                         "boards_with_result": o.n_with_result, "counted_boards": model.n_ranking_boards}
                        for o in model.overall],
            "board_info": [{"board": b.key, "counted": b.counted, "diagnostic": b.audit,
                            "not_counted": b.not_counted, "flags": list(b.flags), "main_metric": b.main_metric,
                            "n_examples": list(b.n_examples), "dev_accuracy": round(b.dev_accuracy, 6),
                            "dates": list(b.dates), "commits": list(b.commits)} for b in model.boards],
            "boards": table_rows(model)}


def render_json(model: BoardModel) -> str:
    return json.dumps(json_doc(model), indent=1, sort_keys=True, allow_nan=False) + "\n"
