"""T1 planted-token SST: generated corpus, planting, loaders (local GLUE, hub code path)."""

from collections import Counter

import numpy as np
import pytest

from harness.engine.task import get_task
from tasks.planted_sst.task import read_glue_tsv, rows_from_records
from tasks.planted_sst.corpus import generate_corpus

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
    task = get_task("planted_sst", n_train=400, n_dev=100, n_eval=50)
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
    other = get_task("planted_sst", n_train=400, n_dev=100, n_eval=50, label_seed=99).prepare()
    assert other.data_hash != data.data_hash


@pytest.mark.parametrize("position", ["start", "random"])
def test_planting_positions_and_vocabulary(position):
    task = get_task("planted_sst", n_train=200, n_dev=50, n_eval=40, position=position,
                    planted_words=("zyx", "qwv"))
    data = task.prepare()
    for ex, g in zip(data.examples, data.gold):
        assert ex.words[g[0]] in ("zyx", "qwv")
        if position == "start":
            assert g == [0]
    if position == "random":
        assert len({g[0] for g in data.gold}) > 5


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
    assert all(e.words[-1] in ("positive", "negative") for e in data.examples)


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
