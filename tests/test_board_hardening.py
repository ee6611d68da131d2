"""Every channel from a submission (or a forged result record) back to the board is inert:
Markdown / HTML / CSV / JSON injection, non-finite numbers, duplicate names replacing a
record, symbolic links and oversized folders in the package hash."""

import copy
import csv
import hashlib
import io
import json
import logging
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from harness.board import leaderboard
from harness.core import provenance
from harness.board.leaderboard import md_escape
from harness.engine.records import ResultRecord
from harness.core.submission import (BUILTIN_DIR, SubmissionError, SubmissionMeta, check_unique_names, discover,
                                load_submission, resolve)

from conftest import FIXTURES

# -- a small board, built from records written in tmp_path ------------------------------------------------

INJECT = "\n\n## Pwned\n\n| 1 | evil | 9.999 |\n![x](https://evil.example/p.png)<img src=https://evil.example/q.png>" \
         "<script>alert(1)</script>`code` [click](javascript:alert`1`) \\| & &lt;b&gt; \u202eevil\r\n# H1"


def _record(sub: str, value: float, **over) -> dict:
    n = 4
    rec = {
        "status": "ok", "run_key": f"k-{sub}", "aggregation": "absmax", "main_metric": "gt_overlap",
        "submission": {"name": sub, "version": "1.0.0", "params": {}, "code_hash": "c0de"},
        "task": {"name": "planted_sst", "version": "1.1", "spec_hash": "5bec", "main_metric": "gt_overlap",
                 "n_examples": n, "data_hash": "da7a", "data_source": "generated:test"},
        "model": {"name": "tiny-bert", "description": "tiny-bert (word vocab 185)", "recipe_hash": "4ec1",
                  "model_hash": "40de", "dev_accuracy": 0.99},
        "scores": {"gt_overlap": {"value": value, "ci_low": value - 0.1, "ci_high": value + 0.1,
                                  "higher_is_better": True, "family": "test", "n": n}},
        "per_example": {"gt_overlap": [value] * n}, "example_ids": [f"e{i}" for i in range(n)],
        "timing": {"total_s": 0.4, "per_example_p50_s": 0.1, "per_example_p95_s": 0.1, "per_example_mean_s": 0.1,
                   "device": "cpu", "cuda_synchronized": False},
        "cost": {"forward_passes": 4, "backward_passes": 0, "mlm_calls": 0, "forward_per_example": 1.0,
                 "backward_per_example": 0.0, "mlm_per_example": 0.0},
        "memory": {"peak_rss_mb": 500.0},
        "truncation": {"policy": "p", "max_length": 128, "n_inputs": n, "n_truncated": 0},
        "provenance": {"harness_version": "0.1.0", "git_sha": "abc", "git_dirty": False, "packages": {},
                       "python": "3.11", "platform": "Linux", "seeds": {"explain": 0},
                       "hardware": {"machine": "x86_64", "cpu_count": 2}, "created_at": "2026-01-01T00:00:00+00:00"},
    }
    for path, v in over.items():
        d = rec
        *head, last = path.split(".")
        for k in head:
            d = d[k]
        d[last] = v
    return rec


def _error(sub: str, type_: str, message: str) -> dict:
    rec = _record(sub, 0.0)
    for k in ("scores", "per_example", "example_ids", "timing", "cost", "memory"):
        rec.pop(k)
    rec["status"] = "error"
    rec["error"] = {"type": type_, "message": message, "stage": "explain"}
    return rec


def _write(results: Path, recs: dict[str, dict]) -> None:
    for name, raw in recs.items():
        ResultRecord.model_validate(raw).write(results / "planted_sst" / "tiny-bert" / f"{name}.json")


def _records(evil: str) -> dict[str, dict]:
    """Three ranked records and one failed; ``evil`` goes into every free-form string."""
    return {
        "random": _record("random", 0.2),
        "gradient": _record("gradient", 0.5, **{"submission.version": evil, "submission.params": {"k": evil, evil: 1},
                                               "timing.device": evil, "model.description": evil,
                                               "scores.gt_overlap.params": {"operator": evil, "x": [evil]},
                                               "scores.gt_overlap.details": {evil: 0.5}}),
        "lime": _record("lime", 0.7, **{"submission.params": {"operator": evil}}),
        "raises": _error("raises", evil, evil),
    }


def _shape(md: str) -> tuple[int, int, list[str]]:
    lines = md.splitlines()
    return (sum(1 for ln in lines if ln.startswith("|")), len(lines),
            [ln for ln in lines if ln.startswith("#")])


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]


@pytest.fixture
def boards(tmp_path):
    clean, evil = tmp_path / "clean", tmp_path / "evil"
    _write(clean / "results", _records("benign text"))
    _write(evil / "results", _records(INJECT))
    leaderboard.build(clean / "results", clean)
    leaderboard.build(evil / "results", evil)
    return clean, evil


def test_version_must_be_a_version():
    base = dict(name="x", authors=["a"], paper="p", license="MIT", entry_point="explainer:X")
    for ok in ("1.0.0", "0.1.0", "2.1rc1", "1.0.0-beta.2+build.5", "1"):
        assert SubmissionMeta(version=ok, **base).version == ok
    for bad in ("1.0.0\n", "1.0\n## x", "1.0 | 2", "![x](y)", "<img>", "", "-1", "1" * 40, "1.0`"):
        with pytest.raises(ValidationError):
            SubmissionMeta(version=bad, **base)
    with pytest.raises(ValidationError):
        SubmissionMeta(version="1.0", **{**base, "name": "gradient\n"})
    # every bundled submission and test fixture (but the one meant to fail) still validates
    assert len(discover()) >= 20
    for folder in sorted((FIXTURES / "submissions").iterdir()):
        if folder.name != "bad_metadata" and (folder / "submission.toml").exists():
            load_submission(folder)


def test_md_escape_is_inert():
    out = md_escape(INJECT)
    assert "\n" not in out and "\r" not in out and "\u202e" not in out
    assert "![" not in out and "<" not in out and "](" not in out.replace("\\](", "")
    # every | and ` is escaped (preceded by an odd number of backslashes)
    for i, c in enumerate(out):
        if c in "|`[]!":
            k = 0
            while i - k - 1 >= 0 and out[i - k - 1] == "\\":
                k += 1
            assert k % 2 == 1, (c, out[max(0, i - 10):i + 2])
    assert md_escape("integrated_gradients") == "integrated_gradients"
    assert md_escape("x" * 50, 10) == "x" * 9 + "\u2026"


def test_forged_record_cannot_inject_markdown(boards):
    clean, evil = boards
    md_clean, md_evil = (clean / "LEADERBOARD.md").read_text(), (evil / "LEADERBOARD.md").read_text()
    assert _shape(md_evil) == _shape(md_clean)  # same table rows, same lines, same headings
    # the board's own images (quality-vs-cost plots, escaped alt text, slugged paths) are the only ones
    own = re.compile(r"^!\[[^\n]*\]\(quality_cost/[A-Za-z0-9_.-]+\.svg\)$", re.M)
    assert len(own.findall(md_evil)) == len(own.findall(md_clean))
    md_evil = own.sub("", md_evil)
    for bad in ("![", "<img", "<script", "\n## Pwned", "\n# H1"):
        assert bad not in md_evil, bad
    assert not re.search(r"(?<!\\)\[(click|x)(?<!\\)\]\(", md_evil)  # no live link or image
    assert "\u202e" not in md_evil
    assert "Pwned" in md_evil  # the text is shown, inert


def test_forged_record_cannot_inject_html(boards):
    clean, evil = boards
    page_clean, page_evil = (clean / "index.html").read_text(), (evil / "index.html").read_text()
    p_clean, p_evil = _Tags(), _Tags()
    p_clean.feed(page_clean)
    p_evil.feed(page_evil)
    assert sorted(set(p_evil.tags)) == sorted(set(p_clean.tags))
    assert p_evil.tags.count("img") == p_clean.tags.count("img") and p_evil.tags.count("script") == 1
    assert all(v.startswith("quality_cost/") for tag, k, v in p_evil.attrs if tag == "img" and k == "src")
    assert "<script>alert" not in page_evil and "<script src" not in page_evil
    for tag, k, v in p_evil.attrs:
        assert not k.startswith("on"), (tag, k)
        if k in ("href", "src"):
            assert not v.lower().startswith(("javascript:", "http:", "https:", "//", "data:text")), (tag, k, v)


def test_csv_and_json_stay_well_formed(boards):
    clean, evil = boards
    for out in (clean, evil):
        rows = list(csv.reader(io.StringIO((out / "leaderboard.csv").read_text())))
        assert len(rows) == 1 + 4 and len({len(r) for r in rows}) == 1
        doc = json.loads((out / "leaderboard.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
        assert len(doc["boards"]) == 4
    with open(evil / "leaderboard.csv", newline="") as f:
        by = {r["submission"]: r for r in csv.DictReader(f)}
    assert by["gradient"]["version"] == INJECT  # the value itself, quoted by the csv module
    formula = evil.parent / "formula"
    _write(formula / "results", {"random": _record("random", 0.2, **{"submission.version": "=HYPERLINK(\"x\")"})})
    leaderboard.build(formula / "results", formula)
    row = next(csv.DictReader(io.StringIO((formula / "leaderboard.csv").read_text())))
    assert row["version"].startswith("'=")  # no spreadsheet formula


def test_metric_named_like_a_column_cannot_overwrite_it(tmp_path):
    raw = _record("random", 0.2)
    raw["scores"]["submission"] = dict(raw["scores"]["gt_overlap"])
    _write(tmp_path / "r", {"random": raw})
    leaderboard.build(tmp_path / "r", tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "leaderboard.json").read_text())
    assert doc["boards"][0]["submission"] == "random"


# -- non-finite numbers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path,value", [("memory.peak_rss_mb", float("inf")), ("timing.total_s", float("nan")),
                                        ("cost.forward_per_example", float("-inf")),
                                        ("scores.gt_overlap.value", float("nan")),
                                        ("tables", {"t": [{"x": float("inf")}]}),
                                        ("submission.params", {"a": [1.0, float("nan")]})])
def test_schema_refuses_non_finite(path, value):
    with pytest.raises(ValidationError, match="finite"):
        ResultRecord.model_validate(_record("random", 0.2, **{path: value}))


def test_write_refuses_non_finite(tmp_path):
    rec = ResultRecord.model_validate(_record("random", 0.2))
    rec.memory.peak_rss_mb = float("inf")  # after validation: no validate_assignment
    out = tmp_path / "r.json"
    with pytest.raises(ValueError, match=r"non-finite.*memory\.peak_rss_mb=inf"):
        rec.write(out)
    assert not out.exists() and not list(tmp_path.iterdir())
    rec2 = ResultRecord.model_validate(_record("random", 0.2))
    rec2.tables = {"t": [{"x": float("nan")}]}
    with pytest.raises(ValueError, match=r"tables\.t\[0\]\.x=nan"):
        rec2.write(out)


def test_board_skips_invalid_records_and_is_still_written(tmp_path, caplog):
    results = tmp_path / "results"
    _write(results, {"random": _record("random", 0.2), "gradient": _record("gradient", 0.5)})
    d = results / "planted_sst" / "tiny-bert"
    text = (d / "gradient.json").read_text().replace('"peak_rss_mb": 500.0', '"peak_rss_mb": Infinity')
    assert "Infinity" in text
    (d / "gradient.json").write_text(text)
    (d / "corrupt.json").write_text("{not json")
    raw = _record("lime", 0.7)
    raw.pop("timing")
    (d / "lime.json").write_text(json.dumps(raw))  # schema-valid, but an ok record without timing
    (d / "huge.json").symlink_to("/dev/zero")
    with caplog.at_level(logging.WARNING, logger="harness.board.leaderboard"):
        paths = leaderboard.build(results, tmp_path / "out")
    assert {p.name for p in paths} >= {"LEADERBOARD.md", "leaderboard.json", "leaderboard.csv", "index.html"}
    warned = "\n".join(r.getMessage() for r in caplog.records)
    for name, reason in (("gradient.json", "finite"), ("corrupt.json", "json"), ("lime.json", "timing"),
                         ("huge.json", "regular file")):
        line = next(ln for ln in warned.splitlines() if name in ln)
        assert reason in line.lower(), line
    md = (tmp_path / "out" / "LEADERBOARD.md").read_text()
    assert "Skipped 4 result file(s)" in md and "| random |" in md and "| gradient |" not in md and "| gradient ([" not in md
    doc = json.loads((tmp_path / "out" / "leaderboard.json").read_text(),
                     parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert [r["submission"] for r in doc["boards"]] == ["random"]
    with pytest.raises(ValueError, match="not a valid result record"):
        leaderboard.build(results, tmp_path / "strict", strict=True)


def test_cli_leaderboard_reports_instead_of_traceback(tmp_path, capsys):
    from harness.cli.main import main

    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "bad.json").write_text("[]")
    assert main(["leaderboard", "--results-dir", str(tmp_path / "r"), "--out-dir", str(tmp_path / "o")]) == 1
    assert "bad.json" in capsys.readouterr().err


def test_non_finite_extras_are_an_output_error():
    from harness.core.outputs import OutputError, check_extras
    from harness.protocols import Attributions

    attr = Attributions(level="word", scores=[np.zeros(2)] * 2, extras={"delta": np.array([1.0, np.inf])})
    with pytest.raises(OutputError, match="finite"):
        check_extras(attr, [0, 1])


# -- duplicate names -------------------------------------------------------------------------------------

def _impostor(tmp_path: Path, folder: str = "impostor") -> Path:
    dst = tmp_path / folder
    shutil.copytree(BUILTIN_DIR / "random", dst, ignore=shutil.ignore_patterns("__pycache__"))
    toml = (dst / "submission.toml").read_text()
    (dst / "submission.toml").write_text(toml.replace('name = "random"', 'name = "gradient"'))
    return dst


def test_two_submissions_with_one_name_are_refused(tmp_path):
    from harness.engine.runner import RunConfig, run_grid

    imp = load_submission(_impostor(tmp_path))
    builtin = resolve("gradient")
    assert imp.name == builtin.name == "gradient"
    with pytest.raises(SubmissionError, match="share a name") as e:
        check_unique_names([builtin, imp])
    assert str(builtin.path) in str(e.value) and str(imp.path) in str(e.value)
    check_unique_names([builtin, resolve("random")])
    results = tmp_path / "results"
    with pytest.raises(SubmissionError, match="share a name"):
        run_grid([], [builtin, imp], RunConfig(results_dir=results, cache_dir=tmp_path / "cache"))
    assert not results.exists()


def test_cli_run_refuses_duplicate_names(tmp_path, capsys):
    from harness.cli.main import main

    imp = _impostor(tmp_path, "gradient")  # a folder named gradient, declaring gradient
    assert main(["run", "--tasks", "planted_sst", "--submissions", str(imp), "gradient", "--results-dir",
                 str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache"), "--no-leaderboard",
                 "--isolation", "none"]) == 2
    msg = capsys.readouterr().err
    assert msg.startswith("attriboard: error: run: ") and msg.count("\n") == 1
    assert "share a name" in msg and str(imp.resolve()) in msg and str(BUILTIN_DIR / "gradient") in msg
    assert not (tmp_path / "results").exists()


# -- symbolic links and size in the package hash -----------------------------------------------------------

def _old_hash_tree(path: Path) -> str:
    """hash_tree as it was (following links): regular folders must keep their hash."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    for f in files:
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def test_hash_of_bundled_submissions_is_unchanged():
    reg = discover()
    for name in reg:
        sub = reg.get(name)
        assert sub.code_hash == _old_hash_tree(sub.path), name
    f = Path(provenance.__file__)
    assert provenance.hash_tree(f) == hashlib.sha256(f.name.encode() + f.read_bytes()).hexdigest()[:16]


def _folder(tmp_path: Path) -> Path:
    dst = tmp_path / "sub"
    shutil.copytree(BUILTIN_DIR / "random", dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def test_links_out_of_the_folder_are_refused(tmp_path):
    outside = tmp_path / "big.bin"
    outside.write_bytes(b"x" * 1000)
    for make in (lambda d: (d / "weights.bin").symlink_to(outside),
                 lambda d: (d / "data").symlink_to(tmp_path),                          # a folder link
                 lambda d: (d / "rel.bin").symlink_to(Path("..") / "big.bin"),
                 lambda d: (d / "dev").symlink_to("/dev/zero")):
        d = _folder(tmp_path)
        make(d)
        with pytest.raises(SubmissionError, match="symbolic link.*outside"):
            load_submission(d)
        shutil.rmtree(d)
    d = _folder(tmp_path)  # submission.toml itself a link: refused before it is read
    real = tmp_path / "real.toml"
    shutil.move(d / "submission.toml", real)
    (d / "submission.toml").symlink_to(real)
    with pytest.raises(SubmissionError, match="symbolic link"):
        load_submission(d)


def test_links_inside_the_folder_are_hashed_not_followed(tmp_path):
    d = _folder(tmp_path)
    before = load_submission(d).code_hash
    (d / "alias.py").symlink_to("explainer.py")
    h1 = load_submission(d).code_hash
    assert h1 != before
    (d / "explainer.py").write_text((d / "explainer.py").read_text() + "\n# edit\n")
    h2 = load_submission(d).code_hash
    assert h2 != h1  # the regular file is hashed once, as itself


def test_hashed_bytes_are_capped(tmp_path, monkeypatch):
    d = _folder(tmp_path)
    total = sum(p.stat().st_size for p in d.rglob("*") if p.is_file())
    provenance.hash_tree(d, max_bytes=total)
    with pytest.raises(provenance.TreeError, match="bytes"):
        provenance.hash_tree(d, max_bytes=total - 1)
    monkeypatch.setattr(provenance, "MAX_HASH_BYTES", 1000)
    (d / "weights.bin").write_bytes(os.urandom(2000))
    with pytest.raises(SubmissionError, match="cannot package.*1000 bytes"):
        load_submission(d)
