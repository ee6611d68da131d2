"""T4 fragility (ExplainFooler, paper 000): metrics, resources, constraints (both backends),
the attack on a tiny model, plots.  Runs offline; MiniLM / spaCy / TextAttack parts skip
with a reason when the optional package is missing."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from tasks.fragility import metrics as M
from tasks.fragility import resources as R
from tasks.fragility.attack import Explanations, ExplainFooler
from tasks.fragility.constraints import ConstraintConfig, HarnessBackend, recover_word_case
from tasks.fragility.corpus_synonyms import CORPUS_SYNONYMS, table_vocabulary
from harness.protocols import ExplainBatch

from conftest import shared_data

SPACY_OK, SPACY_WHY = R.SpacyTagger.available()
MINILM_OK, MINILM_WHY = R.MiniLMEncoder.available()
TA_OK = R.package_installed("textattack")


# --- metrics against hand-computed values ------------------------------------------------

def test_lom_and_delta_lom():
    assert M.lom([1, 0, 3]) == pytest.approx(1.5)            # (0*1 + 1*0 + 2*3) / 4
    assert M.lom([1, -1, 2]) == pytest.approx(1.25)          # |.|: (0 + 1 + 4) / 4
    assert M.lom([1, -1, 2], signed=True) == pytest.approx(1.5)  # eq. 1 as printed: (0 - 1 + 4) / 2
    assert M.lom([0, 0, 0, 0]) == pytest.approx(1.5)         # no mass: the centre
    assert M.delta_lom([1, 0, 3], [3, 0, 1]) == pytest.approx(1.0)  # |1.5 - 0.5|
    assert M.delta_lom([0, 5, 0], [0, 2, 0]) == 0.0


def test_l2_distance():
    assert M.l2_distance([3, 4], [4, 3]) == pytest.approx(np.sqrt(0.08))   # (.6,.8) vs (.8,.6)
    assert M.l2_distance([3, 4], [4, 3], normalize=False) == pytest.approx(np.sqrt(2))
    assert M.l2_distance([0, 0], [1, 0]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        M.l2_distance([1, 2], [1, 2, 3])


def test_spearman_clipped():
    from scipy.stats import spearmanr

    assert M.spearman_clipped([1, 2, 3, 4], [4, 3, 2, 1]) == 0.0           # -1 clipped
    assert M.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert M.spearman_clipped([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6*2/(4*15)
    assert M.spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(1.5 / np.sqrt(3))  # average ranks
    a, b = np.random.default_rng(0).normal(size=(2, 12))
    assert M.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert M.spearman_clipped([0, 0, 0], [0, 0, 0]) == 1.0 and M.spearman_clipped([0, 0, 0], [1, 2, 3]) == 0.0


def test_top50_intersection():
    assert M.top_k_intersection([0.9, -0.8, 0.1, 0.05], [0.9, 0.0, 0.7, 0.05]) == 0.5  # {0,1} vs {0,2}
    assert M.top_k_intersection([5, 4, 3, 2, 1], [1, 2, 3, 4, 5]) == 0.0                # k = 2: {0,1} vs {3,4}
    assert M.top_k_intersection([1, -3, 2], [0, 9, 0]) == 1.0                            # k = 1 by |score|
    assert M.top_k_intersection([1, 1, 1, 1], [1, 1, 1, 1]) == 1.0                       # ties by position


def test_buckets():
    assert M.bucket_name(1, 10) == "0-10%" and M.bucket_name(2, 10) == "10-20%"
    assert M.bucket_name(1, 4) == "20-30%" and M.bucket_name(1, 3) == "30-40%"
    assert M.bucket_name(5, 10) == "40-50%" and M.bucket_name(1, 11) == "0-10%"
    with pytest.raises(ValueError):
        M.bucket_name(6, 10)


# --- resources -----------------------------------------------------------------------------

def test_project_stopwords_and_shared_list():
    sw = R.ENGLISH_STOPWORDS
    assert 140 <= len(sw) <= 220 and {"the", "and", "is", "of", "not"} <= sw
    assert not sw & {"film", "brilliant", "dull", "rather", "quite"}
    shared = R.load_stopwords(shared_data("stopwords"))
    assert len(shared) == 179 and "the" in shared


def test_ppdb_synonym_loader_on_shared_data():
    d = shared_data("synonyms")
    table = R.load_synonym_pairs(d)
    assert len(table) > 10_000
    assert "medieval" in table["mediaeval"] and "mediaeval" in table["medieval"]   # symmetrised
    antonyms = set(R.load_antonym_pairs(d))
    assert antonyms and not any((a, b) in antonyms for a in list(table)[:2000] for b in table[a])
    raw = R.load_synonym_pairs(d / "ppdb_synonyms.txt", exclude_antonyms=False)
    assert sum(map(len, raw.values())) >= sum(map(len, table.values()))


def test_word_vector_loader_formats_and_url(tmp_path):
    lines = ["3 2", "good 1 0", "great 0.9 0.1", "bad -1 0"]
    txt = tmp_path / "vec.txt"
    txt.write_text("\n".join(lines) + "\n")
    v = R.load_word_vectors(txt)
    assert v.words == ["good", "great", "bad"] and v.matrix.shape == (3, 2)
    assert v.nearest("good", 1)[0][0] == "great" and v.cos("good", "bad") == pytest.approx(-1.0)
    assert R.load_word_vectors(txt, vocabulary={"bad"}).words == ["bad"]
    z = tmp_path / "vec.txt.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("vec.txt", "\n".join(lines[1:]) + "\n")
    got = R.download_word_vectors(z.as_uri(), tmp_path / "dl")   # the URL loader, offline via file://
    assert got.name == "vec.txt.zip" and R.load_word_vectors(got).words == ["good", "great", "bad"]
    bad = tmp_path / "bad.txt"
    bad.write_text("a 1 2\nb 1\n")
    with pytest.raises(ValueError, match="expected 2 values"):
        R.load_word_vectors(bad)


def test_counter_fitting_pulls_synonyms_and_pushes_antonyms():
    rng = np.random.default_rng(0)
    words = ["good", "great", "bad", "awful", "table"]
    base = R.WordVectors(words, rng.normal(size=(5, 16)))
    fit = R.counter_fit(base, [("good", "great"), ("bad", "awful")], [("good", "bad")])
    assert fit.cos("good", "great") > base.cos("good", "great") + 0.1
    assert fit.cos("good", "bad") < base.cos("good", "bad")


def test_prepare_textattack_env(tmp_path):
    info = R.prepare_textattack_env(tmp_path)
    sw = (tmp_path / "textattack-offline" / "nltk_data" / "corpora" / "stopwords" / "english").read_text().split()
    assert set(sw) == set(R.ENGLISH_STOPWORDS)
    assert (tmp_path / "textattack-offline" / "cache" / R.TEXTATTACK_MARKER).exists()
    assert info["TA_CACHE_DIR"].endswith("cache")


# --- constraints ---------------------------------------------------------------------------

def _toy_subs(k=50):
    """Substitutes with hand-made vectors: 'movie' close to 'film', 'banana' far."""
    words = ["film", "movie", "banana", "dull", "boring", "brilliant", "superb", "quickly"]
    vec = {"film": [1, 0, 0, 0], "movie": [0.9, 0.1, 0, 0], "banana": [0, 0, 1, 0], "dull": [0, 1, 0, 0],
           "boring": [0.05, 0.95, 0, 0], "brilliant": [0, 0, 0, 1], "superb": [0, 0.1, 0, 0.9],
           "quickly": [0.95, 0, 0, 0.05]}
    wv = R.WordVectors(words, np.array([vec[w] for w in words], float), source="toy")
    nbrs = {"film": ["movie", "quickly", "banana"], "dull": ["boring"], "brilliant": ["superb"]}
    return R.SubstituteSet("toy", "toy table", nbrs, wv, k)


class FakeEncoder:
    """Sentence similarity 1 unless the text contains a poisoned word."""

    def __init__(self, poison="boring"):
        self.poison = poison

    def encode(self, texts):
        return np.array([[0.0, 1.0] if self.poison in t.split() else [1.0, 0.0] for t in texts])

    def similarity(self, reference, texts):
        e = self.encode([reference] + list(texts))
        return e[1:] @ e[0]


WORDS = ("the", "film", "is", "dull", "and", "brilliant")


def _backends(tagger=None, encoder=None):
    subs = _toy_subs()
    cfg = ConstraintConfig(min_word_cos=0.5, min_sentence_cos=0.5)
    out = [HarnessBackend(subs, R.ENGLISH_STOPWORDS, cfg, tagger, encoder)]
    if TA_OK:
        ta, info = R.import_textattack()
        from tasks.fragility.constraints import TextAttackBackend

        out.append(TextAttackBackend(subs, R.ENGLISH_STOPWORDS, cfg, tagger, encoder, textattack_version=info))
    return out


@pytest.fixture(scope="module")
def tagger():
    """spaCy's tagger, or None when it is not installed (the POS checks then skip)."""
    return R.SpacyTagger() if SPACY_OK else None


def test_part_of_speech_tagger_available(tagger):
    if tagger is None:
        pytest.skip(f"part-of-speech constraint not testable: {SPACY_WHY}")
    assert tagger.tags([WORDS])[0][:4] == ("DET", "NOUN", "AUX", "ADJ")


@pytest.mark.parametrize("which", ["harness", "textattack"])
def test_each_constraint_rejects_a_crafted_bad_candidate(which, tagger):
    if which == "textattack" and not TA_OK:
        pytest.skip("textattack is not installed (optional extra [attack]); harness backend tested instead")
    backend = {b.name: b for b in _backends(tagger, FakeEncoder())}[which]
    orig = backend.start(WORDS)
    # stop word: 'the' (index 0) and 'is' are never modified
    cands, rej = backend.lexical(orig, 0, orig)
    assert cands == [] and rej["not_modifiable"] == 1
    # word embedding: film -> banana has cosine 0 < 0.5 (movie and quickly pass)
    cands, rej = backend.lexical(orig, 1, orig)
    assert [c.new_word for c in cands] == ["movie", "quickly"] and rej["word_embedding"] == 1
    # part of speech: 'quickly' (ADV) cannot replace the noun 'film'
    kept = backend.pos_filter(orig, cands)
    assert [c.new_word for c in kept] == (["movie"] if tagger is not None else ["movie", "quickly"])
    # repeat modification: after film -> movie, index 1 cannot be modified again
    state = backend.advance(orig, kept[0])
    assert backend.lexical(state, 1, orig) == ([], {"not_modifiable": 1, "word_embedding": 0})
    # the chained state still allows other words, swapped in the current text
    cands, _ = backend.lexical(state, 5, orig)
    assert [c.words for c in cands] == [("the", "movie", "is", "dull", "and", "superb")]
    # sentence encoder: the fake encoder rejects any text containing 'boring'
    cands, _ = backend.lexical(state, 3, orig)
    assert [c.new_word for c in cands] == ["boring"]
    assert backend.sentence_filter(orig, cands) == []


def test_backends_agree_on_real_resources():
    if not TA_OK:
        pytest.skip("textattack is not installed (optional extra [attack]): nothing to compare")
    backends = _backends(None, FakeEncoder(poison="nothing"))
    sentences = [("the", "film", "is", "dull", ",", "and", "brilliant", "!"),
                 ("Film", "and", "brilliant", "...", "dull")]
    for words in sentences:
        seen = []
        for b in backends:
            orig = b.start(words)
            seen.append([[c.words for c in b.sentence_filter(orig, b.pos_filter(orig, b.lexical(orig, i, orig)[0]))]
                         for i in range(len(words))])
        assert seen[0] == seen[1]
    assert recover_word_case("movie", "Film") == "Movie"


# --- the attack on a tiny model -------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    """An untrained tiny BERT over the corpus + synonym vocabulary (predictions near 50/50,
    so label-flipping candidates are common) and 6 corpus sentences of 10-16 words."""
    from harness.models.bundle import ModelBundle
    from harness.models.reference import build_word_tokenizer
    from tasks.planted_sst.corpus import corpus_vocabulary, generate_corpus

    import torch
    from transformers import BertConfig, BertForSequenceClassification

    rows = [tuple(t.split()) for t, _ in generate_corpus(300, seed=3) if 10 <= len(t.split()) <= 16][:6]
    vocab = sorted(corpus_vocabulary() | table_vocabulary() | {w for r in rows for w in r})
    tok = build_word_tokenizer(vocab, 128)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2,
                        initializer_range=0.6, pad_token_id=0)  # large init: predictions depend on the words
    bundle = ModelBundle(BertForSequenceClassification(config), tok, "test-tiny", 2)
    embed = R.model_input_vectors(bundle)
    resource = R.SubstituteResource.from_synonyms(CORPUS_SYNONYMS, embed, "model-input", "corpus")
    subs = resource.restrict({w for r in rows for w in r}, k=50, known=R.known_to_tokenizer(tok))
    targets = bundle.proba_of_segments([(r,) for r in rows]).argmax(-1).tolist()
    return bundle, rows, targets, subs


class Spy:
    """Wraps an explainer and records every batch it receives."""

    def __init__(self, inner):
        self.inner, self.batches = inner, []
        self.name, self.version = inner.name, inner.version

    def explain(self, model, batch):
        self.batches.append(batch)
        return self.inner.explain(model, batch)


def test_attack_keeps_label_limits_changes_and_only_explains_candidates(tiny):
    from harness.core.submission import resolve

    bundle, rows, targets, subs = tiny
    backend = HarnessBackend(subs, R.ENGLISH_STOPWORDS, ConstraintConfig(), None, None)
    spy = Spy(resolve("gradient_x_input").instantiate())
    expl = Explanations(spy, bundle, seed=0, max_batch=None)
    attack = ExplainFooler(backend, bundle, expl, seed=0)
    results = attack.run([(r,) for r in rows], targets, list(range(len(rows))))
    assert attack.stats.rejected["label"] > 0           # the untrained model flips on some swaps
    n_levels = 0
    for r, target in zip(results, targets):
        n = len(r.words)
        assert sorted(r.loo_order) == list(range(n))
        for obj, levels in r.levels.items():
            prev = r.words
            for m, lv in enumerate(levels, start=1):
                assert lv.m == m <= n // 2                                   # at most 50% of words
                diff = [i for i, (a, b) in enumerate(zip(r.words, lv.words)) if a != b]
                assert len(diff) == m and lv.index in diff                 # chained: m words changed
                assert sum(a != b for a, b in zip(prev, lv.words)) == 1     # one more than level m-1
                assert r.words[lv.index].lower() not in R.ENGLISH_STOPWORDS
                assert lv.map.shape == (n,)
                prev = lv.words
                n_levels += 1
            if levels:
                preds = bundle.proba_of_segments([(lv.words,) for lv in levels]).argmax(-1)
                assert (preds == target).all()                               # original label kept
    assert n_levels > 0
    allowed = {(r.words,) for r in results} | {(c,) for r in results for c in r.candidate_texts}
    for batch in spy.batches:
        assert isinstance(batch, ExplainBatch)
        assert all(tuple(s) in allowed for s in batch.segments)
    # one explainer call for the originals, then one per level (all inputs, all objectives)
    assert expl.n_calls == len(spy.batches) == 1 + max(len(lv) for r in results for lv in r.levels.values())


def test_random_objective_is_seeded_and_candidates_are_cached(tiny):
    from harness.core.submission import resolve

    bundle, rows, targets, subs = tiny
    backend = HarnessBackend(subs, R.ENGLISH_STOPWORDS, ConstraintConfig(), None, None)
    ex = resolve("gradient").instantiate()
    runs = []
    for _ in range(2):
        expl = Explanations(ex, bundle, seed=0)
        res = ExplainFooler(backend, bundle, expl, objectives=("random", "l2"), seed=0).run(
            [(r,) for r in rows[:3]], targets[:3], [1, 2, 3])
        runs.append([[lv.words for lv in r.levels["random"]] for r in res])
        # explanations of a text are computed once even when two objectives propose it
        assert expl.n_explained == len(expl.cache)
    assert runs[0] == runs[1]


def test_summary_tables_and_main_metric(tiny):
    from tasks.fragility.summary import summarise
    from harness.core.submission import resolve

    bundle, rows, targets, subs = tiny
    backend = HarnessBackend(subs, R.ENGLISH_STOPWORDS, ConstraintConfig(), None, None)
    expl = Explanations(resolve("gradient_x_input").instantiate(), bundle, seed=0)
    res = ExplainFooler(backend, bundle, expl, seed=0).run([(r,) for r in rows], targets, list(range(6)))
    ids = [f"x{i}" for i in range(len(rows))]
    per_example, higher, family, tables, details = summarise(res, ids, ("l2", "delta_lom", "random"))
    strongest = tables["fragility_summary"][0]["strongest_objective"]
    assert np.array_equal(per_example["fragility_rank_corr"], per_example[f"rank_corr_{strongest}"])
    assert all(v.shape == (len(rows),) and np.all(np.isfinite(v)) for v in per_example.values())
    assert all(higher.values()) and set(family.values()) == {"fragility"}
    assert len(tables["fragility_buckets"]) == 3 * 5
    # per-input score = mean over reached buckets of the per-bucket values in the per-input table
    for o in ("l2", "random"):
        for i, ex_id in enumerate(ids):
            vals = [r["spearman_clipped"] for r in tables["fragility_per_input"]
                    if r["objective"] == o and r["example_id"] == ex_id]
            assert per_example[f"rank_corr_{o}"][i] == pytest.approx(np.mean(vals) if vals else 1.0)
    for row in tables["fragility_buckets"]:
        if row["n_inputs"]:
            vals = [r["spearman_clipped"] for r in tables["fragility_per_input"]
                    if r["objective"] == row["objective"] and r["bucket"] == row["bucket"]]
            assert row["spearman_clipped_mean"] == pytest.approx(np.mean(vals)) and len(vals) == row["n_inputs"]
    json.dumps(tables)  # flat, serialisable rows
    assert details["fragility_rank_corr"][f"strongest_is_{strongest}"] == 1.0


# --- the task end to end (real resources when installed) -------------------------------------

def test_task_evaluate_end_to_end(tiny):
    from harness.core.submission import resolve
    from harness.engine.task import Task, get_task

    bundle, _, _, _ = tiny
    task = get_task("fragility", n_eval=4, max_words=14, pos="auto")
    assert type(task).evaluate is not Task.evaluate and task.spec.main_metric == "fragility_rank_corr"
    data = task.prepare()
    assert len(data.examples) == 4 and all(10 <= e.n_words <= 14 for e in data.examples)
    targets = bundle.proba_of_segments([e.segments for e in data.examples]).argmax(-1).tolist()
    spy = Spy(resolve("gradient").instantiate())
    ev = task.explain_and_score(spy, bundle, data.examples, targets, seed=0)
    assert set(ev.per_example) == set(task.spec.metrics) and ev.per_example["fragility_rank_corr"].shape == (4,)
    res = {r["resource"]: r for r in ev.tables["fragility_resources"]}
    assert {"backend", "substitutes", "stopwords", "word_embedding", "part_of_speech", "sentence_encoder",
            "perplexity", "search"} <= set(res)
    assert res["perplexity"]["status"] == "unavailable"      # no causal LM offline: reported, not faked
    assert res["part_of_speech"]["status"] == ("used" if SPACY_OK else "skipped")
    assert res["sentence_encoder"]["status"] == ("used" if MINILM_OK else "skipped")
    assert res["backend"]["name"] == ("textattack" if TA_OK else "harness")
    d = ev.details["fragility_rank_corr"]
    assert d["backend_textattack"] == float(TA_OK) and d["explainer_calls"] == len(spy.batches)
    assert all(isinstance(b, ExplainBatch) for b in spy.batches)
    assert spy.batches[0].targets.tolist() == targets          # the originals, with the model's predictions
    originals = {e.words: t for e, t in zip(data.examples, targets)}
    for b in spy.batches[1:]:                                   # candidates: the target of their original
        for segs, t in zip(b.segments, b.targets.tolist()):
            words = segs[0]
            src = [o for o in originals if len(o) == len(words) and sum(x != y for x, y in zip(o, words)) <= len(o) // 2]
            assert src and t in {originals[o] for o in src}
    if TA_OK:  # the harness backend, forced, gives the very same attack
        other = get_task("fragility", n_eval=4, max_words=14, pos="auto", backend="harness")
        ev2 = other.explain_and_score(resolve("gradient").instantiate(), bundle, data.examples, targets, seed=0)
        assert ev2.details["fragility_rank_corr"]["backend_textattack"] == 0.0
        for k, v in ev.per_example.items():
            np.testing.assert_allclose(ev2.per_example[k], v, err_msg=k)


# --- plots -------------------------------------------------------------------------------------

def _record(sub, rows):
    return {"status": "ok", "task": {"name": "fragility"}, "model": {"name": "tiny-bert"},
            "submission": {"name": sub}, "tables": {"fragility_per_input": rows}}


def test_plot_fragility_is_deterministic(tmp_path):
    from tasks.fragility.plots import plot_fragility

    rng = np.random.default_rng(0)
    rows = [{"objective": o, "bucket": b, "example_id": f"e{i}", "spearman_clipped": float(v)}
            for o in ("l2", "delta_lom", "random") for b in M.BUCKETS for i, v in enumerate(rng.uniform(0, 1, 5))]
    rows.append({"objective": "l2", "bucket": "40-50%", "example_id": "solo", "spearman_clipped": 0.3})
    records = [_record("ig", rows), _record("lime", rows[:3]), {"status": "error"}, _record("none", [])]
    a = plot_fragility(records, tmp_path / "a")
    b = plot_fragility(records, tmp_path / "b")
    assert [p.name for p in a] == ["fragility__tiny-bert__ig.png", "fragility__tiny-bert__lime.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in a)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_explainer_failures_are_told_apart(tiny):
    from tasks.fragility.attack import ExplainerCallError
    from harness.core.outputs import OutputError
    from harness.protocols import Attributions

    bundle, rows, targets, _ = tiny

    class Raises:
        name, version = "raises", "0"

        def explain(self, model, batch):
            raise RuntimeError("boom")

    class Garbage:
        name, version = "garbage", "0"

        def explain(self, model, batch):
            return Attributions(level="word", scores=[np.full(batch.n_words(i), np.nan) for i in range(len(batch))])

    with pytest.raises(ExplainerCallError, match="boom"):
        Explanations(Raises(), bundle, seed=0).get([((rows[0],), targets[0])])
    with pytest.raises(OutputError, match="NaN"):
        Explanations(Garbage(), bundle, seed=0).get([((rows[0],), targets[0])])


def test_task_falls_back_to_harness_backend_without_textattack(tiny, monkeypatch):
    from harness.core.submission import resolve
    from harness.engine.task import get_task

    bundle, _, _, _ = tiny
    monkeypatch.setattr(R, "import_textattack", lambda *a, **k: (None, "textattack is not installed (simulated)"))
    task = get_task("fragility", n_eval=3, max_words=14, pos="off", sentence_encoder="off", embedder="model-input")
    data = task.prepare()
    targets = bundle.proba_of_segments([e.segments for e in data.examples]).argmax(-1).tolist()
    ev = task.explain_and_score(resolve("gradient").instantiate(), bundle, data.examples, targets, seed=0)
    res = {r["resource"]: r for r in ev.tables["fragility_resources"]}
    assert res["backend"]["name"] == "harness" and res["textattack"]["status"] == "unavailable"
    assert res["part_of_speech"]["status"] == "skipped" and res["sentence_encoder"]["status"] == "skipped"
    assert ev.details["fragility_rank_corr"]["backend_textattack"] == 0.0
    assert np.all(np.isfinite(ev.per_example["fragility_rank_corr"]))
