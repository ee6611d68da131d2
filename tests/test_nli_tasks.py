"""T2 e-SNLI plausibility and T3 MultiNLI faithfulness: corpus, parsing, loaders, tasks, models."""

import collections
import json

import numpy as np
import pytest

from harness.engine.task import get_task
from tasks.esnli.task import ESNLIFormatError, parse_esnli_records, parse_esnli_row, read_esnli_csv
from tasks.mnli.task import (load_multinli_local, read_multinli_jsonl, read_multinli_tsv, read_nli_line_files,
                        rows_from_hub_records)
from tasks.nli.corpus import FUNCTION_WORDS, LABELS, generate_nli_corpus

from conftest import shared_data

ESNLI_CSV = "esnli/esnli_dev_first2000.csv"


# --- generated corpus -------------------------------------------------------------------------

@pytest.mark.parametrize("style", ["snli", "mnli"])
def test_generated_corpus_is_deterministic_balanced_and_rationales_are_sound(style):
    a, b = generate_nli_corpus(600, seed=3, style=style), generate_nli_corpus(600, seed=3, style=style)
    assert a == b and a != generate_nli_corpus(600, seed=4, style=style)
    counts = collections.Counter(p.label for p in a)
    assert set(counts) == {0, 1, 2} and min(counts.values()) > 150
    assert len({p.kind for p in a}) == 12
    for p in a:
        words = p.premise + p.hypothesis
        assert p.rationale and all(words[i] not in FUNCTION_WORDS for i in p.rationale)
        assert all(0 <= i < len(words) for i in p.rationale)
        if p.kind.startswith("add_"):        # additions: like e-SNLI neutral rows, never a premise word
            assert not p.rationale_premise and LABELS[p.label] == "neutral"
        if p.kind == "negation":
            assert [p.hypothesis[j] for j in p.rationale_hypothesis] == ["not"] and not p.rationale_premise
        if p.kind in ("premise_negation", "premise_hedge"):
            assert [p.premise[i] for i in p.rationale_premise] == [{"premise_negation": "not"}.get(p.kind, "might")]
            assert not p.rationale_hypothesis
    n = [len(p.premise) + len(p.hypothesis) for p in a]
    assert (np.mean(n) > 20) == (style == "mnli")


def test_generated_rationales_by_hand():
    from tasks.nli.corpus import ACTIVITIES, PERSONS

    pairs = generate_nli_corpus(300, seed=0)
    # entailment by generalising the object: the premise object and its class word
    pair = next(p for p in pairs if p.kind == "generalise_object" and len(p.rationale) == 2)
    (i,), (j,) = pair.rationale_premise, pair.rationale_hypothesis
    verb = next(w for w in pair.premise if w in ACTIVITIES)
    assert ACTIVITIES[verb][pair.premise[i]] == pair.hypothesis[j] and pair.label == 0
    # contradiction by swapping the activity: both verbs
    pair = next(p for p in pairs if p.kind == "verb_swap")
    (i,), (j,) = pair.rationale_premise, pair.rationale_hypothesis
    assert pair.premise[i] in ACTIVITIES and pair.hypothesis[j] in ACTIVITIES and pair.premise[i] != pair.hypothesis[j]
    # a correct generalisation also occurs as background in other labels (no hypothesis-only cue)
    classes = set(PERSONS.values())
    assert {p.label for p in pairs if classes & set(p.hypothesis)} == {0, 1, 2}
    with pytest.raises(ValueError, match="style"):
        generate_nli_corpus(3, style="xnli")


# --- e-SNLI parsing ---------------------------------------------------------------------------

def _row(s1, s2, label="entailment", **cols):
    row = {"pairID": "x", "gold_label": label, "Sentence1": s1, "Sentence2": s2}
    for a in (1, 2, 3):
        row.update({f"Sentence1_marked_{a}": s1, f"Sentence2_marked_{a}": s2,
                    f"Sentence1_Highlighted_{a}": "{}", f"Sentence2_Highlighted_{a}": "{}"})
    row.update(cols)
    return row


def test_esnli_row_parsing_double_spaces_leading_space_and_mismatches():
    # 'Bob was  shopping.' has an empty token at index 2 (double space); index 3 is 'shopping.'
    row = _row("A man shops.", "Bob was  shopping.",
               Sentence2_marked_1=" *Bob* *was*  *shopping.*", Sentence2_Highlighted_1="0,1,3",
               Sentence1_marked_2="A *man* shops.", Sentence1_Highlighted_2="1",
               Sentence2_marked_2=" *Bob* was  shopping.", Sentence2_Highlighted_2="0")
    r = parse_esnli_row(row)
    assert r.premise == ("A", "man", "shops.") and r.hypothesis == ("Bob", "was", "shopping.")
    assert r.highlights == (frozenset({3, 4, 5}), frozenset({1, 3}), frozenset())
    assert r.gold("annotator1") == [3, 4, 5] and r.gold("l1") == [1, 3, 4, 5]
    assert r.gold("l2") == [3] and r.gold("l3") == []
    bad = dict(row, Sentence2_Highlighted_1="0,1")         # marks say 0, 1, 3
    with pytest.raises(ESNLIFormatError, match=r"Sentence2_Highlighted_1 = \[0, 1\].*marked words.*\[0, 1, 3\]"):
        parse_esnli_row(bad)
    with pytest.raises(ESNLIFormatError, match="empty token"):
        parse_esnli_row(dict(row, Sentence2_Highlighted_1="2", Sentence2_marked_1="Bob was * shopping."),
                        check_marks=False)
    with pytest.raises(ESNLIFormatError, match="out of range"):
        parse_esnli_row(dict(row, Sentence1_Highlighted_1="7"), check_marks=False)
    report = {}
    rows = parse_esnli_records([row, bad, _row("a b", "c d", label="-")], on_mismatch="skip", report=report)
    assert len(rows) == 1 and report == {"skipped_no_label": 1, "skipped_malformed": 1}


def test_esnli_csv_with_crlf_line_endings(tmp_path):
    import csv

    p = tmp_path / "esnli_dev.csv"
    row = _row("Two dogs, one cat.", "Animals play.", label="neutral",
               Sentence2_marked_1=" *Animals* play.", Sentence2_Highlighted_1="0")
    with p.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(row), lineterminator="\r\n")
        w.writeheader()
        w.writerow(row)
    assert b"\r\n" in p.read_bytes()
    (r,) = read_esnli_csv(p)
    assert r.premise == ("Two", "dogs,", "one", "cat.") and r.label == 1 and r.gold() == [4]


def test_real_esnli_rows_checked_by_hand():
    rows = read_esnli_csv(shared_data(ESNLI_CSV))
    assert len(rows) == 2000
    assert collections.Counter(LABELS[r.label] for r in rows) == {"neutral": 677, "entailment": 663,
                                                                   "contradiction": 660}
    r0, r1, r2 = rows[:3]
    # neutral: annotator 1 highlights only 'lunch.' (hypothesis word 13, after 9 premise words)
    assert r0.id == "4705552913.jpg#2r1n" and len(r0.premise) == 9 and r0.hypothesis[13] == "lunch."
    assert r0.gold() == [22] and r0.gold("l2") == [10, 12, 13, 22] and r0.gold("l3") == []
    # entailment: 'to go packages.' in the premise, 'holding packages.' in the hypothesis
    assert [(r1.premise + r1.hypothesis)[i] for i in r1.gold()] == ["to", "go", "packages.", "holding", "packages."]
    assert r1.gold("l2") == [1, 8, 12, 13]
    # contradiction: women/embracing vs men/fighting; all three annotators agree on 'women' and 'men'
    assert [(r2.premise + r2.hypothesis)[i] for i in r2.gold()] == ["women", "embracing", "men", "fighting"]
    assert r2.gold("l3") == [1, 10]
    assert sum(not r.gold("l2") for r in rows) == 3 and sum(not r.gold("l3") for r in rows) == 263


def test_real_esnli_task_from_local_folder_excludes_and_counts():
    d = shared_data("esnli")
    task = get_task("esnli", data_dir=str(d), n_eval=100, rationale="l3")
    data = task.prepare()
    assert task.spec.dataset.source == "local" and task.spec.main_metric == "token_iou_best_tau"
    assert len(data.examples) == 100 and len(data.dev) == 300 and len(data.train) == 1600
    assert task.spec.model.min_dev_accuracy == 0.35
    rep = task.load_report
    assert rep["excluded_no_highlight"] > 150 and rep["held_out_rows"] == 2000
    for ex, g in zip(data.examples, data.gold):
        assert len(ex.segments) == 2 and g and max(g) < ex.n_words
    assert set(vars(data.examples[0])) == {"id", "segments"}
    with pytest.raises(ValueError, match="rationale must be"):
        get_task("esnli", data_dir=str(d), rationale="l4")


def test_esnli_hub_code_path_with_local_files(monkeypatch):
    """``esnli`` without data_dir: hub pairs for training + the original CSV from its URL."""
    import datasets

    local = shared_data(ESNLI_CSV)
    real_load = datasets.load_dataset
    rows = read_esnli_csv(local)
    calls = []

    def fake_load(path, *args, **kw):
        calls.append(path)
        if path == "esnli":
            train = [{"premise": " ".join(r.premise), "hypothesis": " ".join(r.hypothesis), "label": r.label}
                     for r in rows[:400]]
            return datasets.DatasetDict({"train": datasets.Dataset.from_list(train)})
        assert path == "csv" and kw["data_files"]["eval"].startswith(
            "https://raw.githubusercontent.com/OanaMariaCamburu/e-SNLI/")
        return real_load("csv", data_files={"eval": str(local)}, features=kw["features"],
                         keep_default_na=kw["keep_default_na"])

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    task = get_task("esnli", n_eval=40, n_dev=50)
    assert task.spec.dataset.source == "hub"
    data = task.prepare()
    assert calls == ["esnli", "csv"] and len(data.train) == 400 and len(data.examples) == 40
    by_id = {r.id: r for r in rows}
    for ex, g in zip(data.examples, data.gold):
        r = by_id[ex.id.removeprefix("esnli-")]
        assert ex.segments == r.segments and g == r.gold()


# --- MultiNLI loaders ---------------------------------------------------------------------------

def _write_multinli(folder):
    recs = [
        {"gold_label": "entailment", "sentence1": "A man sleeps .", "sentence2": "Someone sleeps .", "pairID": "1e"},
        {"gold_label": "-", "sentence1": "Unclear .", "sentence2": "Nobody agreed .", "pairID": "2n"},
        {"gold_label": "contradiction", "sentence1": 'He said "no" .', "sentence2": "He said yes .", "pairID": "3c"},
    ]
    (folder / "multinli_1.0_train.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    header = ["gold_label", "sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse", "sentence2_parse",
              "sentence1", "sentence2", "promptID", "pairID", "genre", "label1"]
    lines = ["\t".join(header)]
    for r in recs + [{"gold_label": "neutral", "sentence1": "Cats nap", "sentence2": "Cats nap a lot",
                      "pairID": "4n"}]:
        lines.append("\t".join([r["gold_label"], "( x )", "( y )", "(ROOT x)", "(ROOT y)", r["sentence1"],
                                r["sentence2"], "0", r["pairID"], "fiction", r["gold_label"]]))
    (folder / "multinli_1.0_dev_matched.txt").write_text("\n".join(lines) + "\n")


def test_multinli_jsonl_and_tsv_readers(tmp_path):
    _write_multinli(tmp_path)
    rows = read_multinli_jsonl(tmp_path / "multinli_1.0_train.jsonl")
    assert [(r.id, r.label) for r in rows] == [("1e", 0), ("3c", 2)]            # '-' skipped
    assert rows[1].premise == ("He", "said", '"no"', ".")
    tsv = read_multinli_tsv(tmp_path / "multinli_1.0_dev_matched.txt")
    assert [(r.id, r.label) for r in tsv] == [("1e", 0), ("3c", 2), ("4n", 1)]
    assert tsv[1].premise == rows[1].premise                                       # quotes kept (no quoting)
    got = load_multinli_local(tmp_path, "matched")
    assert len(got["train"]) == 2 and len(got["held"]) == 3
    (tmp_path / "bad.tsv").write_text("sentence1\tlabel\na\t1\n")
    with pytest.raises(ValueError, match="header lacks"):
        read_multinli_tsv(tmp_path / "bad.tsv")
    with pytest.raises(FileNotFoundError, match="no MultiNLI mismatched dev file"):
        load_multinli_local(tmp_path, "mismatched")
    assert rows_from_hub_records([{"premise": "a b", "hypothesis": "c", "label": -1},
                                  {"premise": "a b", "hypothesis": "c", "label": 2}])[0].label == 2


def test_real_mnli_hard_line_files_and_task():
    d = shared_data("mnli-hard")
    matched = read_nli_line_files(d / "MNLIMatchedHardWithHardTest")
    mismatched = read_nli_line_files(d / "MNLIMismatchedHardWithHardTest")
    assert len(matched) == 4573 and len(mismatched) == 4530
    assert matched[0].premise == ("The", "new", "rights", "are", "nice", "enough") and LABELS[matched[0].label] == "neutral"
    assert "n't" in matched[2].premise                                              # PTB tokenisation kept
    task = get_task("multinli", data_dir=str(d), n_eval=50)
    data = task.prepare()
    assert task.spec.model.min_dev_accuracy == 0.30 and task.spec.dataset.source == "local"
    assert len(data.train) == 4530 and len(data.dev) == 500 and len(data.examples) == 50
    assert all(len(e.segments) == 2 for e in data.examples)
    m2 = get_task("multinli", data_dir=str(d), split="mismatched", n_eval=10).prepare()
    assert len(m2.train) == 4573


def test_multinli_hub_code_path_with_local_files(monkeypatch):
    import datasets

    d = shared_data("mnli-hard")
    split_rows = {"train": read_nli_line_files(d / "MNLIMismatchedHardWithHardTest")[:600],
                  "validation_matched": read_nli_line_files(d / "MNLIMatchedHardWithHardTest")[:700],
                  "validation_mismatched": []}
    calls = []

    def fake_load(path, name=None, revision=None, **kw):
        calls.append((path, revision))
        return datasets.DatasetDict({
            s: datasets.Dataset.from_list([{"premise": " ".join(r.premise), "hypothesis": " ".join(r.hypothesis),
                                            "label": r.label, "pairID": r.id} for r in rows] or
                                          [{"premise": "a", "hypothesis": "b", "label": 0, "pairID": "0"}])
            for s, rows in split_rows.items()})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    task = get_task("multinli", n_eval=60, n_train=500)
    assert task.spec.dataset.source == "hub" and task.spec.dataset.id == "multi_nli"
    data = task.prepare()
    assert calls == [("multi_nli", None)]
    assert len(data.train) == 500 and len(data.dev) == 500 and len(data.examples) == 60


# --- task specs -------------------------------------------------------------------------------

def test_task_specs_metrics_and_operator_parameter():
    t = get_task("mnli_faithfulness")
    s = t.spec
    assert s.num_labels == 3 and s.fields == ("premise", "hypothesis") and s.main_metric == "norm_comprehensiveness"
    assert set(s.metrics) == {"comprehensiveness", "sufficiency", "norm_comprehensiveness", "norm_sufficiency",
                              "deletion_auc", "insertion_auc", "deletion_bert_auc"}
    # deletion_bert_auc (T5 bias matrix) always removes by the masked LM; the others follow `operator`
    assert s.metric_params["deletion_bert_auc"]["operator"] == "mlm"
    assert all(p["operator"] == "delete" for m, p in s.metric_params.items() if m != "deletion_bert_auc")
    assert s.metric_params["comprehensiveness"]["bins"] == [0.01, 0.05, 0.1, 0.2, 0.5]
    assert s.metric_params["deletion_auc"]["curve_fraction"] == 0.2
    assert s.model.min_dev_accuracy == 0.9 and s.model.kind == "tiny-bert"
    masked = get_task("mnli_faithfulness", operator="mask")
    assert all(p["operator"] == "mask" for m, p in masked.spec.metric_params.items() if m != "deletion_bert_auc")
    assert masked.spec.hash() != s.hash()
    e = get_task("esnli_plausibility").spec
    assert e.main_metric == "token_iou_best_tau"
    assert {"average_precision", "token_f1_at_k", "gt_overlap", "comprehensiveness"} <= set(e.metrics)
    assert e.metric_params["sufficiency"]["operator"] == "delete"
    with pytest.raises(ValueError, match="did you mean 'mask'"):
        get_task("esnli_plausibility", operator="masc")
    # real tasks declare their own bars; an explicit recipe keeps its own
    assert get_task("multinli", model="bert-base-uncased").spec.model.min_dev_accuracy == 0.70
    assert get_task("esnli", model={"epochs": 1, "min_dev_accuracy": 0.5}).spec.model.min_dev_accuracy == 0.5
    assert get_task("esnli_plausibility", min_dev_accuracy=0.8).spec.model.min_dev_accuracy == 0.8


def test_embedded_tasks_prepare_pairs_with_gold():
    data = get_task("esnli_plausibility", n_train=300, n_dev=50, n_eval=30).prepare()
    assert len(data.train) == 300 and len(data.dev) == 50 and len(data.examples) == 30
    for ex, g in zip(data.examples, data.gold):
        assert len(ex.segments) == 2 and g and max(g) < ex.n_words
    again = get_task("esnli_plausibility", n_train=300, n_dev=50, n_eval=30).prepare()
    assert again.data_hash == data.data_hash
    m = get_task("mnli_faithfulness", n_train=300, n_dev=50, n_eval=30).prepare()
    assert len(m.examples) == 30 and m.gold == [y for y in m.gold if y in (0, 1, 2)]


# --- reference models and an end-to-end run -----------------------------------------------------

SMALL_NLI = dict(n_train=2000, n_dev=200, n_eval=40)


def _small_run(task_name, subs, results, cache_dir, **overrides):
    from harness.engine.runner import RunConfig, run_grid
    from harness.core.submission import resolve

    config = RunConfig(results_dir=results, cache_dir=cache_dir, batch_size=20)
    if hasattr(config, "mlm"):
        config.mlm = "none"          # no masked LM needed for the delete operator
    summary = run_grid([get_task(task_name, **SMALL_NLI, **overrides)], [resolve(s) for s in subs], config)
    assert not summary.task_failures and not summary.errors, (summary.task_failures, summary.errors)
    from harness.engine.records import ResultRecord

    return {p.stem: ResultRecord.read(p) for p in sorted(results.rglob("*.json"))}


@pytest.fixture(scope="module")
def esnli_records(tmp_path_factory, cache_dir):
    return _small_run("esnli_plausibility", ["random", "integrated_gradients"],
                      tmp_path_factory.mktemp("esnli-results"), cache_dir)


def test_esnli_plausibility_end_to_end(esnli_records):
    rnd, ig = esnli_records["random"], esnli_records["integrated_gradients"]
    assert ig.model.dev_accuracy >= 0.90                       # the task's bar, reached on 2,000 pairs
    for r in (rnd, ig):
        assert r.status == "ok" and r.main_metric == "token_iou_best_tau"
        assert set(r.scores) == set(get_task("esnli_plausibility").spec.metrics)
        assert 0.05 <= r.scores["token_iou_best_tau"].details["tau"] <= 0.95
        assert r.scores["comprehensiveness"].params == {"operator": "delete", "bins": [0.01, 0.05, 0.1, 0.2, 0.5]}
    # a real explainer agrees with the constructed rationales far better than a random map
    for m in ("token_iou_best_tau", "average_precision", "token_f1_at_k"):
        assert ig.scores[m].value > rnd.scores[m].value + 0.15, m
    assert ig.scores["comprehensiveness"].value > rnd.scores["comprehensiveness"].value


def test_mnli_faithfulness_reference_model_reaches_its_bar(tmp_path, cache_dir):
    records = _small_run("mnli_faithfulness", ["random"], tmp_path, cache_dir, bias_metrics=False)  # no masked LM
    r = records["random"]
    assert r.model.dev_accuracy >= 0.90 and r.main_metric == "norm_comprehensiveness"
    assert {s.params["operator"] for s in r.scores.values()} == {"delete"}
    assert r.scores["deletion_auc"].params == {"operator": "delete", "curve_fraction": 0.2}
    assert 0.0 <= r.scores["norm_comprehensiveness"].value <= 1.0


def test_leaderboard_shows_operator_tau_and_load_report(esnli_records, tmp_path):
    """The Markdown board names each removal metric's operator and each explainer's tau; the CSV
    carries the same; the record keeps the task's load report."""
    from harness.board import leaderboard
    from harness.board.leaderboard import build_boards, render_markdown, table_rows

    ig = esnli_records["integrated_gradients"]
    assert ig.task.load_report["n_eval"] == 40
    boards = build_boards([(r, f"{n}.json") for n, r in sorted(esnli_records.items())])
    md = render_markdown(boards, len(esnli_records))
    assert "comprehensiveness (operator delete)" in md and "sufficiency (operator delete)" in md
    tau = ig.scores["token_iou_best_tau"].details["tau"]
    row = next(line for line in md.splitlines()
               if line.startswith("| integrated_gradients |") and "tau=" in line)
    assert f"tau={tau:.3g}" in row
    rows = {r["submission"]: r for r in table_rows(boards)}
    assert rows["integrated_gradients"]["token_iou_best_tau_tau"] == round(tau, 6)
    assert json.loads(rows["random"]["comprehensiveness_params"])["operator"] == "delete"
    assert leaderboard.OVERALL_RULE
    from harness.board.html import render_html

    page = render_html(boards, len(esnli_records), {})
    assert "comprehensiveness &uarr;<br><small>operator delete</small>" in page and f"tau={tau:.3g}" in page
