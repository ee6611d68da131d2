"""The static HTML leaderboard: self-contained, linked, deterministic; and in a real headless
Chromium (Debian ``chromium`` + ``chromium-driver`` driven by Selenium): loads without console
errors, shows every task, sorts, and gets a screenshot."""

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from harness.board import leaderboard
from tasks.fragility.metrics import BUCKETS
from harness.engine.records import ResultRecord
from harness.metrics.stats import bootstrap_ci

CHROMIUM = os.environ.get("ATTRIBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ATTRIBOARD_CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOT_COPY = Path("/tmp/attriboard_board.png")

TASKS = {  # task -> (main metric, {metric: higher_is_better})
    "planted_sst": ("gt_overlap", {"gt_overlap": True, "mean_rank_pct": False}),
    "esnli_plausibility": ("token_iou_best_tau", {"token_iou_best_tau": True, "average_precision": True,
                                                "token_f1_at_k": True}),
    "fragility": ("fragility_rank_corr", {"fragility_rank_corr": True}),
}
SUBS = ["random", "gradient", "integrated_gradients", "lime", "leave_one_out"]


def _record(task: str, sub: str, quality: float, rng) -> dict:
    main, metrics = TASKS[task]
    n = 20
    scores, per_example = {}, {}
    for m, hib in metrics.items():
        target = quality if hib else 1 - quality
        vals = np.clip(rng.normal(target, 0.1, n), 0, 1).round(4)
        mean, lo, hi = bootstrap_ci(vals)
        scores[m] = {"value": mean, "ci_low": lo, "ci_high": hi, "higher_is_better": hib, "family": "test", "n": n}
        per_example[m] = vals.tolist()
    tables = {}
    if task == "fragility":
        rows = [{"objective": o, "bucket": b, "example_id": f"e{i}", "spearman_clipped": float(v)}
                for o in ("l2", "random") for b in BUCKETS[:3] for i, v in enumerate(rng.uniform(quality - 0.3, 1, 6))]
        tables = {"fragility_per_input": rows,
                  "fragility_summary": [{"strongest_objective": "l2"}],
                  "fragility_buckets": [{"objective": o, "bucket": b, "n_inputs": 6,
                                         "spearman_clipped_mean": float(np.mean([r["spearman_clipped"] for r in rows
                                                                                 if r["objective"] == o and r["bucket"] == b]))}
                                        for o in ("l2", "random") for b in BUCKETS[:3]]}
    t = 0.0005 + rng.uniform(0, 0.05)
    return {
        "status": "ok", "run_key": f"{task}-{sub}", "aggregation": "absmax", "main_metric": main,
        "submission": {"name": sub, "version": "1.0.0", "params": {}, "code_hash": "c0de",
                       **({"paper": "Simonyan et al. 2014, Deep Inside..., https://arxiv.org/abs/1312.6034.",
                           "code": "https://github.com/pytorch/captum"} if sub == "gradient" else {})},
        "task": {"name": task, "version": "1.0", "spec_hash": "5bec", "main_metric": main, "n_examples": n,
                 "data_hash": "da7a", "data_source": "generated:test"},
        "model": {"name": "tiny-bert", "description": "tiny-bert (word vocab 185)", "recipe_hash": "4ec1",
                  "model_hash": "40de", "dev_accuracy": 0.995},
        "scores": scores, "per_example": per_example, "example_ids": [f"e{i}" for i in range(n)], "tables": tables,
        "timing": {"total_s": t * n, "per_example_p50_s": t, "per_example_p95_s": 1.5 * t, "per_example_mean_s": t,
                   "device": "cpu", "cuda_synchronized": False},
        "cost": {"forward_passes": 50 * n, "backward_passes": 50 * n, "mlm_calls": 0, "forward_per_example": 50.0,
                 "backward_per_example": 50.0, "mlm_per_example": 0.0},
        "memory": {"peak_rss_mb": 512.0},
        "truncation": {"policy": "drop-trailing-words-of-longest-segment", "max_length": 128, "n_inputs": n,
                       "n_truncated": 0},
        "provenance": {"harness_version": "0.1.0", "git_sha": "abc", "git_dirty": False,
                       "packages": {"torch": "2.13.0+cpu", "transformers": "4.57.6"}, "python": "3.11.7",
                       "platform": "Linux", "seeds": {"explain": 0},
                       "hardware": {"machine": "x86_64", "processor": "x86_64", "cpu_count": 2, "ram_gb": 23.5,
                                    "cuda": False, "torch_threads": 1},
                       "created_at": "2026-12-01T00:00:00+00:00"},
    }


def _failed(task: str, sub: str) -> dict:
    rec = _record(task, "random", 0.5, np.random.default_rng(0))
    for k in ("scores", "per_example", "example_ids", "tables", "timing", "cost", "memory"):
        rec.pop(k)
    rec["status"] = "error"
    rec["submission"]["name"] = sub
    rec["error"] = {"type": "RuntimeError", "message": "explainer exploded <on purpose> & more", "stage": "explain"}
    return rec


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("html-board")
    out = root / "board"
    results = out / "results"                           # the layout of leaderboard/
    rng = np.random.default_rng(0)
    for task in TASKS:
        subs = SUBS if task != "esnli_plausibility" else SUBS[:3]
        for q, sub in zip(rng.permutation(len(subs)) / len(subs) + 0.1, subs):
            ResultRecord.model_validate(_record(task, sub, float(q), rng)).write(results / task / "tiny-bert" / f"{sub}.json")
    ResultRecord.model_validate(_failed("planted_sst", "raises")).write(results / "planted_sst" / "tiny-bert" / "raises.json")
    paths = leaderboard.build(results, out)
    assert out / "index.html" in paths
    # plots are found generically by name (<kind>/<task>__<model>__<submission>.png); stale ones are left out
    png = (out / "fragility" / "fragility__tiny-bert__gradient.png").read_bytes()
    (out / "sanity").mkdir(exist_ok=True)
    (out / "sanity" / "planted_sst__tiny-bert__gradient.png").write_bytes(png)
    (out / "fragility" / "fragility__tiny-bert__no_longer_here.png").write_bytes(png)
    leaderboard.build(results, out)
    return out


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.cells, self.linked_cells, self._td = [], 0, 0, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("href", "src"):
            if k in a:
                self.refs.append((tag, k, a[k]))
        if tag == "table":  # section tables (class notes: e.g. quality vs cost) hold no record cells
            self._skip = "notes" in (a.get("class") or "").split()
        if tag == "td" and not getattr(self, "_skip", False):
            self.cells += 1
            self._td = True
        if tag == "a" and self._td:
            self.linked_cells += 1
            self._td = False

    def handle_endtag(self, tag):
        if tag == "td":
            self._td = False


def test_page_is_self_contained_linked_and_deterministic(board, tmp_path):
    text = (board / "index.html").read_text()
    parser = _Links()
    parser.feed(text)
    external = [r for r in parser.refs if re.match(r"^(https?:)?//", r[2])]
    # no CDN, nothing fetched from the network: the only external URLs are the declared paper / code links
    assert external and all(tag == "a" and v in ("https://arxiv.org/abs/1312.6034", "https://github.com/pytorch/captum")
                            for tag, k, v in external), external
    assert "<script src" not in text and "stylesheet" not in text
    local = {v for tag, k, v in parser.refs if not v.startswith(("#", "data:", "https://"))}
    records = {v for v in local if v.startswith("results/")}
    assert records == {f"results/{p.relative_to(board / 'results').as_posix()}"
                       for p in (board / "results").rglob("*.json")}
    for v in local:
        assert (board / v).is_file(), v                 # every link and image resolves offline
    imgs = [v for tag, k, v in parser.refs if tag == "img"]
    assert sorted(i for i in imgs if not i.startswith("quality_cost/")) == sorted(
        [f"fragility/fragility__tiny-bert__{s}.png" for s in SUBS] + ["sanity/planted_sst__tiny-bert__gradient.png"])
    # one quality-vs-cost plot per board
    assert sorted(i for i in imgs if i.startswith("quality_cost/")) == sorted(
        f"quality_cost/{t}__tiny-bert.svg" for t in {p.parent.parent.name for p in (board / "results").rglob("*.json")})
    # every data cell of the overall and board tables links to a record (only "not run" cells do not)
    assert parser.linked_cells >= parser.cells - text.count('data-v="">&ndash;') - text.count('data-v="">not run')
    assert "&lt;on purpose&gt; &amp; more" in text      # error text escaped
    # task tables from the records (per-bucket, summary), not the per-input ones
    assert 'data-table="fragility_buckets"' in text and 'data-table="fragility_summary"' in text
    assert 'data-table="fragility_per_input"' not in text
    copy = tmp_path / "copy"
    shutil.copytree(board, copy)
    (copy / "index.html").unlink()
    leaderboard.build(copy / "results", copy)           # same records and plots: same bytes
    assert (copy / "index.html").read_bytes() == (board / "index.html").read_bytes()
    # records kept elsewhere: links relative to the page
    leaderboard.build(board / "results", tmp_path / "elsewhere")
    rel = os.path.relpath(board / "results", tmp_path / "elsewhere")
    assert f'href="{rel}/planted_sst/tiny-bert/random.json"' in (tmp_path / "elsewhere" / "index.html").read_text()


# -- a real headless browser ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[dev])")
    from selenium.webdriver.chrome.service import Service

    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip(f"no headless browser: {CHROMIUM} or {CHROMEDRIVER} missing "
                    "(apt-get install chromium chromium-driver; scripts/setup.sh does it as root)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1440,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _visible_panel(driver):
    panels = [p for p in driver.find_elements("css selector", "section.panel") if p.is_displayed()]
    assert len(panels) == 1
    return panels[0]


def _column(panel, idx: int) -> list[str]:
    rows = panel.find_elements("css selector", "table.board tbody tr, table.overall tbody tr")
    return [r.find_elements("css selector", "td")[idx].get_attribute("data-v") for r in rows]


def test_board_in_headless_chromium(board, browser, tmp_path):
    browser.get((board / "index.html").resolve().as_uri())
    assert browser.title == "attriboard leaderboard"
    # every task has a tab, and its panel shows its table
    tabs = browser.find_elements("css selector", "nav.tabs button")
    labels = [t.get_attribute("data-tab") for t in tabs]
    assert labels == ["overall"] + [f"{t}/tiny-bert" for t in sorted(TASKS)] + ["metrics"]
    assert _visible_panel(browser).get_attribute("data-tab") == "overall"
    overall_rows = _visible_panel(browser).find_elements("css selector", "table.overall tbody tr")
    assert {r.get_attribute("data-submission") for r in overall_rows} == set(SUBS) | {"raises"}
    first = overall_rows[0].find_elements("css selector", "td")
    grad = next(r for r in overall_rows if r.get_attribute("data-submission") == "gradient")
    links = grad.find_elements("css selector", "a.ext")
    assert [a.text for a in links] == ["paper", "code"]
    assert [a.get_attribute("href") for a in links] == ["https://arxiv.org/abs/1312.6034", "https://github.com/pytorch/captum"]
    assert "/" in first[4].text and "." in first[4].text  # a board cell: rank / ranked, and the main score
    for tab in tabs[1:-1]:
        tab.click()
        panel = _visible_panel(browser)
        assert panel.get_attribute("data-tab") == tab.get_attribute("data-tab")
        assert panel.find_element("css selector", "h2").text.startswith(tab.get_attribute("data-tab").split("/")[0])
        n = len(SUBS) if "esnli" not in tab.get_attribute("data-tab") else 3
        assert len(panel.find_elements("css selector", "table.board tbody tr")) == n
        assert "Hardware: x86_64, 2 CPUs" in panel.text
    # the fragility plots are loaded (not broken images)
    browser.find_element("css selector", 'nav.tabs button[data-tab="fragility/tiny-bert"]').click()
    imgs = _visible_panel(browser).find_elements("css selector", "img")
    assert len(imgs) == len(SUBS) + 1  # the violin plots and the quality-vs-cost plot
    assert all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i) for i in imgs)
    browser.save_screenshot(str(tmp_path / "board-fragility.png"))
    # the glossary tab defines every metric on the page
    tabs[-1].click()
    panel = _visible_panel(browser)
    glossed = [r.find_elements("css selector", "td")[0].text for r in panel.find_elements("css selector", "tbody tr")]
    assert glossed == sorted({m for _, ms in TASKS.values() for m in ms})
    # sorting: numeric, both directions, on the planted_sst board; secondary metrics folded until asked for
    browser.find_element("css selector", 'nav.tabs button[data-tab="planted_sst/tiny-bert"]').click()
    panel = _visible_panel(browser)
    heads = panel.find_elements("css selector", "table.board thead th")
    secondary = [h for h in heads if "secondary" in h.get_attribute("class").split()]
    assert secondary and not any(h.is_displayed() for h in secondary)
    assert heads[3].is_displayed() and "main" in heads[3].get_attribute("class").split()
    panel.find_element("css selector", "button.toggle-secondary").click()
    assert all(h.is_displayed() for h in secondary)
    names = [h.text.split("\n")[0] for h in heads]
    col = next(i for i, h in enumerate(names) if h.startswith("mean_rank_pct"))
    heads[col].click()
    asc = [float(v) for v in _column(panel, col)]
    assert asc == sorted(asc) and heads[col].get_attribute("aria-sort") == "ascending"
    heads[col].click()
    desc = [float(v) for v in _column(panel, col)]
    assert desc == sorted(desc, reverse=True) and heads[col].get_attribute("aria-sort") == "descending"
    sub_col = names.index("submission")
    heads[sub_col].click()
    assert _column(panel, sub_col) == sorted(SUBS)
    heads[0].click()                                    # back to rank order
    ranks = [int(v) for v in _column(panel, 0)]
    assert ranks == sorted(ranks)
    # cells link to their records
    href = panel.find_element("css selector", "table.board tbody tr td a").get_attribute("href")
    assert href.startswith("file://") and href.endswith(".json") and Path(href[len("file://"):]).is_file()
    # the tab survives a reload (hash)
    browser.refresh()
    assert _visible_panel(browser).get_attribute("data-tab") == "planted_sst/tiny-bert"
    shot = tmp_path / "board.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    try:
        shutil.copyfile(shot, SCREENSHOT_COPY)
        shutil.copyfile(tmp_path / "board-fragility.png", SCREENSHOT_COPY.with_name("attriboard_board_fragility.png"))
    except OSError:
        pass
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, json.dumps(errors, indent=1)


def test_structured_notes_become_escaped_sortable_html():
    from harness.board.model import BulletList, Code, Heading, Link, Lit, Paragraph, Strong, Table, text
    from harness.board.render_html import blocks

    html = "\n".join(blocks([
        Heading(2, (Lit("Bias "), text("<x>"))),
        Paragraph((Lit("text "), Strong((Lit("bold"),)), Lit(" "), Code("op"), Lit(" "),
                   Link((Lit("png"),), "a/b.png"), Lit(" "), Link((Lit("see"),), "#anchor"), Lit(" "),
                   Link((Lit("evil"),), "javascript:alert(1)"))),
        BulletList(((Lit("removal "), Code("delete"), Lit(": loo")),)),
        Table(((Lit("name"),), (Lit("auc"),)), (((text("a|b"),), (Lit("0.5"),)), ((text("c"),), (Lit("-1e-3"),))),
              ("---", "---:"))]))
    assert "<h3>Bias &lt;x&gt;</h3>" in html
    assert "<strong>bold</strong>" in html and "<code>op</code>" in html and '<a href="a/b.png">png</a>' in html
    assert "#anchor" not in html and "see" in html and "javascript" not in html and "evil" in html
    assert "<li>removal <code>delete</code>: loo</li>" in html
    assert 'data-kind="text" tabindex="0">name' in html and 'data-kind="num" tabindex="0">auc' in html
    assert "<td>a|b</td>" in html and "---" not in html
