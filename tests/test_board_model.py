"""The board model: built once from the records, every renderer (Markdown, HTML, CSV, JSON)
shows the same numbers, and a task adds its own section without touching harness/board."""

import ast
import csv
import dataclasses
import io
import json

import numpy as np
import re
from pathlib import Path

import numpy as np
import pytest

from harness.board import leaderboard, model as board_model, render_csv, render_html, render_md, sections
from harness.board.model import (BulletList, Code, Heading, Link, Lit, Paragraph, Plot, Section, Strong, Tab, Table,
                                 text)
from harness.engine.records import ResultRecord

import test_html_board as H

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("board-model") / "results"
    rng = np.random.default_rng(1)
    for task in H.TASKS:
        for q, sub in zip(rng.permutation(len(H.SUBS)) / len(H.SUBS) + 0.1, H.SUBS):
            ResultRecord.model_validate(H._record(task, sub, float(q), rng)).write(root / task / "tiny-bert" / f"{sub}.json")
    ResultRecord.model_validate(H._failed("planted_sst", "raises")).write(root / "planted_sst" / "tiny-bert" / "raises.json")
    return root


def _model(results):
    return board_model.build_model(leaderboard.load_results(results))


def test_model_is_built_once_per_build(results, tmp_path, monkeypatch):
    calls = {"model": 0, "sections": 0}
    real_build, real_collect = leaderboard.build_model, sections.collect

    def counting_build(*a, **k):
        calls["model"] += 1
        return real_build(*a, **k)

    def counting_collect(*a, **k):
        calls["sections"] += 1
        return real_collect(*a, **k)

    monkeypatch.setattr(leaderboard, "build_model", counting_build)
    monkeypatch.setattr(sections, "collect", counting_collect)
    paths = leaderboard.build(results, tmp_path / "out")
    assert calls == {"model": 1, "sections": 1}
    assert {p.name for p in paths} >= {"LEADERBOARD.md", "leaderboard.csv", "leaderboard.json", "index.html"}


def test_model_is_frozen_and_typed(results):
    m = _model(results)
    assert [b.key for b in m.boards] == [f"{t}/tiny-bert" for t in sorted(H.TASKS)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.boards[0].rows[0].rank = 99
    b = m.board("planted_sst/tiny-bert")
    assert b.columns[0].metric == b.main_metric and b.columns[0].main
    assert [r.rank for r in b.rows] == sorted(r.rank for r in b.rows)
    assert [f.submission for f in b.failed] == ["raises"]
    # fragility declares a default subset and "raises" (failed on planted_sst only) has no fragility record:
    # the board is shown but not counted until every submission ran on it
    assert m.n_ranking_boards == len(H.TASKS) - 1 and m.n_records == 3 * len(H.SUBS) + 1
    assert m.board("fragility/tiny-bert").not_counted.startswith("run on the task's default subset")
    # the fragility task contributed its per-bucket section under its board, Markdown only
    frag = m.board("fragility/tiny-bert")
    assert [s.key for s in frag.sections] == ["quality_cost", "fragility.buckets"]
    assert frag.sections[1].formats == {"markdown"}


def test_every_renderer_shows_the_same_numbers(results):
    m = _model(results)
    md = render_md.render(m)
    page = render_html.render(m)
    rows = render_csv.table_rows(m)
    by_csv = {(r["task"], r["submission"]): r for r in csv.DictReader(io.StringIO(render_csv.render_csv(m)))}
    doc = json.loads(render_csv.render_json(m))
    by_json = {(r["task"], r["submission"]): r for r in doc["boards"]}
    assert rows == doc["boards"]
    for b in m.boards:
        for r in b.rows:
            s = r.main_score
            key = (b.task, r.submission)
            part = md.split(f"\n## {b.task} (v")[1].split("\n## ")[0]
            line = next(ln for ln in part.splitlines() if ln.startswith((f"| {r.rank} | {r.submission} |",
                                                                         f"| {r.rank} | {r.submission} ([")))
            assert s.text in line                                     # Markdown: value [CI]
            assert float(by_csv[key][b.main_metric]) == round(s.value, 6) == by_json[key][b.main_metric]
            assert int(by_csv[key]["rank"]) == r.rank == by_json[key]["rank"]
            assert f'data-v="{s.value!r}" class="num score main"' in page  # HTML: the same value
            assert f'<span class="v">{s.value:.3f}</span>' in page
    for o in m.overall:
        line = next(ln for ln in md.splitlines() if ln.startswith((f"| {o.rank} | {o.submission} |",
                                                                   f"| {o.rank} | {o.submission} ([")))
        assert f" | {o.mean_rank:.2f} | {o.n_with_result}/{m.n_ranking_boards} | " in line
        for b, c in zip(m.boards, o.cells):  # each counted board's cell: rank / ranked and the main score
            if b.counted and c is not None and c.rank is not None:
                assert f"{c.rank}/{c.n_ranked} ({c.value:.3f})" in line
        assert {"rank": o.rank, "submission": o.submission, "mean_task_rank": round(o.mean_rank, 6),
                "boards_with_result": o.n_with_result, "counted_boards": m.n_ranking_boards} in doc["overall"]


def test_old_entry_points_render_the_model(results):
    records = leaderboard.load_results(results)
    boards = leaderboard.build_boards(records)
    m = board_model.build_model(records)
    assert leaderboard.render_markdown(boards, len(records)) == render_md.render(m)
    assert leaderboard.table_rows(boards) == render_csv.table_rows(m)
    from harness.board.html import render_html as old_render_html

    assert old_render_html(boards, len(records), {}) == render_html.render(m)


def test_build_writes_what_the_renderers_give(results, tmp_path):
    out = tmp_path / "out"
    leaderboard.build(results, out)
    m = board_model.attach_plots(_model(results), out)
    assert (out / "LEADERBOARD.md").read_text() == render_md.render(m)
    assert (out / "leaderboard.csv").read_text() == render_csv.render_csv(m)
    assert (out / "leaderboard.json").read_text() == render_csv.render_json(m)
    import os

    res = os.path.relpath(results.resolve(), out.resolve())
    assert (out / "index.html").read_text() == render_html.render(m, res)
    assert [p.path for p in m.board("fragility/tiny-bert").plots] == [
        f"fragility/fragility__tiny-bert__{s}.png" for s in sorted(H.SUBS)]


# -- a task's own section, without editing harness/board --------------------------------------------

FAKE_TAB = Tab("fake-tab", "Fake & co", "A fake task's page section")


def _fake_sections(boards):
    out = []
    for b in boards:
        if b.task == "planted_sst":
            names = [r.submission.name for _, r, _ in b.ranked]
            out.append(Section("fake.board", "Fake per-board section", (
                Paragraph((Lit("Fake section under "), text(b.key), Lit(": "), Strong((Lit("marker-1"),)))),
                Table(((Lit("submission"),), (Lit("n"),)), tuple(((text(n),), (Lit(str(i)),)) for i, n in enumerate(names)),
                      ("---", "---:"))), board=b.key))
    out.append(Section("fake.page", "Fake page section", (
        Heading(2, (Lit("Fake page section"),)),
        BulletList(((Lit("item "), Code("marker-2"), Lit(" "), Link((Lit("plot"),), "fake/quality_cost.svg")),))),
        tab=FAKE_TAB, plots=(Plot("fake/quality_cost.svg", "quality vs cost"),)))
    return out


def _fake_plots(records, out_dir):
    p = Path(out_dir) / "fake" / "quality_cost.svg"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"></svg>\n')
    return [p]


_fake_sections.__module__ = "tasks.fake_task.board"  # as if tasks/fake_task/board.py registered it


@pytest.fixture
def fake_task():
    sections.register_section(_fake_sections, plots=_fake_plots)
    yield
    sections.unregister_section(_fake_sections)


def test_a_task_section_appears_in_markdown_and_html(results, tmp_path, fake_task):
    out = tmp_path / "out"
    paths = leaderboard.build(results, out)
    assert out / "fake" / "quality_cost.svg" in paths
    md = (out / "LEADERBOARD.md").read_text()
    page = (out / "index.html").read_text()
    assert "Fake section under planted_sst/tiny-bert: **marker-1**" in md
    board_part = md.split("## planted_sst")[1].split("\n## ")[0]
    assert "Fake section under" in board_part and "| random |" in board_part    # under its board
    assert "## Fake page section" in md and "- item `marker-2` [plot](fake/quality_cost.svg)" in md
    assert "![quality vs cost](fake/quality_cost.svg)" in md
    assert "<strong>marker-1</strong>" in page and "<code>marker-2</code>" in page
    assert 'data-tab="fake-tab" role="tab">Fake &amp; co</button>' in page
    assert '<img src="fake/quality_cost.svg" alt="quality vs cost">' in page
    panel = page.split('data-tab="planted_sst/tiny-bert" hidden>')[1].split("</section>")[0]
    assert "Fake section under planted_sst/tiny-bert" in panel
    # without the provider the section is gone again
    sections.unregister_section(_fake_sections)
    leaderboard.build(results, tmp_path / "plain")
    assert "marker-1" not in (tmp_path / "plain" / "LEADERBOARD.md").read_text()


def test_a_section_string_from_a_record_is_escaped(results, fake_task):
    def evil(boards):
        return [Section("evil", "evil", (Paragraph((text("<script>x</script> | [a](javascript:1) **b**"),)),
                                         BulletList(((Link((Lit("l"),), "javascript:alert(1)"),),))), tab=FAKE_TAB)]

    sections.register_section(evil)
    try:
        m = _model(results)
    finally:
        sections.unregister_section(evil)
    md, page = render_md.render(m), render_html.render(m)
    assert "<script>x" not in md and "\\[a\\]" in md and "\\*\\*b\\*\\*" in md and not re.search(r"(?<!\\)\]\(javascript", md)
    assert "&lt;script&gt;x&lt;/script&gt; | [a](javascript:1) **b**" in page and 'href="javascript' not in page


def test_board_code_names_no_task():
    """harness/board knows no task: sections come from the task packages (harness.board.sections)."""
    for path in sorted((ROOT / "harness" / "board").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("tasks"), (path.name, node.module)
            if isinstance(node, ast.Import):
                assert all(a.name == "tasks" or not a.name.startswith("tasks.") for a in node.names), path.name
    import inspect

    src = inspect.getsource(leaderboard.build)
    assert not re.search(r"fragility|sanity", src)


def test_ranks_are_statistical_groups_and_the_overall_uses_their_mean_position():
    from types import SimpleNamespace as NS

    from harness.board.boards import overall, rank_groups_of

    rng = np.random.default_rng(0)
    ids = [f"e{i}" for i in range(60)]
    base = rng.normal(size=60)

    def rec(name, shift, noise=0.0):
        vals = (base + shift + noise * rng.normal(size=60)).tolist()
        return NS(submission=NS(name=name), per_example={"m": vals}, example_ids=ids,
                  scores={"m": NS(value=float(np.mean(vals)))})

    # a clearly best one, then two indistinguishable ones (same values up to tiny noise), then a clearly worst
    recs = [rec("best", 3.0), rec("tie_a", 0.0, noise=0.3), rec("tie_b", 0.0, noise=0.3), rec("worst", -3.0)]
    recs.sort(key=lambda r: -r.scores["m"].value)  # board order: best first
    assert [r.submission.name for r in recs][::3] == ["best", "worst"]
    groups = rank_groups_of([(r, "") for r in recs], "m", True)
    assert [groups[n].label for n in ("best", "tie_a", "tie_b", "worst")] == ["1", "2-3", "2-3", "4"]
    assert groups["tie_a"].rank == groups["tie_b"].rank == 2.5
    # a record without per-example values cannot be told apart from its neighbours
    bare = NS(submission=NS(name="bare"), per_example={}, example_ids=[], scores={"m": NS(value=-10.0)})
    assert rank_groups_of([(recs[3], ""), (bare, "")], "m", True)["bare"].label == "1-2"
    board = NS(audit=False, not_counted=None, groups=groups, ranked=[(groups[r.submission.name].rank_range[0], r, "") for r in recs],
               failed=[])
    assert {n: mean for _, n, mean, _ in overall([board])} == {"best": 1.0, "tie_a": 2.5, "tie_b": 2.5, "worst": 4.0}


def test_quality_vs_cost_section_marks_the_pareto_front(results, tmp_path):
    from harness.board import leaderboard

    out = tmp_path / "board"
    leaderboard.build(results, out)
    md = (out / "LEADERBOARD.md").read_text()
    assert "Quality against cost" in md and "| Pareto front |" in md
    svgs = sorted((out / "quality_cost").glob("*.svg"))
    assert svgs and all(p.read_text().lstrip().startswith("<?xml") for p in svgs)
    m = _model(results)
    b = m.board("planted_sst/tiny-bert")
    sec = next(s for s in b.sections if s.key == "quality_cost")
    table = next(x for x in sec.blocks if hasattr(x, "rows"))
    assert len(table.rows) == len(b.rows) and any("yes" in str(row[-1]) for row in table.rows)


def test_plots_are_drawn_again_only_when_their_inputs_change(results, tmp_path, monkeypatch):
    """Content-hashed plot cache: a rebuild from the same records calls no plot writer; a changed
    record, a deleted or edited plot file, or cache=False redraws."""
    import shutil

    res = tmp_path / "results"
    shutil.copytree(results, res)
    out = tmp_path / "out"
    calls = []

    def counting(records, out_dir):
        calls.append(len(list(records)))
        return _fake_plots(records, out_dir)

    sections.register_section(_fake_sections, plots=counting)
    try:
        first = leaderboard.build(res, out)
        assert calls == [len(list(res.rglob("*.json")))]
        n_svg = {p: p.read_bytes() for p in out.rglob("*.svg")}
        assert (out / sections.PLOT_CACHE).is_file() and len(n_svg) > 1
        assert leaderboard.build(res, out) == first and len(calls) == 1  # nothing changed: nothing drawn
        assert {p: p.read_bytes() for p in out.rglob("*.svg")} == n_svg
        # a deleted plot file, then an edited one, is drawn again
        (out / "fake" / "quality_cost.svg").unlink()
        leaderboard.build(res, out)
        assert len(calls) == 2 and (out / "fake" / "quality_cost.svg").is_file()
        (out / "fake" / "quality_cost.svg").write_text("<svg/>")
        leaderboard.build(res, out)
        assert len(calls) == 3 and "width" in (out / "fake" / "quality_cost.svg").read_text()
        # a changed record redraws every provider, the board's own quality-vs-cost plots too
        f = next(f for f in sorted(res.rglob("*.json")) if json.loads(f.read_text()).get("status") != "failed")
        rec = json.loads(f.read_text())
        rec["timing"] = {k: (v * 3 + 1 if isinstance(v, float) else v) for k, v in rec["timing"].items()}
        f.write_text(json.dumps(rec))
        drawn = []
        real_qc = sections._PROVIDERS
        qc = next(p for p in real_qc.values() if p.fn.__module__ == "harness.board.quality_cost")
        monkeypatch.setitem(real_qc, qc.fn, sections.Provider(qc.fn, lambda r, o: drawn.append(1) or qc.plots(r, o), qc.order))
        leaderboard.build(res, out)
        assert len(calls) == 4 and drawn == [1]
        leaderboard.build(res, out)
        assert len(calls) == 4 and drawn == [1]
        # a corrupt cache file is ignored (everything drawn), never an error
        (out / sections.PLOT_CACHE).write_text("{not json")
        leaderboard.build(res, out)
        assert len(calls) == 5 and drawn == [1, 1]
        sections.write_plots([r for r, _ in leaderboard.load_results(res)], out, cache=False)
        assert len(calls) == 6
    finally:
        sections.unregister_section(_fake_sections)
