"""Ranking and rendering, from result files alone.

Per task (and reference model): submissions ranked by the task's main metric, respecting
``higher_is_better``; ties share the better rank.  Overall rule (declared in the output):
a submission's mean per-task rank over all task boards, where a missing or failed result
counts as rank (number of ranked submissions on that board + 1); ties broken by name.
The same result files always give byte-identical outputs.

Every string taken from a record (names, versions, metric names and parameters, error texts,
descriptions, table cells) is untrusted: it goes into Markdown through :func:`md_escape`
(or :func:`md_code`), into HTML through :func:`html.escape` (:mod:`harness.board.html`), into
CSV through the :mod:`csv` module and into JSON through :func:`json.dumps` with NaN and
infinity refused.  A result file that does not load (bad JSON, schema violation, an ``ok``
record without the fields the board shows) is skipped with a warning naming it; the board is
still written.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from harness.engine.records import ResultRecord
from tasks.sanity import report as sanity_report

log = logging.getLogger(__name__)

AUDIT_FAMILIES = frozenset({"sanity"})
OVERALL_RULE = ("mean over the task boards a submission was run on of its per-task rank by the main "
                "metric; a failed result counts as (ranked submissions on that board + 1); boards a "
                "submission was not run on (e.g. tasks with a default subset) are not counted; diagnostic "
                "boards (the sanity checks) are shown but not counted; ties broken by name")


MAX_RECORD_BYTES = 64 * 2**20
"""Result files larger than this are not read (a record is a few hundred kB at most)."""

# -- escaping ----------------------------------------------------------------------------------

_MD_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u0085]+")  # newlines, CR, tabs, other controls
_MD_BIDI = re.compile(r"[\u200e\u200f\u202a-\u202e\u2066-\u2069]")  # direction overrides (reorder text)
_MD_PUNCT = re.compile(r"[\\`*\[\]!|~#$]")
_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MD_CODE_SAFE = re.compile(r"[A-Za-z0-9_.:/+=@-]+")


def md_escape(value, limit: int | None = None) -> str:
    """``value`` as inert Markdown text on one line: line breaks and control characters become
    spaces, ``<``, ``>`` and ``&`` HTML entities, and the punctuation that starts Markdown syntax
    (backslash, backticks, ``*``, ``[``, ``]``, ``!``, ``|``, ``~``, ``#``, ``$``) is
    backslash-escaped, so a record string can neither end a table cell or line, nor open a
    link, image, code span or raw HTML.  ``limit``: at most that many characters of the text."""
    text = _MD_BIDI.sub("", _MD_BREAKS.sub(" ", "" if value is None else str(value)))
    if limit is not None and len(text) > limit:
        text = text[:max(limit - 1, 0)] + "\u2026"
    text = "".join(_MD_ENTITIES.get(c, c) for c in text)
    return _MD_PUNCT.sub(lambda m: "\\" + m.group(0), text)


def md_code(value, limit: int | None = None) -> str:
    """A record string as a Markdown code span when it is a plain identifier (code spans do not
    honour backslash escapes), else as :func:`md_escape` text."""
    text = "" if value is None else str(value)
    if _MD_CODE_SAFE.fullmatch(text) and (limit is None or len(text) <= limit):
        return f"`{text}`"
    return md_escape(text, limit)


def md_link_target(path: str) -> str:
    """A relative path as a Markdown link destination (percent-encoded: no space, parenthesis or
    bracket can end the link early)."""
    return quote(str(path), safe="/._-~")


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


def build_boards(records: list[tuple[ResultRecord, str]]) -> list[Board]:
    groups: dict[tuple[str, str], list[tuple[ResultRecord, str]]] = {}
    for rec, rel in records:
        groups.setdefault((rec.task.name, rec.model.name), []).append((rec, rel))
    boards = []
    for (task, model), items in sorted(groups.items()):
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
        ranked, prev, rank = [], None, 0
        for i, (r, p) in enumerate(ok):
            v = r.scores[main].value
            if prev is None or v != prev:
                rank, prev = i + 1, v
            ranked.append((rank, r, p))
        ref = items[0][0]
        mlms = sorted({f"{r.mlm.name}: {r.mlm.description} (hash {r.mlm.model_hash})" for r, _ in items if r.mlm})
        audit = bool(ok) and ok[0][0].scores[main].family in AUDIT_FAMILIES
        boards.append(Board(task, ref.task.version, model, ref.model.description, ref.model.dev_accuracy,
                            "; ".join(mlms) or None, main, hib, ranked, failed, audit))
    return boards


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
            found = [rk for rk, r, _ in b.ranked if r.submission.name == n]
            if found:
                ranks.append(found[0])
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


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _fmt(x: float | None, nd: int = 3) -> str:
    return "" if x is None else f"{x:.{nd}f}"


def _ms(x: float) -> str:
    return f"{x * 1000:.2f}"


def _metric_names(b: Board) -> list[str]:
    names = sorted({m for _, r, _ in b.ranked for m in r.scores})
    return [b.main_metric] + [m for m in names if m != b.main_metric]


def cost_mark(r) -> str:
    """``*``: pass counts self-reported by the worker; ``!``: below the declared ``[passes]``."""
    if not getattr(r.cost, "self_reported", False):
        return ""
    return "!" if str(r.cost.pass_check or "").startswith("inconsistent") else "*"


def cpu_ms(r) -> str:
    """CPU milliseconds per example, or an empty cell for records without the figure."""
    cpu = getattr(r.timing, "cpu_total_s", None)
    n = r.task.n_examples or 1
    return "" if cpu is None else f"{cpu / n * 1000:.2f}"


def render_markdown(boards: list[Board], n_records: int, skipped: list[tuple[str, str]] = ()) -> str:
    """The Markdown board; every record string goes through :func:`md_escape` / :func:`md_code`."""
    E = md_escape
    L = ["# attriboard leaderboard", "",
         f"Built from {n_records} result records in `leaderboard/results/` by `attriboard leaderboard`; "
         "do not edit by hand.", "",
         "Scores are means over the evaluated examples with percentile-bootstrap 95% confidence intervals "
         "(1,000 resamples). Time is wall time per example (batch time / batch size) and CPU ms/example the "
         "user + system CPU time per example; in sandboxed runs both and peak RSS are measured by the harness "
         "from outside the worker (docs/SECURITY.md). fwd/ex and bwd/ex are classifier sequences forwarded / "
         "back-propagated per example, mlm/ex masked-LM sequences per example: marked `*` where the worker "
         "reported them itself (self-reported; `!` when they fall below the submission's declared `[passes]`).", ""]
    if skipped:
        L += [f"Skipped {len(skipped)} result file(s) that are not valid records: "
              + ", ".join(E(rel, 200) for rel, _ in skipped) + " (reasons in the build log).", ""]
    L += ["## Overall", "", f"Rule: {OVERALL_RULE}.", "",
          "| rank | submission | mean task rank | boards with a result |", "|---:|---|---:|---:|"]
    for rank, n, mean, k in overall(boards):
        L.append(f"| {rank} | {E(n, 100)} | {mean:.2f} | {k}/{len(ranking_boards(boards))} |")
    for b in boards:
        metrics = _metric_names(b)
        L += ["", f"## {E(b.task, 100)} (v{E(b.task_version, 40)}) on {E(b.model, 100)}", "",
              f"Model: {E(b.model_description, 300)}, dev accuracy {b.dev_accuracy:.4f}. Main metric: "
              f"{md_code(b.main_metric, 100)} ({'higher' if b.higher_is_better else 'lower'} is better)."
              + (f" Masked LM: {E(b.mlm_description, 600)}." if b.mlm_description else "")
              + (" Diagnostic board: shown, not counted in the overall rank." if b.audit else ""), ""]
        heads = ["rank", "submission", "version"]
        for m in metrics:
            hib = next((r.scores[m].higher_is_better for _, r, _ in b.ranked if m in r.scores), b.higher_is_better)
            ops = sorted({str(r.scores[m].params["operator"]) for _, r, _ in b.ranked
                          if m in r.scores and "operator" in r.scores[m].params})
            op = f" (operator {E('/'.join(ops), 100)})" if ops else ""
            heads.append(f"{E(m, 100)}{op} {'↑' if hib else '↓'} [95% CI]")
        heads += ["ms/example p50", "ms/example p95", "CPU ms/example", "fwd/ex", "bwd/ex", "mlm/ex", "peak RSS MB",
                  "truncated", "device", "record"]
        L.append("| " + " | ".join(heads) + " |")
        L.append("|" + "|".join(["---:"] + ["---"] * 2 + ["---"] * len(metrics) + ["---:"] * 8 + ["---", "---"]) + "|")
        for rank, r, rel in b.ranked:
            cells = [str(rank), E(r.submission.name, 100), E(r.submission.version, 40)]
            for m in metrics:
                s = r.scores.get(m)
                cells.append("" if s is None else f"{s.value:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}]")
            mark = cost_mark(r)
            cells += [_ms(r.timing.per_example_p50_s), _ms(r.timing.per_example_p95_s), cpu_ms(r),
                      f"{r.cost.forward_per_example:.1f}{mark}", f"{r.cost.backward_per_example:.1f}{mark}",
                      f"{r.cost.mlm_per_example:.1f}{mark}", f"{r.memory.peak_rss_mb:.0f}", f"{r.truncation.n_truncated}/{r.truncation.n_inputs}",
                      E(r.timing.device, 60), f"[json](results/{md_link_target(rel)})"]
            L.append("| " + " | ".join(cells) + " |")
        L += _render_metric_params(b, metrics)
        L += _render_tables(b)
        L += sanity_report.board_notes(b)  # T5: removal-operator bias flags under removal metrics
        if b.failed:
            L += ["", "Failed submissions (not ranked):", "", "| submission | stage | error |", "|---|---|---|"]
            for r, rel in b.failed:
                L.append(f"| {E(r.submission.name, 100)} | {E(r.error.stage)} | "
                         f"{E(f'{r.error.type}: {r.error.message}', 300)} |")
    L += sanity_report.render_sections(boards)  # T5: metric-bias matrix and sanity checks
    return "\n".join(L) + "\n"


def _param_text(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_param_text(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _render_metric_params(b: Board, metrics: list[str]) -> list[str]:
    """The parameters each metric ran with (e.g. the removal operator), and per-submission
    details (e.g. the threshold tau chosen for IoU), straight from the records."""
    L: list[str] = []
    lines = []
    for m in metrics:
        seen = sorted({json.dumps(r.scores[m].params, sort_keys=True) for _, r, _ in b.ranked if m in r.scores})
        if seen and seen != ["{}"]:
            texts = []
            for js in seen:
                params = json.loads(js)
                texts.append(md_escape(", ".join(f"{k}={_param_text(v)}" for k, v in sorted(params.items())), 300))
            lines.append(f"- {md_code(m, 100)}: " + " | ".join(texts)
                         + (" (differs between records)" if len(seen) > 1 else ""))
    if lines:
        L += ["", "Metric parameters (as recorded with every score):", ""] + lines
    det_metrics = [m for m in metrics if any(m in r.scores and r.scores[m].details for _, r, _ in b.ranked)]
    if det_metrics:
        L += ["", "Metric details per submission (e.g. the chosen threshold tau):", "",
              "| submission | " + " | ".join(md_escape(m, 100) for m in det_metrics) + " |",
              "|---|" + "---|" * len(det_metrics)]
        for _, r, _ in b.ranked:
            cells = []
            for m in det_metrics:
                s = r.scores.get(m)
                d = {} if s is None else s.details
                cells.append(md_escape(", ".join(f"{k}={v:.3g}" for k, v in sorted(d.items())), 300))
            L.append(f"| {md_escape(r.submission.name, 100)} | " + " | ".join(cells) + " |")
    return L


def _render_tables(b: Board) -> list[str]:
    """Task-specific tables stored in the records (the fragility per-bucket table and plots)."""
    rows = [(r, r.tables) for _, r, _ in b.ranked if r.tables.get("fragility_buckets")]
    if not rows:
        return []
    from tasks.fragility.metrics import BUCKETS
    from tasks.fragility.plots import plot_path

    L = ["", "Fragility per perturbation-ratio bucket: mean clipped Spearman correlation between the original "
         "and perturbed word maps (inputs in the bucket), under the strongest objective and under random "
         "selection. Plots: violin plots of the per-input correlation per bucket.", "",
         "| submission | objective | " + " | ".join(BUCKETS) + " | plot |", "|---|---|" + "---|" * len(BUCKETS) + "---|"]
    for r, tables in rows:
        summary = (tables.get("fragility_summary") or [{}])[0]
        strongest = str(summary.get("strongest_objective", ""))
        for obj in dict.fromkeys([strongest, "random"]):
            cells = []
            for bucket in BUCKETS:
                row = next((x for x in tables["fragility_buckets"]
                            if x.get("objective") == obj and x.get("bucket") == bucket), None)
                v = None if row is None else row.get("spearman_clipped_mean")
                n = None if row is None else row.get("n_inputs")
                ok = _is_num(v) and (n is None or _is_num(n))
                cells.append(f"{v:.3f} (n={n:g})" if ok and n is not None else f"{v:.3f}" if ok else "")
            plot = md_link_target(plot_path(b.task, b.model, r.submission.name))
            L.append(f"| {md_escape(r.submission.name, 100)} | {md_escape(obj, 60)}"
                     f"{' (strongest)' if obj == strongest else ''} | " + " | ".join(cells) + f" | [png]({plot}) |")
    return L


def table_rows(boards: list[Board]) -> list[dict]:
    rows = []
    for b in boards:
        for rank, r, rel in b.ranked:
            row = {"task": b.task, "task_version": b.task_version, "model": b.model, "rank": rank,
                   "submission": r.submission.name, "version": r.submission.version, "status": "ok",
                   "main_metric": b.main_metric}
            for m in _metric_names(b):  # setdefault: a metric named like a column cannot overwrite it
                s = r.scores.get(m)
                row.setdefault(m, None if s is None else round(s.value, 6))
                row.setdefault(f"{m}_ci_low", None if s is None else round(s.ci_low, 6))
                row.setdefault(f"{m}_ci_high", None if s is None else round(s.ci_high, 6))
                if s is not None and s.params:
                    row.setdefault(f"{m}_params", json.dumps(s.params, sort_keys=True, allow_nan=False))
                for k, v in sorted(({} if s is None else s.details).items()):
                    row.setdefault(f"{m}_{k}", round(v, 6))
            row.update({"s_per_example_p50": round(r.timing.per_example_p50_s, 6),
                        "s_per_example_p95": round(r.timing.per_example_p95_s, 6),
                        "forward_per_example": round(r.cost.forward_per_example, 3),
                        "backward_per_example": round(r.cost.backward_per_example, 3),
                        "mlm_per_example": round(r.cost.mlm_per_example, 3),
                        "cpu_s_total": None if r.timing.cpu_total_s is None else round(r.timing.cpu_total_s, 6),
                        "measured_by": r.timing.measured_by, "passes_self_reported": r.cost.self_reported,
                        "pass_check": r.cost.pass_check,
                        "peak_rss_mb": round(r.memory.peak_rss_mb, 1), "device": r.timing.device,
                        "n_truncated": r.truncation.n_truncated, "record": f"results/{rel}"})
            rows.append(row)
        for r, rel in b.failed:
            rows.append({"task": b.task, "task_version": b.task_version, "model": b.model, "rank": None,
                         "submission": r.submission.name, "version": r.submission.version, "status": "error",
                         "main_metric": b.main_metric, "error": f"{r.error.stage}: {r.error.type}: {r.error.message[:300]}",
                         "record": f"results/{rel}"})
    return rows


_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(v):
    """A cell value; a text starting like a spreadsheet formula gets a leading ``'`` (CSV injection)."""
    if v is None:
        return ""
    if isinstance(v, str) and v.startswith(_CSV_FORMULA):
        return "'" + v
    return v


def render_csv(rows: list[dict]) -> str:
    """The board rows through :mod:`csv` (quoting, embedded newlines and commas handled by it)."""
    cols: list[str] = []
    for row in rows:
        for k in row:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow({k: _csv_cell(k) for k in cols})
    for row in rows:
        w.writerow({k: _csv_cell(row.get(k)) for k in cols})
    return buf.getvalue()


def build(results_dir: Path, out_dir: Path, strict: bool = False) -> list[Path]:
    """Write LEADERBOARD.md, leaderboard.csv, leaderboard.json, the plots and index.html into ``out_dir``.

    A result file that is not a valid record is skipped with a warning (and named on the board);
    ``strict``: raise ``ValueError`` on it instead."""
    skipped: list[tuple[str, str]] = []
    records = load_results(results_dir, skip_invalid=not strict, skipped=skipped)
    if not records:
        extra = f" ({len(skipped)} invalid file(s) skipped: {', '.join(rel for rel, _ in skipped[:10])})" if skipped else ""
        raise FileNotFoundError(f"no result records under {results_dir}{extra}; run `attriboard run` first")
    boards = build_boards(records)
    rows = table_rows(boards)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"overall_rule": OVERALL_RULE,
           "overall": [{"rank": rk, "submission": n, "mean_task_rank": round(m, 6), "boards_with_result": k}
                       for rk, n, m, k in overall(boards)],
           "boards": rows}
    files = {
        "LEADERBOARD.md": render_markdown(boards, len(records), skipped),
        "leaderboard.csv": render_csv(rows),
        "leaderboard.json": json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n",
    }
    paths = []
    for name, text in files.items():
        p = out_dir / name
        p.write_text(text, encoding="utf-8")
        paths.append(p)
    if any(r.tables.get("fragility_per_input") for r, _ in records):
        from tasks.fragility.plots import plot_fragility

        paths += plot_fragility([r for r, _ in records], out_dir)
    paths += sanity_report.write_plots([r for r, _ in records], out_dir)
    from harness.board.html import write_html  # after every plot is written: the page embeds them

    paths.append(write_html(boards, records, out_dir, results_dir))
    return paths
