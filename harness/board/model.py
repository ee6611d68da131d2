"""The board model: everything the leaderboard shows, built once from the result records.

:func:`build_model` turns the loaded records into one frozen :class:`BoardModel`: the overall
table, one :class:`TaskBoard` per (task, reference model) with its metric columns and ranked
rows (every cell value the board shows), the generic notes (metric parameters and details), the
record tables, and the sections that task packages contribute through
:func:`harness.board.sections.register_section` (e.g. the fragility per-bucket table, the
sanity matrix and the metric-bias matrix).  The renderers (:mod:`~harness.board.render_md`,
:mod:`~harness.board.render_html`, :mod:`~harness.board.render_csv`) take the model only, so
Markdown, HTML, CSV and JSON show the same numbers.

Notes and sections are structured text (:class:`Heading`, :class:`Paragraph`,
:class:`BulletList`, :class:`Table` blocks made of :class:`Lit`, :class:`Text`, :class:`Code`,
:class:`Strong` and :class:`Link` spans), never pre-rendered Markdown: a record string is a
:class:`Text` (escaped by each renderer), a string written by the board's authors a
:class:`Lit`.

The plots shown beside a board are found on disk after the plot writers ran
(:func:`attach_plots`): every PNG under the board folder named
``<kind>/<task>__<model>[__<submission>].png``, plus any ``*.png`` path a record's tables name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence, Union

from harness.board.boards import OVERALL_RULE, Board, build_boards, overall, ranking_boards
from harness.board.text import SAFE_HREF, clean, is_code_safe
from harness.board.ranking import TEST_NAME as RANK_TEST
from harness.engine.records import ResultRecord

# -- structured text -----------------------------------------------------------------------------



@dataclass(frozen=True)
class Lit:
    """Text written by the board's authors: shown as it is (no Markdown syntax in it)."""
    text: str


@dataclass(frozen=True)
class Text:
    """Text from a record, already :func:`~harness.board.text.clean` (one line); every renderer escapes it."""
    text: str


@dataclass(frozen=True)
class Code:
    """A plain identifier (:data:`~harness.board.text.CODE_SAFE`), shown as code."""
    text: str


@dataclass(frozen=True)
class Strong:
    spans: tuple


@dataclass(frozen=True)
class Link:
    """A link to ``href``: a path relative to the board folder, or ``#anchor`` (a place on the
    Markdown board; the HTML page shows the label only)."""
    label: tuple
    href: str


Span = Union[Lit, Text, Code, Strong, Link]
Rich = tuple  # tuple[Span, ...]


def text(value, limit: int | None = None) -> Text:
    """A record string as a span (cleaned, at most ``limit`` characters)."""
    return Text(clean(value, limit))


def code(value, limit: int | None = None) -> Span:
    """A record string as code when it is a plain identifier of at most ``limit`` characters, else as text."""
    s = "" if value is None else str(value)
    return Code(s) if is_code_safe(s, limit) else Text(clean(s, limit))


def rich(*parts) -> Rich:
    """Spans from parts: a ``str`` is :class:`Lit`, a span stays, a tuple is spliced in."""
    out: list = []
    for p in parts:
        if isinstance(p, str):
            if p:
                out.append(Lit(p))
        elif isinstance(p, tuple):
            out.extend(p)
        else:
            out.append(p)
    return tuple(out)


def join(items: Iterable[Rich], sep: str) -> Rich:
    out: list = []
    for i, item in enumerate(items):
        if i:
            out.append(Lit(sep))
        out.extend(item)
    return tuple(out)


def plain(spans: Rich) -> str:
    """The spans' text without any markup."""
    out = []
    for s in spans:
        if isinstance(s, (Lit, Text, Code)):
            out.append(s.text)
        elif isinstance(s, Strong):
            out.append(plain(s.spans))
        elif isinstance(s, Link):
            out.append(plain(s.label))
    return "".join(out)


@dataclass(frozen=True)
class Heading:
    level: int  # 2: a section of the page, 3: a sub-section
    text: Rich
    gap_before: bool = True
    gap_after: bool = False


@dataclass(frozen=True)
class Paragraph:
    text: Rich
    gap_before: bool = True
    gap_after: bool = False


@dataclass(frozen=True)
class BulletList:
    items: tuple  # tuple[Rich, ...]
    gap_before: bool = True
    gap_after: bool = False


@dataclass(frozen=True)
class Table:
    header: tuple  # tuple[Rich, ...]
    rows: tuple  # tuple[tuple[Rich, ...], ...]
    align: tuple  # per column: "---" (text) or "---:" (numbers)
    gap_before: bool = True
    gap_after: bool = False


Block = Union[Heading, Paragraph, BulletList, Table]
"""``gap_before`` / ``gap_after``: an empty line before / after the block in Markdown."""


@dataclass(frozen=True)
class Plot:
    path: str  # relative to the board folder
    alt: str
    kind: str = "plot"
    submission: str = ""


@dataclass(frozen=True)
class Tab:
    """A tab of the HTML page that holds page-level sections."""
    id: str
    label: str
    title: str


@dataclass(frozen=True)
class Section:
    """What a task contributes to the board (:func:`harness.board.sections.register_section`).

    ``board``: the key (``task/model``) of the board it goes under, or None for a page-level
    section (after every board in Markdown; in the HTML tab ``tab``).  ``formats``: the
    renderers that show it.  ``plots``: figures shown after the blocks."""
    key: str
    title: str
    blocks: tuple  # tuple[Block, ...]
    board: str | None = None
    tab: Tab | None = None
    plots: tuple = ()  # tuple[Plot, ...]
    formats: frozenset = frozenset({"markdown", "html"})

    @property
    def tables(self) -> tuple:
        return tuple(b for b in self.blocks if isinstance(b, Table))


# -- the board -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A metric column of a task board."""
    metric: str
    higher_is_better: bool
    operators: tuple  # removal operators of the metric, sorted ("" none)
    main: bool = False


@dataclass(frozen=True)
class Score:
    value: float
    ci_low: float
    ci_high: float
    n: int
    params_json: str | None  # json.dumps(params, sort_keys=True), None without params
    details: tuple  # ((key, value), ...) sorted

    @property
    def text(self) -> str:
        return f"{self.value:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}]"


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


def hardware(rec: ResultRecord) -> str:
    hw, p = rec.provenance.hardware, rec.provenance
    gpu = hw.get("cuda_device") or ("CUDA" if hw.get("cuda") else "no GPU")
    return (f"{hw.get('processor') or hw.get('machine')}, {hw.get('cpu_count')} CPUs, {hw.get('ram_gb')} GB RAM, "
            f"{gpu}; torch {p.packages.get('torch', '?')}, transformers {p.packages.get('transformers', '?')}, "
            f"Python {p.python}")


@dataclass(frozen=True)
class Row:
    """A ranked submission on a task board: every value its row shows (and the CSV carries)."""
    rank: int
    submission: str
    version: str
    record: str  # relative path under the results folder
    scores: tuple  # tuple[Score | None, ...], aligned with TaskBoard.columns
    p50_s: float
    p95_s: float
    cpu_total_s: float | None
    cpu_ms: str
    forward_per_example: float
    backward_per_example: float
    mlm_per_example: float
    cost_mark: str
    measured_by: str | None
    self_reported: bool
    pass_check: str | None
    peak_rss_mb: float
    n_truncated: int
    n_inputs: int
    device: str
    rank_group: str = ""  # the statistical rank group, e.g. "2-4" (a singleton: its rank)
    p_next_adjusted: float | None = None  # Holm-adjusted p of the test against the next row
    paper: str | None = None  # as its submission.toml declares (a link when it is a URL)
    code: str | None = None

    @property
    def main_score(self) -> Score:
        return self.scores[0]


@dataclass(frozen=True)
class FailedRow:
    submission: str
    version: str
    record: str
    stage: str
    error_type: str
    message: str


@dataclass(frozen=True)
class RecordTable:
    """A task table stored in the records (``tables.<name>``), rows of every ranked submission."""
    name: str
    columns: tuple
    text_columns: frozenset
    rows: tuple  # tuple[(submission, record, tuple[value, ...]), ...]


@dataclass(frozen=True)
class TaskBoard:
    key: str  # task/model
    task: str
    task_version: str
    model: str
    model_description: str
    dev_accuracy: float
    mlm_description: str | None
    main_metric: str
    higher_is_better: bool
    audit: bool  # diagnostic: shown, not counted in the overall rank
    columns: tuple  # tuple[Column, ...], main metric first
    rows: tuple  # tuple[Row, ...] in rank order
    failed: tuple  # tuple[FailedRow, ...] by name
    hardware: tuple  # sorted hardware lines of its records
    notes: tuple  # tuple[Block, ...]: metric parameters and details
    tables: tuple  # tuple[RecordTable, ...]
    sections: tuple = ()  # tuple[Section, ...] contributed by task packages
    plots: tuple = ()  # tuple[Plot, ...] found on disk (attach_plots)
    rank_test: str = RANK_TEST  # how the rank groups were decided
    not_counted: str | None = None  # why the overall rank leaves it out (None: counted, or diagnostic)
    flags: tuple = ()  # warnings shown with the board (mixed records, saturated, chance-level model)
    n_examples: tuple = ()  # the distinct example counts of its records (one, unless mixed)
    dates: tuple = ()  # (first, last) record date, YYYY-MM-DD
    commits: tuple = ()  # the harness commits its records were made at (short SHA, "+dirty")

    @property
    def counted(self) -> bool:
        return not self.audit and self.not_counted is None


@dataclass(frozen=True)
class OverallCell:
    rank: int | None  # None: failed
    record: str
    n_ranked: int
    value: float | None = None  # the main score (None: failed)


@dataclass(frozen=True)
class OverallRow:
    rank: int
    submission: str
    mean_rank: float
    n_with_result: int
    cells: tuple  # tuple[OverallCell | None, ...], one per board (None: not run)
    first_record: str | None
    paper: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class BoardModel:
    boards: tuple  # tuple[TaskBoard, ...], the tabs in order
    overall: tuple  # tuple[OverallRow, ...]
    n_ranking_boards: int
    n_records: int
    skipped: tuple = ()  # ((relative path, reason), ...)
    sections: tuple = ()  # page-level sections, in order
    overall_rule: str = OVERALL_RULE
    loose_plots: tuple = ()  # plots matching no board
    plot_refs: tuple = ()  # PNG paths named in the records' tables (candidates for attach_plots)
    glossary: tuple = ()  # tuple[GlossaryEntry, ...]: every metric on the page, by name

    @property
    def counted_boards(self) -> tuple:
        """The boards the overall rank is computed over, in page order (OverallRow.cells align with all boards)."""
        return tuple(b for b in self.boards if b.counted)

    def board(self, key: str) -> TaskBoard:
        return next(b for b in self.boards if b.key == key)


@dataclass(frozen=True)
class GlossaryEntry:
    metric: str
    higher_is_better: bool
    definition: str  # the first paragraph of the metric's docstring
    reference: str  # the reference it follows or equals, as its class declares (may be empty)


# -- building ------------------------------------------------------------------------------------

def metric_names(b: Board) -> list[str]:
    names = sorted({m for _, r, _ in b.ranked for m in r.scores})
    return [b.main_metric] + [m for m in names if m != b.main_metric]


def _columns(b: Board, metrics: list[str]) -> tuple:
    cols = []
    for m in metrics:
        hib = next((r.scores[m].higher_is_better for _, r, _ in b.ranked if m in r.scores), b.higher_is_better)
        ops = sorted({str(r.scores[m].params["operator"]) for _, r, _ in b.ranked
                      if m in r.scores and "operator" in r.scores[m].params})
        cols.append(Column(m, hib, tuple(ops), m == b.main_metric))
    return tuple(cols)


def _score(s) -> Score | None:
    if s is None:
        return None
    pj = json.dumps(s.params, sort_keys=True, allow_nan=False) if s.params else None
    return Score(s.value, s.ci_low, s.ci_high, s.n, pj, tuple(sorted((s.details or {}).items())))


def device_text(r: ResultRecord) -> str:
    """The hardware a record's timing was measured on, with its precision when not float32."""
    dtype = r.run_spec.dtype if r.run_spec is not None else "float32"
    return r.timing.device + ("" if dtype == "float32" else f" ({dtype}, mixed precision)")


def _row(rank: int, r: ResultRecord, rel: str, metrics: list[str], group=None) -> Row:
    t, c = r.timing, r.cost
    return Row(rank, r.submission.name, r.submission.version, rel, tuple(_score(r.scores.get(m)) for m in metrics),
               t.per_example_p50_s, t.per_example_p95_s, t.cpu_total_s, cpu_ms(r), c.forward_per_example,
               c.backward_per_example, c.mlm_per_example, cost_mark(r), t.measured_by, c.self_reported,
               c.pass_check, r.memory.peak_rss_mb, r.truncation.n_truncated, r.truncation.n_inputs, device_text(r),
               group.label if group is not None else str(rank), None if group is None else group.p_next_adjusted,
               r.submission.paper, r.submission.code)


def _param_text(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_param_text(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _notes(b: Board, metrics: list[str]) -> tuple:
    """The parameters each metric ran with (e.g. the removal operator), and per-submission
    details (e.g. the threshold tau chosen for IoU), straight from the records."""
    blocks: list = []
    items = []
    for m in metrics:
        seen = sorted({json.dumps(r.scores[m].params, sort_keys=True) for _, r, _ in b.ranked if m in r.scores})
        if seen and seen != ["{}"]:
            texts = [(text(", ".join(f"{k}={_param_text(v)}" for k, v in sorted(json.loads(js).items())), 300),)
                     for js in seen]
            items.append(rich(code(m, 100), ": ", join(texts, " | "),
                              " (differs between records)" if len(seen) > 1 else ""))
    if items:
        blocks += [Paragraph(rich("Metric parameters (as recorded with every score):"), gap_after=True),
                   BulletList(tuple(items), gap_before=False)]
    det = [m for m in metrics if any(m in r.scores and r.scores[m].details for _, r, _ in b.ranked)]
    if det:
        rows = []
        for _, r, _ in b.ranked:
            cells = [(text(r.submission.name, 100),)]
            for m in det:
                s = r.scores.get(m)
                d = {} if s is None else s.details
                cells.append((text(", ".join(f"{k}={v:.3g}" for k, v in sorted(d.items())), 300),))
            rows.append(tuple(cells))
        blocks += [Paragraph(rich("Metric details per submission (e.g. the chosen threshold tau):"), gap_after=True),
                   Table(((Lit("submission"),),) + tuple((text(m, 100),) for m in det), tuple(rows),
                         ("---",) * (len(det) + 1), gap_before=False)]
    return tuple(blocks)


MAX_TABLE_ROWS = 60
"""Task tables with more rows per record than this, and per-input tables, stay in the records."""


def _record_tables(b: Board) -> tuple:
    out = []
    for name in sorted({n for _, r, _ in b.ranked for n in r.tables}):
        items = [(r, rel, r.tables.get(name) or []) for _, r, rel in b.ranked]
        if name.endswith("per_input") or not any(rows for _, _, rows in items) \
                or any(len(rows) > MAX_TABLE_ROWS for _, _, rows in items):
            continue
        cols: list[str] = []
        for _, _, rows in items:
            for row in rows:
                cols += [k for k in row if k not in cols]
        text_cols = [c for c in cols if all(isinstance(row.get(c), str) for _, _, rows in items for row in rows if c in row)]
        cols = text_cols + [c for c in cols if c not in text_cols]
        body = tuple((r.submission.name, rel, tuple(row.get(c) for c in cols))
                     for r, rel, rows in items for row in rows)
        out.append(RecordTable(name, tuple(cols), frozenset(text_cols), body))
    return tuple(out)


def _plot_refs(records: Iterable[tuple[ResultRecord, str]]) -> tuple:
    """PNG paths named in the records' tables (relative, no ``..``): candidates for :func:`attach_plots`."""
    refs = set()
    for rec, _ in records:
        for rows in rec.tables.values():
            for row in rows:
                for v in row.values():
                    if isinstance(v, str) and v.lower().endswith(".png") and SAFE_HREF.fullmatch(v) \
                            and not Path(v).is_absolute() and ".." not in Path(v).parts:
                        refs.add(v)
    return tuple(sorted(refs))


def _task_board(b: Board) -> TaskBoard:
    metrics = metric_names(b)
    rows = tuple(_row(rank, r, rel, metrics, b.groups.get(r.submission.name)) for rank, r, rel in b.ranked)
    failed = tuple(FailedRow(r.submission.name, r.submission.version, rel, r.error.stage, r.error.type,
                             r.error.message) for r, rel in b.failed)
    hw = tuple(sorted({hardware(r) for _, r, _ in b.ranked} | {hardware(r) for r, _ in b.failed}))
    recs = [r for _, r, _ in b.ranked] + [r for r, _ in b.failed]
    days = sorted(r.provenance.created_at[:10] for r in recs)
    commits = tuple(sorted({(r.provenance.git_sha or "unknown")[:10] + ("+dirty" if r.provenance.git_dirty else "")
                            for r in recs}))
    return TaskBoard(b.key, b.task, b.task_version, b.model, b.model_description, b.dev_accuracy,
                     b.mlm_description, b.main_metric, b.higher_is_better, b.audit, _columns(b, metrics), rows,
                     failed, hw, _notes(b, metrics), _record_tables(b), not_counted=b.not_counted,
                     flags=tuple(b.flags), n_examples=tuple(sorted({r.task.n_examples for r in recs})),
                     dates=(days[0], days[-1]) if days else (), commits=commits)


def _overall(boards: list[Board]) -> tuple:
    out = []
    for rank, name, mean, k in overall(boards):
        cells = []
        for b in boards:
            hit = [(rk, rel) for rk, r, rel in b.ranked if r.submission.name == name]
            fail = [rel for r, rel in b.failed if r.submission.name == name]
            val = [r.scores[b.main_metric].value for _, r, _ in b.ranked if r.submission.name == name]
            cells.append(OverallCell(hit[0][0], hit[0][1], len(b.ranked), val[0]) if hit
                         else OverallCell(None, fail[0], len(b.ranked)) if fail else None)
        first = next((rel for b in boards for _, r, rel in b.ranked if r.submission.name == name),
                     next((rel for b in boards for r, rel in b.failed if r.submission.name == name), None))
        sub = next((r.submission for b in boards for _, r, _ in b.ranked if r.submission.name == name), None)
        out.append(OverallRow(rank, name, mean, k, tuple(cells), first, sub.paper if sub else None,
                              sub.code if sub else None))
    return tuple(out)


def glossary(boards: Sequence[Board]) -> tuple:
    """A :class:`GlossaryEntry` per metric shown on the boards (:mod:`harness.board.glossary`)."""
    from harness.board.glossary import entry

    seen: dict[str, bool] = {}
    for b in boards:
        for _, r, _ in b.ranked:
            for m, sc in r.scores.items():
                seen.setdefault(m, sc.higher_is_better)
    out = []
    for m in sorted(seen):
        e = entry(m)
        out.append(GlossaryEntry(m, seen[m], e.definition, e.reference))
    return tuple(out)


def model_from_boards(boards: Sequence[Board], n_records: int, skipped: Sequence[tuple[str, str]] = (),
                      sections: bool = True, records: Sequence[tuple[ResultRecord, str]] | None = None) -> BoardModel:
    """The model of already grouped boards; ``sections``: ask the registered task sections;
    ``records``: every loaded record (default: those on the boards)."""
    boards = list(boards)
    if records is None:
        records = [(r, rel) for b in boards for _, r, rel in b.ranked] + [x for b in boards for x in b.failed]
    tbs = [_task_board(b) for b in boards]
    page: list[Section] = []
    if sections:
        from harness.board.sections import collect

        per_board: dict[str, list[Section]] = {}
        for s in collect(boards):
            if s.board is None:
                page.append(s)
            else:
                per_board.setdefault(s.board, []).append(s)
        tbs = [replace(tb, sections=tuple(per_board.get(tb.key, ()))) for tb in tbs]
    model = BoardModel(tuple(tbs), _overall(boards), len(ranking_boards(boards)), n_records,
                       tuple(tuple(s) for s in skipped), tuple(page), plot_refs=_plot_refs(records),
                       glossary=glossary(boards) if sections else ())
    return model


def build_model(records: Sequence[tuple[ResultRecord, str]], skipped: Sequence[tuple[str, str]] = ()) -> BoardModel:
    """The whole board from the loaded records (:func:`harness.board.boards.load_results`)."""
    return model_from_boards(build_boards(list(records)), len(records), skipped, records=records)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(s)).strip("-") or "x"


def attach_plots(model: BoardModel, out_dir: Path) -> BoardModel:
    """The model with the plots found under ``out_dir`` (call after the plot writers ran)."""
    out_dir = Path(out_dir)
    pngs = set()
    if out_dir.is_dir():
        pngs = {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.png")
                if "results" not in p.relative_to(out_dir).parts[:1]}
    root = out_dir.resolve()
    for v in model.plot_refs:  # a record's own plot path: inside the board folder, no link
        p = out_dir / v
        if p.is_file() and not p.is_symlink() and root in p.resolve().parents:
            pngs.add(Path(v).as_posix())
    return with_plots(model, find_plots(model, sorted(pngs)))


def find_plots(model: BoardModel, pngs: Iterable[str]) -> dict[str, list[tuple[str, str, str]]]:
    """Board key -> [(relative png path, kind, submission or '')], sorted; key '' = unmatched."""
    slugs = {(_slug(b.task), _slug(b.model)): b for b in model.boards}
    subs = {b.key: {_slug(r.submission): r.submission for r in b.rows} | {_slug(r.submission): r.submission
                                                                       for r in b.failed} for b in model.boards}
    found: dict[str, list[tuple[str, str, str]]] = {}
    for rel in sorted(pngs):
        parts = Path(rel).stem.split("__")
        kind = Path(rel).parent.name if Path(rel).parent.name not in ("", ".") else "plot"
        board = slugs.get(tuple(parts[:2])) if len(parts) >= 2 else None
        if board is None:
            found.setdefault("", []).append((rel, kind, ""))
            continue
        if len(parts) >= 3 and parts[2] not in subs[board.key]:
            continue  # a plot of a submission no longer on the board (left over from an older build)
        sub = subs[board.key][parts[2]] if len(parts) >= 3 else ""
        found.setdefault(board.key, []).append((rel, kind, sub))
    return found


def with_plots(model: BoardModel, plots: dict[str, list[tuple[str, str, str]]]) -> BoardModel:
    """The model with ``plots`` (as :func:`find_plots` returns them) on its boards."""
    boards = []
    for b in model.boards:
        by_sub: dict[str, list[tuple[str, str]]] = {}
        for rel, kind, sub in plots.get(b.key, []):
            by_sub.setdefault(sub, []).append((rel, kind))
        ps = tuple(Plot(rel, f"{kind}: {sub}" if sub else kind, kind, sub)
                   for sub in sorted(by_sub) for rel, kind in by_sub[sub])
        boards.append(replace(b, plots=ps))
    loose = tuple(Plot(rel, rel, kind) for rel, kind, _ in plots.get("", []))
    return replace(model, boards=tuple(boards), loose_plots=loose)
