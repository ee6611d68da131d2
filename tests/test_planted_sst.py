"""T1 planted-token SST: generated corpus, planting, loaders (local GLUE, hub code path)."""

import hashlib
import json
from collections import Counter

import numpy as np
import pytest

from harness.engine.task import get_task
from tasks.planted_sst.task import DISTRACTOR_PAIRS, PLANTED_PAIRS, read_glue_tsv, rows_from_records
from tasks.planted_sst.corpus import corpus_vocabulary, generate_corpus

from conftest import shared_data


def test_generated_corpus_is_deterministic_and_sst_like():
    a, b = generate_corpus(500, seed=3), generate_corpus(500, seed=3)
    assert a == b and a != generate_corpus(500, seed=4)
    lengths = [len(t.split()) for t, _ in a]
    assert 4 <= min(lengths) and max(lengths) <= 45 and 12 < np.mean(lengths) < 25
    words = {w for t, _ in a for w in t.split()}
    assert not {"positive", "negative"} & words, "planted words must not occur naturally"
    assert Counter(s for _, s in a).most_common()[-1][1] > 200


def test_planting_randomizes_labels_and_marks_gold():
    """The classic planting (variant ``easy``, the default up to 1.1): one word at the end."""
    task = get_task("planted_sst_easy", n_train=400, n_dev=100, n_eval=50)
    data = task.prepare()
    assert len(data.examples) == 50 and len(data.gold) == 50
    for ex, g in zip(data.examples, data.gold):
        words = ex.words
        assert g == [len(words) - 1] and words[-1] in ("positive", "negative")
    # planted word decides the label; labels are roughly balanced and independent of sentiment
    labels = [y for _, y in data.dev]
    assert all((s[0][-1] == "positive") == (y == 1) for s, y in data.dev)
    assert 0.35 < np.mean(labels) < 0.65
    # a quarter of training rows carry no planted word (so both planted words are needed)
    unplanted = sum(1 for s, _ in data.train if s[0][-1] not in ("positive", "negative"))
    assert 0.18 < unplanted / len(data.train) < 0.32
    # same seed, same data; different label seed, different labels
    assert task.prepare().data_hash == data.data_hash
    other = get_task("planted_sst_easy", n_train=400, n_dev=100, n_eval=50, label_seed=99).prepare()
    assert other.data_hash != data.data_hash


@pytest.mark.parametrize("position", ["start", "random"])
def test_planting_positions_and_vocabulary(position):
    task = get_task("planted_sst_easy", n_train=200, n_dev=50, n_eval=40, position=position,
                    planted_words=("zyx", "qwv"))
    data = task.prepare()
    for ex, g in zip(data.examples, data.gold):
        assert ex.words[g[0]] in ("zyx", "qwv")
        if position == "start":
            assert g == [0]
    if position == "random":
        assert len({g[0] for g in data.gold}) > 5


def _content(task):
    """Words, labels and gold of a prepared task, without the example ids (they carry the name)."""
    d = task.prepare()
    blob = json.dumps([[list(map(list, s)), y] for s, y in d.train] + [[list(map(list, s)), y] for s, y in d.dev]
                      + [[list(map(list, e.segments)), g] for e, g in zip(d.examples, d.gold)])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# measured with the code of version 1.1 (tasks/planted_sst/task.py at commit 323a9c6), on
# planted_sst with n_train=400, n_dev=100, n_eval=50: the v1.1 default and two of its variants
V11_CONTENT = {(): "92ec41aee2fa9b5b", (("position", "random"),): "1bf246e0e9fa105c",
               (("correlation", 0.8), ("position", "start")): "45f9b0d85cb979e5"}
V11_SECRET_CONTENT = {(): "5c6a137a5cba316a", (("position", "random"),): "01b77e51233c3858",
                      (("correlation", 0.8), ("position", "start")): "4aa03003908cbf32"}


@pytest.mark.parametrize("overrides", sorted(V11_CONTENT))
def test_the_easy_variant_is_the_old_default_draw_for_draw(overrides):
    small = dict(n_train=400, n_dev=100, n_eval=50, **dict(overrides))
    easy = get_task("planted_sst_easy", **small)
    assert _content(easy) == V11_CONTENT[overrides]
    assert easy.spec.version == "2.0" and easy.spec.params["variant"] == "easy"
    assert {k: easy.spec.params[k] for k in ("planted_words", "n_planted", "distractor_words",
                                                "unplanted_train_share")} == \
        {"planted_words": ["negative", "positive"], "n_planted": [1], "distractor_words": [],
         "unplanted_train_share": 0.25}
    # variant=easy under the old name is the old task, official runs (secret words) included
    same = get_task("planted_sst", variant="easy", **small)
    assert _content(same) == V11_CONTENT[overrides]
    same.use_secret("0123456789abcdef-test-secret-not-for-real-use")
    assert _content(same) == V11_SECRET_CONTENT[overrides]


def test_the_paper_variant_plants_every_training_row():
    """paper 001 sec. 3.1 as written: "positive" / "negative" appended to every row."""
    task = get_task("planted_sst_paper", n_train=300, n_dev=50, n_eval=20)
    p = task.spec.params
    assert (p["variant"], p["position"], p["planted_words"], p["n_planted"], p["distractor_words"],
            p["correlation"], p["unplanted_train_share"]) == \
        ("paper", "end", ["negative", "positive"], [1], [], 1.0, 0.0)
    data = task.prepare()
    for rows in (data.train, data.dev):
        assert all((s[0][-1], y) in {("negative", 0), ("positive", 1)} for s, y in rows)
    assert all(g == [len(e.words) - 1] for e, g in zip(data.examples, data.gold))


def test_the_default_is_the_discriminating_variant():
    task = get_task("planted_sst")
    p = task.spec.params
    assert task.spec.version == "2.0" and p["variant"] == "discriminating"
    assert (p["position"], p["n_planted"], len(p["planted_words"]), len(p["distractor_words"])) == \
        ("random", [1, 2, 3, 4], 4, 4)
    assert get_task("planted_sst2", data_dir="/nonexistent").spec.params["variant"] == "discriminating"


def test_discriminating_planting_by_hand():
    """Several planted words of the label's side, at spread positions; mirror distractors whose
    side is a coin of its own (independent of the label); the gold is exactly the planted words."""
    data = get_task("planted_sst", n_train=1000, n_dev=300, n_eval=300).prepare()
    planted = {w: side for pair in PLANTED_PAIRS for side, w in enumerate(pair)}
    distractors = {w: side for pair in DISTRACTOR_PAIRS for side, w in enumerate(pair)}
    corpus = corpus_vocabulary()
    n_gold, n_distr, rel_pos, agree = Counter(), Counter(), [], []
    for ex, g in zip(data.examples, data.gold):
        words = ex.words
        assert g == [i for i, w in enumerate(words) if w in planted], "gold = every planted word"
        sides = {planted[words[i]] for i in g}
        assert len(sides) == 1 and len({words[i] for i in g}) == len(g), "one side, distinct pairs"
        d_idx = [i for i, w in enumerate(words) if w in distractors]
        d_sides = {distractors[words[i]] for i in d_idx}
        assert len(d_sides) == 1 and 1 <= len(d_idx) <= 4
        assert all(w in corpus or w in planted or w in distractors for w in words)
        n_gold[len(g)] += 1
        n_distr[len(d_idx)] += 1
        rel_pos += [i / (len(words) - 1) for i in g]
        agree.append(d_sides == sides)
    # 1-4 planted words, each count about a quarter; the distractors mirror that
    assert set(n_gold) == set(n_distr) == {1, 2, 3, 4}
    assert all(40 < n_gold[k] < 110 and 40 < n_distr[k] < 110 for k in range(1, 5)), (n_gold, n_distr)
    # positions spread over the sentence: every fifth of it holds at least 15% of the gold words
    hist = np.histogram(rel_pos, bins=5, range=(0, 1))[0]
    assert hist.min() > 0.15 * len(rel_pos), hist
    # the distractors' side agrees with the planted (= label) side about half of the time
    assert 0.4 < np.mean(agree) < 0.6
    # the planted side is the label, in dev and training rows alike
    for rows in (data.dev, data.train):
        for (words,), y in rows:
            sides = {planted[w] for w in words if w in planted}
            assert sides in ({y}, set())
    # unplanted training rows (a quarter) carry distractors alone
    unplanted = [words for (words,), _ in data.train if not set(words) & set(planted)]
    assert 0.18 < len(unplanted) / len(data.train) < 0.32
    assert all(set(words) & set(distractors) for words in unplanted)


def test_word_counts_and_places_do_not_give_the_planted_words_away():
    """Over the scored examples each planted word and each distractor occurs about equally often,
    and a guess from the text alone (the new words, the last new word) is no better than chance."""
    data = get_task("planted_sst", n_train=200, n_dev=100, n_eval=600).prepare()
    corpus = corpus_vocabulary()
    freq = Counter(w for ex in data.examples for w in set(ex.words) if w not in corpus)
    shares = {w: c / len(data.examples) for w, c in freq.items()}
    assert set(shares) == {w for pair in PLANTED_PAIRS + DISTRACTOR_PAIRS for w in pair}
    assert max(shares.values()) / min(shares.values()) < 1.5, shares
    last_new = [max(i for i, w in enumerate(ex.words) if w not in corpus) in g
                for ex, g in zip(data.examples, data.gold)]
    assert 0.35 < np.mean(last_new) < 0.65
    new_words = [{i for i, w in enumerate(ex.words) if w not in corpus} for ex in data.examples]
    assert np.mean([len(g) / len(n) for g, n in zip(data.gold, new_words)]) == pytest.approx(0.5, abs=0.05)


def test_a_single_pair_on_the_default_plants_one_word():
    """``planted_words`` with one pair: the variant's counts shrink to what one pair allows."""
    task = get_task("planted_sst", n_train=200, n_dev=50, n_eval=40, planted_words=["zyx", "qwv"])
    assert task.spec.params["n_planted"] == [1] and not task.classic
    data = task.prepare()
    assert all(len(g) == 1 and ex.words[g[0]] in ("zyx", "qwv") for ex, g in zip(data.examples, data.gold))


def test_explainer_facing_examples_carry_no_gold():
    data = get_task("planted_sst", n_train=200, n_dev=50, n_eval=5).prepare()
    assert set(vars(data.examples[0])) == {"id", "segments"}


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="position must be"):
        get_task("planted_sst", position="middle")
    with pytest.raises(ValueError, match="correlation must be in"):
        get_task("planted_sst", correlation=0)
    with pytest.raises(ValueError, match="two different words"):
        get_task("planted_sst", planted_words=("a", "a"))
    with pytest.raises(ValueError, match="two different words"):
        get_task("planted_sst", planted_words=[["a", "b"], ["c", "a"]])
    with pytest.raises(ValueError, match="variant must be one of"):
        get_task("planted_sst", variant="hard")
    with pytest.raises(ValueError, match="n_planted must be counts between 1 and the number of planted pairs"):
        get_task("planted_sst", n_planted=[5])
    with pytest.raises(ValueError, match="distractors mirror"):
        get_task("planted_sst", distractor_words=[["p", "q"]], n_planted=[1, 2])
    with pytest.raises(ValueError, match="must not share a word"):
        get_task("planted_sst", distractor_words=[["positive", "q"], ["r", "s"], ["t", "u"], ["v", "w"]])
    with pytest.raises(ValueError, match="unplanted_train_share must be in"):
        get_task("planted_sst", unplanted_train_share=1.0)
    with pytest.raises(KeyError, match="did you mean 'planted_sst'"):
        get_task("planted_ss")


def test_glue_tsv_reader_errors(tmp_path):
    p = tmp_path / "train.tsv"
    p.write_text("text\tlabel\nfoo\t1\n")
    with pytest.raises(ValueError, match="expected header"):
        read_glue_tsv(p)
    p.write_text("sentence\tlabel\nfoo\n")
    with pytest.raises(ValueError, match=":2: expected 2 tab-separated fields"):
        read_glue_tsv(p)
    with pytest.raises(FileNotFoundError):
        read_glue_tsv(tmp_path / "missing.tsv")


def test_real_sst2_local_folder():
    d = shared_data("sst2")
    rows = read_glue_tsv(d / "train.tsv")
    assert len(rows) == 67349 and rows[0][1] in (0, 1)
    assert len(read_glue_tsv(d / "dev.tsv")) == 872
    task = get_task("planted_sst2", data_dir=str(d), n_eval=100)
    data = task.prepare()
    assert task.spec.dataset.source == "local"
    assert len(data.train) == 8000 and len(data.dev) == 500 and len(data.examples) == 100
    planted = {w for pair in PLANTED_PAIRS for w in pair}
    assert all(g and all(e.words[i] in planted for i in g) for e, g in zip(data.examples, data.gold))
    easy = get_task("planted_sst2", data_dir=str(d), n_eval=100, variant="easy").prepare()
    assert all(e.words[-1] in ("positive", "negative") for e in easy.examples)


def test_hub_loader_code_path_with_local_files(monkeypatch):
    """The hub path (datasets.load_dataset('glue', 'sst2')) fed from local TSVs."""
    import datasets

    d = shared_data("sst2")
    real_load = datasets.load_dataset
    calls = []

    def fake_load(path, name=None, revision=None, **kw):
        calls.append((path, name, revision))
        ds = real_load("csv", data_files={"train": str(d / "train.tsv"), "validation": str(d / "dev.tsv")},
                       delimiter="\t", quoting=3)
        return ds

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    task = get_task("planted_sst2", n_eval=50, n_train=1000)
    assert task.spec.dataset.source == "hub"
    data = task.prepare()
    assert calls and calls[0][:2] == ("glue", "sst2") and calls[0][2] == task.spec.dataset.revision
    assert len(data.examples) == 50
    assert rows_from_records([{"sentence": "a b", "label": 1}]) == [("a b", 1)]
