"""The model axis (``attriboard run --models``) over tiny models of several families and sizes,
and explaining a fine-tuned checkpoint as it is (a local folder in hub layout)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.cli.main import main
from harness.engine.records import ResultRecord
from tasks.planted_sst.task import VERSION as PLANTED_VERSION

# the model axis on a small, fast task: the classic one-word planting (variant ``easy``), which
# every family learns from 800 rows (the default variant needs more: it is checked at full size)
SMALL = ["--set", "n_train=800", "--set", "n_dev=100", "--set", "bias_metrics=false", "--set", "variant=easy",
         "--n-eval", "6"]
SUBS = ["random", "gradient", "loo_empty", "integrated_gradients"]


def _run(tmp: Path, *args: str, subs=SUBS) -> int:
    return main(["run", "--tasks", "planted_sst", "--submissions", *subs, "--results-dir", str(tmp / "r"),
                 "--out-dir", str(tmp / "o"), "--cache-dir", str(tmp / "c"), "--isolation", "none", *SMALL, *args])


@pytest.fixture(scope="module")
def axis(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("axis")
    import importlib.util

    models = ["tiny-bert", "tiny-distilbert", "tiny-gpt2", "tiny-xlm-roberta", "tiny:roberta:1x32"]
    labels = ["tiny-bert", "tiny-distilbert", "tiny-gpt2", "tiny-xlm-roberta", "tiny-roberta-1x32"]
    if importlib.util.find_spec("all_minilm_l6_v2") is not None:  # installed by scripts/test.sh
        models.append("minilm")
        labels.append("minilm-l6")
    assert _run(tmp, "--models", *models) == 0
    return tmp, labels


def test_models_axis_writes_a_board_per_model_and_the_cross_model_table(axis):
    from harness.board.boards import build_boards, load_results
    from harness.board.model_axis import cross_model, kendall_pairs

    tmp, labels = axis
    for label in labels:
        recs = sorted((tmp / "r" / "planted_sst" / label).glob("*.json"))
        assert [p.stem for p in recs] == sorted(SUBS), label
        assert all(ResultRecord.read(p).status == "ok" for p in recs)
    board = (tmp / "o" / "LEADERBOARD.md").read_text()
    for label in labels:
        assert f"## planted_sst (v{PLANTED_VERSION}) on {label}" in board
    assert "## planted_sst across models" in board
    assert "Kendall tau-b" in board and "Across models" in (tmp / "o" / "index.html").read_text()
    entry = cross_model(build_boards(load_results(tmp / "r")))["planted_sst"]
    assert entry["models"] == sorted(labels)
    pairs = kendall_pairs(entry)
    assert len(pairs) == len(labels) * (len(labels) - 1) // 2
    # the table's tau is scipy's tau-b of the two models' scores (recomputed here from the records)
    from scipy.stats import kendalltau

    def scores(label):
        return {p.stem: ResultRecord.read(p).scores["gt_overlap"].value
                for p in (tmp / "r" / "planted_sst" / label).glob("*.json")}

    a, b, n, tau, _p = pairs[0]
    sa, sb = scores(a), scores(b)
    common = sorted(set(sa) & set(sb))
    assert n == len(common) == len(SUBS)
    want = kendalltau([sa[s] for s in common], [sb[s] for s in common], variant="b").statistic
    assert tau == pytest.approx(want) or (np.isnan(tau) and np.isnan(want))
    # different families, different tokenizers: the records say which
    descs = {label: ResultRecord.read(tmp / "r" / "planted_sst" / label / "gradient.json").model.description
             for label in labels}
    assert "byte-level BPE" in descs["tiny-gpt2"] and "Unigram" in descs["tiny-xlm-roberta"]
    assert "WordPiece" in descs["tiny-distilbert"] and "1 layers, hidden 32" in descs["tiny-roberta-1x32"]


def test_models_axis_refuses_two_models_with_one_board_name(tmp_path):
    with pytest.raises(SystemExit, match="same board name"):
        _run(tmp_path, "--models", "tiny-roberta", "tiny:roberta")
    with pytest.raises(SystemExit, match="not both"):
        _run(tmp_path, "--models", "tiny-roberta", "--model", "tiny-bert")


def _swapped_checkpoint(axis, out: Path) -> Path:
    """The planted-task DistilBERT of the axis run, saved as a fine-tuned checkpoint whose
    classes are in the other order (as a stranger's checkpoint may be)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tmp, _ = axis
    folder = next(p for p in (tmp / "c" / "models").iterdir()
                  if p.is_dir() and json.loads((p / "attriboard_model.json").read_text())["recipe"]["family"] == "distilbert"
                  and json.loads((p / "attriboard_model.json").read_text())["recipe"]["kind"] == "tiny")
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight.flip(0).clone())
        model.classifier.bias.copy_(model.classifier.bias.flip(0).clone())
    model.config.id2label = {0: "POSITIVE", 1: "NEGATIVE"}
    model.config.label2id = {"POSITIVE": 0, "NEGATIVE": 1}
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(folder).save_pretrained(out)
    return out


def test_a_local_checkpoint_is_explained_as_it_is(axis, tmp_path):
    ckpt = _swapped_checkpoint(axis, tmp_path / "my-sst-model")
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    assert _run(tmp_path, "--model", f"checkpoint:{ckpt}#1,0", subs=["gradient", "loo_empty"]) == 0
    rec = ResultRecord.read(tmp_path / "r" / "planted_sst" / "my-sst-model" / "gradient.json")
    assert rec.status == "ok" and rec.model.dev_accuracy == 1.0
    assert rec.run_spec.model_recipe["label_map"] == [1, 0] and rec.run_spec.model_recipe["kind"] == "checkpoint"
    assert "explained as it is" in rec.model.description and "[1, 0]" in rec.model.description
    meta = json.loads(next((tmp_path / "c" / "models").glob("planted_sst-*/attriboard_model.json")).read_text())
    assert meta["n_train"] == 0 and meta["train_seconds"] == 0.0  # never trained
    assert meta["checkpoint"]["task_label_names"] == {"0": "NEGATIVE", "1": "POSITIVE"}
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before  # the checkpoint folder is untouched
    # the same explanations as the model it was made from (its classes put back in the task's order)
    orig = ResultRecord.read(axis[0] / "r" / "planted_sst" / "tiny-distilbert" / "loo_empty.json")
    mine = ResultRecord.read(tmp_path / "r" / "planted_sst" / "my-sst-model" / "loo_empty.json")
    np.testing.assert_allclose(mine.scores["gt_overlap"].value, orig.scores["gt_overlap"].value)


def test_checkpoint_label_map_is_required_and_checked(axis, tmp_path):
    from harness.models.reference import CheckpointError, ModelNotReadyError, recipe_from, train_reference_model
    from tasks.planted_sst.task import PlantedSST

    ckpt = _swapped_checkpoint(axis, tmp_path / "ckpt")
    data = PlantedSST(n_train=800, n_dev=100, bias_metrics=False, variant="easy").prepare()

    def load(spec):
        return train_reference_model(recipe_from(spec), data.train, data.dev, 2, tmp_path / "c", "t")

    with pytest.raises(CheckpointError, match=r"declare its label mapping.*0=POSITIVE, 1=NEGATIVE"):
        load(f"checkpoint:{ckpt}")
    with pytest.raises(CheckpointError, match="must list each"):
        load(f"checkpoint:{ckpt}#1,1")
    with pytest.raises(CheckpointError, match="must list each"):
        load(f"checkpoint:{ckpt}#0,1,2")
    # the identity map reads the classes backwards: accuracy 0, refused by the task's bar
    with pytest.raises(ModelNotReadyError, match="below the task's bar"):
        load(f"checkpoint:{ckpt}#0,1")
    assert load(f"checkpoint:{ckpt}#1,0").dev_accuracy == 1.0


def test_checkpoint_with_more_classes_than_the_task_is_refused(tmp_path):
    from harness.models.reference import CheckpointError, load_checkpoint, recipe_from
    from harness.testing import tiny_family_model

    tok, model = tiny_family_model("roberta", num_labels=3)
    model.save_pretrained(tmp_path / "three")
    tok.save_pretrained(tmp_path / "three")
    with pytest.raises(CheckpointError, match="has 3 classes .* but the task has 2"):
        load_checkpoint(recipe_from(f"checkpoint:{tmp_path / 'three'}#0,1"), 2)


@pytest.mark.parametrize("family", ["bert", "roberta", "deberta-v2", "llama"])
def test_a_label_map_is_checked_against_the_checkpoints_own_label_names(tmp_path, family):
    """roberta-large-mnli names its classes CONTRADICTION, NEUTRAL, ENTAILMENT: the NLI tasks'
    order (entailment, neutral, contradiction) is its outputs 2, 1, 0, and any other map is refused
    before a single example is explained; checkpoints with generic names (LABEL_0) are not checked."""
    from harness.models.reference import CheckpointError, check_label_names, load_checkpoint, recipe_from
    from harness.testing import tiny_family_model
    from tasks.nli.common import LABELS

    tok, model = tiny_family_model(family, num_labels=3)
    model.config.id2label = {0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.save_pretrained(tmp_path / "nli")
    tok.save_pretrained(tmp_path / "nli")
    with pytest.raises(CheckpointError, match=r"contradicts the checkpoint's own label names .*declare #2,1,0"):
        load_checkpoint(recipe_from(f"checkpoint:{tmp_path / 'nli'}#0,1,2"), 3, LABELS)
    *_, info = load_checkpoint(recipe_from(f"checkpoint:{tmp_path / 'nli'}#2,1,0"), 3, LABELS)
    assert info["label_names_checked"] is True
    assert info["task_label_names"] == {"0": "ENTAILMENT", "1": "NEUTRAL", "2": "CONTRADICTION"}
    # no names to read (the planted task's labels are random; generic LABEL_i): not checked
    *_, info = load_checkpoint(recipe_from(f"checkpoint:{tmp_path / 'nli'}#0,1,2"), 3)
    assert info["label_names_checked"] is False


def test_label_names_by_hand():
    from harness.models.reference import CheckpointError, check_label_names

    sst = ("negative", "positive")
    assert check_label_names("c", {0: "NEGATIVE", 1: "POSITIVE"}, [0, 1], sst)
    assert check_label_names("c", {0: "pos", 1: "neg"}, [1, 0], sst)  # aliases
    with pytest.raises(CheckpointError, match="declare #1,0"):
        check_label_names("c", {0: "pos", 1: "neg"}, [0, 1], sst)
    assert not check_label_names("c", {0: "LABEL_0", 1: "LABEL_1"}, [1, 0], sst)
    assert not check_label_names("c", {0: "NEGATIVE", 1: "NEUTRAL"}, [1, 0], sst)  # other classes: not comparable
    assert not check_label_names("c", {0: "NEGATIVE", 1: "POSITIVE"}, [1, 0], ())


def test_model_presets_for_families_and_checkpoints():
    from harness.models.reference import MODEL_SETS, expand_models, recipe_from

    axis = expand_models(["offline-axis", "tiny-bert"])
    assert axis == list(MODEL_SETS["offline-axis"])
    labels = [recipe_from(m).label for m in axis]
    assert len(set(labels)) == len(labels)
    assert len({recipe_from(m).family for m in axis if recipe_from(m).kind == "tiny"}) >= 4

    r = recipe_from("tiny:llama:4x128")
    assert (r.kind, r.family, r.num_hidden_layers, r.hidden_size, r.label) == ("tiny", "llama", 4, 128, "tiny-llama-4x128")
    assert recipe_from("tiny-bert").kind == "tiny-bert" and recipe_from("tiny:bert").label == "tiny-bert-wp"
    h = recipe_from("hf:roberta-base@4f10b19")
    assert (h.kind, h.hf_name, h.revision, h.label) == ("hf", "roberta-base", "4f10b19", "roberta-base")
    assert recipe_from("hf:roberta-base").revision is None
    from harness.models.mlm import MLMRecipe, mlm_recipe_from

    m = mlm_recipe_from("hf:roberta-base@4f10b19")
    assert (m.hf_name, m.revision) == ("roberta-base", "4f10b19") and m.hash() != mlm_recipe_from("hf:roberta-base").hash()
    assert MLMRecipe().hash() == "39f9a2061d03753f"  # unpinned recipes hash as before revisions existed (caches hold)
    c = recipe_from("checkpoint:org/model@abc123#2,0,1")
    assert (c.checkpoint, c.revision, c.label_map, c.label) == ("org/model", "abc123", (2, 0, 1), "model")
    assert recipe_from('{"kind": "checkpoint", "checkpoint": "x", "label_map": [1, 0]}').label_map == (1, 0)
    with pytest.raises(ValueError, match="unknown model family 'robrta'.*roberta"):
        recipe_from("tiny:robrta")
    with pytest.raises(ValueError, match="<layers>x<hidden>"):
        recipe_from("tiny:bert:big")


def test_the_default_masked_lm_matches_the_hub_classifier(tmp_path):
    """A RoBERTa classifier fine-tuned from a (local, hub-layout) RoBERTa gets that RoBERTa's own
    masked LM, BPE vocabulary included; a decoder gets the paper's bert-base-uncased."""
    import transformers

    from harness.engine.runner import matching_mlm
    from harness.models.mlm import build_task_mlm
    from harness.models.reference import recipe_from
    from harness.testing import TINY_SENTENCES, tiny_family_model

    tok, clf = tiny_family_model("roberta")
    mlm_model = transformers.RobertaForMaskedLM(clf.config)
    mlm_model.save_pretrained(tmp_path / "roberta-tiny")
    tok.save_pretrained(tmp_path / "roberta-tiny")
    choice = matching_mlm(recipe_from(f"hf:{tmp_path / 'roberta-tiny'}"))
    assert choice == f"hf:{tmp_path / 'roberta-tiny'}"
    mlm = build_task_mlm(choice, [], None)
    fills = mlm.top_fills([TINY_SENTENCES[0]], [[1]], k=5)[0][0]
    assert len(fills) == 5 and not any(w.startswith("Ġ") for w, _ in fills)
    tok2, gpt = tiny_family_model("gpt2")
    gpt.save_pretrained(tmp_path / "gpt2-tiny")
    tok2.save_pretrained(tmp_path / "gpt2-tiny")
    assert matching_mlm(recipe_from(f"hf:{tmp_path / 'gpt2-tiny'}")) == "bert-base-uncased"
    assert matching_mlm(recipe_from("tiny-roberta")) == "tiny" and matching_mlm(recipe_from("bert-base-uncased")) == "bert-base-uncased"
    # a pinned encoder gets its own masked LM at the same commit; a hub checkpoint the paper's bert-base-uncased,
    # a local checkpoint folder the offline tiny one
    assert matching_mlm(recipe_from("hf:bert-base-uncased@abc1234")) == "hf:bert-base-uncased@abc1234"
    assert matching_mlm(recipe_from(f"hf:{tmp_path / 'roberta-tiny'}@abc1234")) == f"hf:{tmp_path / 'roberta-tiny'}@abc1234"
    assert matching_mlm(recipe_from("checkpoint:textattack/bert-base-uncased-MNLI#1,2,0")) == "bert-base-uncased"
    assert matching_mlm(recipe_from(f"checkpoint:{tmp_path / 'roberta-tiny'}#0,1")) == "tiny"
