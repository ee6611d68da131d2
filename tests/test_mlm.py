"""The run's masked LM (harness/models/mlm.py): fills, candidates, counting, training, caching, wiring."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from harness.models.bundle import CallCounter
from harness.models.mlm import (MLMRecipe, WordMaskedLM, attach_mlm, build_task_mlm, mlm_recipe_from, tiny_masked_lm)
from harness.protocols import MaskedLM
from harness.engine.records import MaskedLMInfo, ResultRecord
from harness.testing import TINY_SENTENCES, tiny_bundle, tiny_mlm

# a corpus where "the" always opens and "was" always follows the noun: easy to restore
NOUNS = ["film", "movie", "plot", "cast", "story", "script"]
ADJS = ["good", "great", "dull", "boring", "warm", "flat"]
CORPUS = [((("the", n, "was", a),), i % 2) for i, (n, a) in enumerate((n, a) for n in NOUNS for a in ADJS)] * 6
FAST = MLMRecipe(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=32, max_length=32, epochs=30, batch_size=32, lr=1e-2)


def _threads1():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    return threads


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cache = tmp_path_factory.mktemp("mlm-cache")
    threads = _threads1()
    try:
        mlm = build_task_mlm(FAST, CORPUS, cache, name="toy")
    finally:
        torch.set_num_threads(threads)
    return mlm, cache


def test_implements_the_protocol(trained):
    mlm, _ = trained
    assert isinstance(mlm, MaskedLM) and isinstance(tiny_mlm(), MaskedLM)
    assert mlm.name == "tiny-mlm" and "trained on the task's 216 training sequences" in mlm.description


def test_restores_frequent_words(trained):
    mlm, _ = trained
    segs = [(("the", "plot", "was", "dull"),), (("the", "cast", "was", "warm"),)]
    fills = mlm.top_fills(segs, [[0], [2]], k=3)
    assert fills[0][0][0][0] == "the" and fills[0][0][0][1] > 0.5
    assert fills[1][0][0][0] == "was" and fills[1][0][0][1] > 0.5
    # probabilities best first, in (0, 1], at most the masked LM's mass
    for f in fills:
        ps = [p for _, p in f[0]]
        assert ps == sorted(ps, reverse=True) and 0 < sum(ps) <= 1 + 1e-9 and len(ps) == 3


def test_masks_all_positions_at_once_and_validates(trained):
    mlm, _ = trained
    segs = (("the", "plot", "was", "dull"),)
    fills = mlm.top_fills([segs, segs], [[0, 2], []], k=2)
    assert len(fills[0]) == 2 and fills[1] == []
    with pytest.raises(ValueError, match="out of range"):
        mlm.top_fills([segs], [[4]], k=1)
    with pytest.raises(ValueError, match="k must be"):
        mlm.top_fills([segs], [[0]], k=0)


def test_candidates_exclude_special_tokens_and_unk(trained):
    mlm, _ = trained
    special = set(mlm.tokenizer.all_special_tokens) | {mlm.tokenizer.unk_token}
    fills = mlm.top_fills([(("the", "plot", "was", "dull"),)] * 4, [[0], [1], [2], [3]], k=len(mlm.tokenizer))
    for f in fills:
        words = [w for w, _ in f[0]]
        assert not special & set(words)
        assert len(words) == len(mlm.tokenizer) - len(special)


def test_counts_each_sequence_into_the_bound_counter(trained):
    mlm, _ = trained
    counter = CallCounter()
    bound = mlm.bind(counter)
    assert bound.model is mlm.model and mlm.counter is None
    segs = (("the", "plot", "was", "dull"),)
    bound.top_fills([segs] * 3, [[0], [1], [1, 2]], k=1)
    assert counter.snapshot() == (0, 0, 3)
    bound.top_fills([segs], [[]], k=1)  # nothing masked: nothing through the model
    assert counter.mlm == 3
    bundle = tiny_bundle()
    attach_mlm(bundle, mlm)
    bundle.mlm.top_fills([segs], [[0]], k=1)
    assert bundle.counter.mlm == 1 and counter.mlm == 3


def test_is_cached_on_disk_by_recipe_and_corpus(trained):
    mlm, cache = trained
    (path,) = [p for p in (cache / "mlm").iterdir() if p.is_dir()]  # (and its .lock file)
    assert path.name.startswith("toy-" + FAST.hash())
    meta = json.loads((path / "attriboard_mlm.json").read_text())
    assert meta["recipe"] == FAST.model_dump() and meta["n_train"] == len(CORPUS)
    again = build_task_mlm(FAST, CORPUS, cache, name="toy")  # loads: no training
    assert again.model_hash == mlm.model_hash
    segs = [(("the", "plot", "was", "dull"),)]
    assert again.top_fills(segs, [[1]], 3) == mlm.top_fills(segs, [[1]], 3)
    # another corpus is another model
    assert len([p for p in (cache / "mlm").iterdir() if p.is_dir()]) == 1


def test_a_word_becomes_one_mask_and_pieces_are_not_candidates(tmp_path):
    """A WordPiece vocabulary like bert-base-uncased's: '##' pieces, [unused] slots, specials."""
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "was", "good", "gr",
             "##eat", "##s", "dull"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(str(tmp_path / "vocab.txt"), do_lower_case=True)
    model = tiny_masked_lm(len(vocab), FAST).eval()
    mlm = WordMaskedLM(model, tok, "wp", "word-piece test", "-", max_length=32)
    seen = []
    real = model.forward

    def spy(*args, **kwargs):
        seen.append(kwargs["input_ids"].clone())
        return real(*args, **kwargs)

    model.forward = spy
    fills = mlm.top_fills([(("the", "greats", "was", "good"),)], [[1]], k=20)
    ids = seen[0][0].tolist()
    assert ids.count(tok.mask_token_id) == 1 and len(ids) == 6  # [CLS] the [MASK] was good [SEP]
    words = {w for w, _ in fills[0][0]}
    assert words == {"the", "film", "was", "good", "gr", "dull"}  # no ##pieces, [unused0], specials


def test_recipes_and_presets():
    assert mlm_recipe_from(None) == MLMRecipe() and MLMRecipe().kind == "tiny"
    assert mlm_recipe_from("bert-base-uncased").kind == "hf"
    assert mlm_recipe_from("hf:distilbert-base-uncased").hf_name == "distilbert-base-uncased"
    assert mlm_recipe_from({"epochs": 3}).epochs == 3
    with pytest.raises(ValueError, match="did you mean"):
        mlm_recipe_from("tinyy")
    assert MLMRecipe(epochs=3).hash() != MLMRecipe().hash()


def test_runner_picks_the_masked_lm(monkeypatch):
    from harness.engine.runner import RunConfig, mlm_choice
    from harness.engine.task import get_task

    tiny = get_task("planted_sst", n_train=100, n_dev=50, n_eval=8)
    hub = get_task("planted_sst", n_train=100, n_dev=50, n_eval=8, model="bert-base-uncased")
    assert mlm_choice(tiny, RunConfig()) == "tiny"
    assert mlm_choice(hub, RunConfig()) == "bert-base-uncased"
    assert mlm_choice(tiny, RunConfig(mlm="bert-base-uncased")) == "bert-base-uncased"
    assert mlm_choice(hub, RunConfig(mlm="none")) is None


def test_records_carry_the_masked_lm_and_load_without_it(small_ctx, tmp_path):
    from harness.engine.runner import RunConfig, run_submission
    from harness.core.submission import resolve

    assert small_ctx.ref.bundle.mlm is not None and small_ctx.mlm.name == "tiny-mlm"
    rec = run_submission(resolve("input_marginalization"), small_ctx,
                         RunConfig(results_dir=tmp_path, cache_dir=tmp_path / "c", batch_size=8))
    assert rec.status == "ok", rec.error
    assert rec.mlm == MaskedLMInfo(name="tiny-mlm", description=small_ctx.mlm.description,
                                   model_hash=small_ctx.mlm.model_hash, recipe_hash=MLMRecipe().hash())
    assert rec.cost.mlm_per_example == pytest.approx(
        np.mean([e.n_words for e in small_ctx.data.examples]))  # one masked sequence per word
    raw = json.loads(rec.model_dump_json())
    assert ResultRecord.model_validate(raw) == rec
    raw.pop("mlm")
    assert ResultRecord.model_validate(raw).mlm is None  # older records load
    raw["mlm"] = {"name": "x", "description": "y", "model_hash": "z", "extra": 1}
    with pytest.raises(Exception, match="extra"):
        ResultRecord.model_validate(raw)


def test_leaderboard_shows_mlm_calls(small_ctx, tmp_path):
    from harness.board import leaderboard
    from harness.engine.runner import RunConfig, run_submission
    from harness.core.submission import resolve

    config = RunConfig(results_dir=tmp_path / "r", cache_dir=tmp_path / "c", batch_size=8)
    for name in ("input_marginalization", "random"):
        rec = run_submission(resolve(name), small_ctx, config)
        rec.write(tmp_path / "r" / "planted_sst" / "tiny-bert" / f"{name}.json")
    a = leaderboard.build(tmp_path / "r", tmp_path / "a")
    b = leaderboard.build(tmp_path / "r", tmp_path / "b")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    md = (tmp_path / "a" / "LEADERBOARD.md").read_text()
    assert "| fwd/ex | bwd/ex | mlm/ex |" in md and "Masked LM: tiny-mlm" in md
    lines = md.splitlines()
    head = next(line for line in lines if line.startswith("| rank | submission") and "mlm/ex" in line)
    col = [c.strip() for c in head.split("|")].index("mlm/ex")
    cells = {[c.strip() for c in line.split("|")][2]: [c.strip() for c in line.split("|")]
             for line in lines if line.startswith("| ") and "[json]" in line}
    assert float(cells["input_marginalization"][col]) > 1 and float(cells["random"][col]) == 0
    header = (tmp_path / "a" / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert header.index("mlm_per_example") == header.index("backward_per_example") + 1


def test_tiny_test_mlm_is_attached_and_trained():
    bundle = tiny_bundle()
    assert bundle.mlm is not None and bundle.mlm.counter is bundle.counter
    fills = bundle.mlm.top_fills([TINY_SENTENCES[0]], [[0]], k=2)
    assert fills[0][0][0][0] == "the"
    assert tiny_bundle(mlm=False).mlm is None


def test_literal_mask_word_in_the_text_is_not_confused_with_a_masked_position(trained):
    mlm, _ = trained
    segs = (("the", "[MASK]", "was", "dull"),)  # a literal [MASK] word at position 1
    fills = mlm.top_fills([segs], [[2]], k=1)
    ref = mlm.top_fills([(("the", "[MASK]", "[MASK]", "dull"),)], [[1, 2]], k=1)
    assert len(fills[0]) == 1 and fills[0][0] == ref[0][1]


def test_fast_encoding_equals_the_tokenizers_own_call(tmp_path):
    """harness.models.encoding's Rust-backend path gives exactly what tokenizer(...) gives."""
    import random

    from transformers import BertTokenizerFast

    from harness.models import encoding as E
    from harness.models.reference import build_word_tokenizer

    vocab = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "was", "good", "gr",
             "##eat", "##s", "dull"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    toks = [build_word_tokenizer(["the", "film", "was", "good", "a"], 16),
            BertTokenizerFast(str(tmp_path / "vocab.txt"), do_lower_case=True, model_max_length=16)]
    words = ["the", "film", "Was", "GOOD", "greats", "great", "zzz", "a", "dull", "[MASK]"]
    rng = random.Random(0)
    for tok in toks:
        tok("a b", truncation=True, max_length=3, padding="max_length")  # settings left on the backend
        settings = (tok.backend_tokenizer.truncation, tok.backend_tokenizer.padding)
        for n_seg in (1, 2):
            for _ in range(25):
                batch = [tuple(tuple(rng.choice(words) for _ in range(rng.randint(0, 9))) for _ in range(n_seg))
                         for _ in range(rng.randint(1, 4))]
                fast = E.encode(tok, batch, 12)
                if not any(fast.truncated):  # (refitting an over-long input calls the tokenizer itself)
                    assert (tok.backend_tokenizer.truncation, tok.backend_tokenizer.padding) == settings
                real = E._backend
                E._backend = lambda t: None
                try:
                    ref = E.encode(tok, batch, 12)
                finally:
                    E._backend = real
                tok("a b", truncation=True, max_length=3, padding="max_length")
                for f in ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask"):
                    assert torch.equal(getattr(fast, f), getattr(ref, f)), (f, batch)
                assert (fast.word_ids, fast.segments, fast.truncated) == (ref.word_ids, ref.segments, ref.truncated)
