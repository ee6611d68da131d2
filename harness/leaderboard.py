"""Ranking and rendering, from result files alone.

Per task (and reference model): submissions ranked by the task's main metric, respecting
``higher_is_better``; ties share the better rank.  Overall rule (declared in the output):
a submission's mean per-task rank over all task boards, where a missing or failed result
counts as rank (number of ranked submissions on that board + 1); ties broken by name.
The same result files always give byte-identical outputs.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from harness.records import ResultRecord

log = logging.getLogger(__name__)

OVERALL_RULE = ("mean over the task boards a submission was run on of its per-task rank by the main "
                "metric; a failed result counts as (ranked submissions on that board + 1); boards a "
                "submission was not run on (e.g. tasks with a default subset) are not counted; ties broken by name")


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

    @property
    def key(self) -> str:
        return f"{self.task}/{self.model}"


def load_results(results_dir: Path) -> list[tuple[ResultRecord, str]]:
    results_dir = Path(results_dir)
    out = []
    for path in sorted(results_dir.rglob("*.json")):
        try:
            out.append((ResultRecord.read(path), path.relative_to(results_dir).as_posix()))
        except Exception as e:
            raise ValueError(f"{path}: not a valid result record: {e}") from e
    return out


def build_boards(records: list[tuple[ResultRecord, str]]) -> list[Board]:
    groups: dict[tuple[str, str], list[tuple[ResultRecord, str]]] = {}
    for rec, rel in records:
        groups.setdefault((rec.task.name, rec.model.name), []).append((rec, rel))
    boards = []
    for (task, model), items in sorted(groups.items()):
        ok = [(r, p) for r, p in items if r.status == "ok"]
        failed = sorted([(r, p) for r, p in items if r.status != "ok"], key=lambda x: x[0].submission.name)
        main = items[0][0].main_metric
        hib = ok[0][0].scores[main].higher_is_better if ok else True
        sign = -1.0 if hib else 1.0
        ok.sort(key=lambda x: (sign * x[0].scores[main].value, x[0].submission.name))
        ranked, prev, rank = [], None, 0
        for i, (r, p) in enumerate(ok):
            v = r.scores[main].value
            if prev is None or v != prev:
                rank, prev = i + 1, v
            ranked.append((rank, r, p))
        ref = items[0][0]
        mlms = sorted({f"{r.mlm.name}: {r.mlm.description} (hash {r.mlm.model_hash})" for r, _ in items if r.mlm})
        boards.append(Board(task, ref.task.version, model, ref.model.description, ref.model.dev_accuracy,
                            "; ".join(mlms) or None, main, hib, ranked, failed))
    return boards


def overall(boards: list[Board]) -> list[tuple[int, str, float, int]]:
    names = sorted({r.submission.name for b in boards for _, r, _ in b.ranked} |
                   {r.submission.name for b in boards for r, _ in b.failed})
    rows = []
    for n in names:
        ranks = []
        for b in boards:
            found = [rk for rk, r, _ in b.ranked if r.submission.name == n]
            if found:
                ranks.append(found[0])
            elif any(r.submission.name == n for r, _ in b.failed):
                ranks.append(len(b.ranked) + 1)
        rows.append((sum(ranks) / len(ranks), n, sum(1 for b in boards for _, r, _ in b.ranked if r.submission.name == n)))
    rows.sort()
    out, prev, rank = [], None, 0
    for i, (mean, n, k) in enumerate(rows):
        if prev is None or mean != prev:
            rank, prev = i + 1, mean
        out.append((rank, n, mean, k))
    return out


def _fmt(x: float | None, nd: int = 3) -> str:
    return "" if x is None else f"{x:.{nd}f}"


def _ms(x: float) -> str:
    return f"{x * 1000:.2f}"


def _metric_names(b: Board) -> list[str]:
    names = sorted({m for _, r, _ in b.ranked for m in r.scores})
    return [b.main_metric] + [m for m in names if m != b.main_metric]


def render_markdown(boards: list[Board], n_records: int) -> str:
    L = ["# attriboard leaderboard", "",
         f"Built from {n_records} result records in `leaderboard/results/` by `attriboard leaderboard`; "
         "do not edit by hand.", "",
         "Scores are means over the evaluated examples with percentile-bootstrap 95% confidence intervals "
         "(1,000 resamples). Time is wall time per example (batch time / batch size); fwd/ex and bwd/ex are "
         "classifier sequences forwarded / back-propagated per example, mlm/ex masked-LM sequences per example.", "",
         "## Overall", "", f"Rule: {OVERALL_RULE}.", "",
         "| rank | submission | mean task rank | boards with a result |", "|---:|---|---:|---:|"]
    for rank, n, mean, k in overall(boards):
        L.append(f"| {rank} | {n} | {mean:.2f} | {k}/{len(boards)} |")
    for b in boards:
        metrics = _metric_names(b)
        L += ["", f"## {b.task} (v{b.task_version}) on {b.model}", "",
              f"Model: {b.model_description}, dev accuracy {b.dev_accuracy:.4f}. Main metric: "
              f"`{b.main_metric}` ({'higher' if b.higher_is_better else 'lower'} is better)."
              + (f" Masked LM: {b.mlm_description}." if b.mlm_description else ""), ""]
        heads = ["rank", "submission", "version"]
        for m in metrics:
            hib = next(r.scores[m].higher_is_better for _, r, _ in b.ranked if m in r.scores)
            heads.append(f"{m} {'↑' if hib else '↓'} [95% CI]")
        heads += ["ms/example p50", "ms/example p95", "fwd/ex", "bwd/ex", "mlm/ex", "peak RSS MB", "truncated",
                  "device", "record"]
        L.append("| " + " | ".join(heads) + " |")
        L.append("|" + "|".join(["---:"] + ["---"] * 2 + ["---"] * len(metrics) + ["---:"] * 7 + ["---", "---"]) + "|")
        for rank, r, rel in b.ranked:
            cells = [str(rank), r.submission.name, r.submission.version]
            for m in metrics:
                s = r.scores.get(m)
                cells.append("" if s is None else f"{s.value:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}]")
            cells += [_ms(r.timing.per_example_p50_s), _ms(r.timing.per_example_p95_s),
                      f"{r.cost.forward_per_example:.1f}", f"{r.cost.backward_per_example:.1f}",
                      f"{r.cost.mlm_per_example:.1f}", f"{r.memory.peak_rss_mb:.0f}", f"{r.truncation.n_truncated}/{r.truncation.n_inputs}",
                      r.timing.device, f"[json](results/{rel})"]
            L.append("| " + " | ".join(cells) + " |")
        L += _render_tables(b)
        if b.failed:
            L += ["", "Failed submissions (not ranked):", "", "| submission | stage | error |", "|---|---|---|"]
            for r, rel in b.failed:
                msg = r.error.message.replace("|", "\\|").replace("\n", " ")[:300]
                L.append(f"| {r.submission.name} | {r.error.stage} | {r.error.type}: {msg} |")
    return "\n".join(L) + "\n"


def _render_tables(b: Board) -> list[str]:
    """Task-specific tables stored in the records (the fragility per-bucket table and plots)."""
    rows = [(r, r.tables) for _, r, _ in b.ranked if r.tables.get("fragility_buckets")]
    if not rows:
        return []
    from harness.fragility.metrics import BUCKETS
    from harness.fragility.plots import plot_path

    L = ["", "Fragility per perturbation-ratio bucket: mean clipped Spearman correlation between the original "
         "and perturbed word maps (inputs in the bucket), under the strongest objective and under random "
         "selection. Plots: violin plots of the per-input correlation per bucket.", "",
         "| submission | objective | " + " | ".join(BUCKETS) + " | plot |", "|---|---|" + "---|" * len(BUCKETS) + "---|"]
    for r, tables in rows:
        strongest = tables["fragility_summary"][0]["strongest_objective"]
        for obj in dict.fromkeys([strongest, "random"]):
            cells = []
            for bucket in BUCKETS:
                row = next((x for x in tables["fragility_buckets"] if x["objective"] == obj and x["bucket"] == bucket), None)
                v = None if row is None else row["spearman_clipped_mean"]
                cells.append("" if v is None else f"{v:.3f} (n={row['n_inputs']})")
            plot = plot_path(b.task, b.model, r.submission.name)
            L.append(f"| {r.submission.name} | {obj}{' (strongest)' if obj == strongest else ''} | "
                     + " | ".join(cells) + f" | [png]({plot}) |")
    return L


def table_rows(boards: list[Board]) -> list[dict]:
    rows = []
    for b in boards:
        for rank, r, rel in b.ranked:
            row = {"task": b.task, "task_version": b.task_version, "model": b.model, "rank": rank,
                   "submission": r.submission.name, "version": r.submission.version, "status": "ok",
                   "main_metric": b.main_metric}
            for m in _metric_names(b):
                s = r.scores.get(m)
                row[m] = None if s is None else round(s.value, 6)
                row[f"{m}_ci_low"] = None if s is None else round(s.ci_low, 6)
                row[f"{m}_ci_high"] = None if s is None else round(s.ci_high, 6)
            row.update({"s_per_example_p50": round(r.timing.per_example_p50_s, 6),
                        "s_per_example_p95": round(r.timing.per_example_p95_s, 6),
                        "forward_per_example": round(r.cost.forward_per_example, 3),
                        "backward_per_example": round(r.cost.backward_per_example, 3),
                        "mlm_per_example": round(r.cost.mlm_per_example, 3),
                        "peak_rss_mb": round(r.memory.peak_rss_mb, 1), "device": r.timing.device,
                        "n_truncated": r.truncation.n_truncated, "record": f"results/{rel}"})
            rows.append(row)
        for r, rel in b.failed:
            rows.append({"task": b.task, "task_version": b.task_version, "model": b.model, "rank": None,
                         "submission": r.submission.name, "version": r.submission.version, "status": "error",
                         "main_metric": b.main_metric, "error": f"{r.error.stage}: {r.error.type}: {r.error.message[:300]}",
                         "record": f"results/{rel}"})
    return rows


def render_csv(rows: list[dict]) -> str:
    cols: list[str] = []
    for row in rows:
        for k in row:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in cols})
    return buf.getvalue()


def build(results_dir: Path, out_dir: Path) -> list[Path]:
    """Write LEADERBOARD.md, leaderboard.csv, leaderboard.json into ``out_dir``."""
    records = load_results(results_dir)
    if not records:
        raise FileNotFoundError(f"no result records under {results_dir}; run `attriboard run` first")
    boards = build_boards(records)
    rows = table_rows(boards)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"overall_rule": OVERALL_RULE,
           "overall": [{"rank": rk, "submission": n, "mean_task_rank": round(m, 6), "boards_with_result": k}
                       for rk, n, m, k in overall(boards)],
           "boards": rows}
    files = {
        "LEADERBOARD.md": render_markdown(boards, len(records)),
        "leaderboard.csv": render_csv(rows),
        "leaderboard.json": json.dumps(doc, indent=1, sort_keys=True) + "\n",
    }
    paths = []
    for name, text in files.items():
        p = out_dir / name
        p.write_text(text, encoding="utf-8")
        paths.append(p)
    if any(r.tables.get("fragility_per_input") for r, _ in records):
        from harness.fragility.plots import plot_fragility

        paths += plot_fragility([r for r, _ in records], out_dir)
    return paths
