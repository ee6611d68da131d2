"""Encoding on model families other than BERT (a first part of the model-family issue):
DistilBERT takes no token types; a byte-level BPE tokenizer (RoBERTa) must add the space marker
to every word of pre-tokenized input.  Tiny random models from configs, tokenizers trained in
memory; word alignment checked against the tokenizer's own call."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.core.outputs import check_attributions, word_maps
from harness.models.bundle import ModelBundle
from harness.models.encoding import _backend, encode, uses_token_types
from harness.testing import TINY_PAIRS, TINY_SENTENCES

TEXTS = [" ".join(w for s in segs for w in s) for segs in TINY_SENTENCES + TINY_PAIRS] + [
    "café , naïve 42 résumé !", "don't stop - 3.5 stars"]
ROWS = list(TINY_SENTENCES) + [(tuple("café , naïve 42 résumé !".split()),)]


def _bpe_tokenizer(add_prefix_space: bool):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXTS * 5, vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    return RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                add_prefix_space=add_prefix_space)


def _wordpiece_tokenizer(cls):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(TEXTS * 5, trainers.WordPieceTrainer(
        vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return cls(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
               mask_token="[MASK]")


def _own_call(tokenizer, rows):
    n_seg = len(rows[0])
    args = [[list(r[k]) for r in rows] for k in range(n_seg)]
    return tokenizer(*args, is_split_into_words=True, padding=True, truncation=False, return_tensors="pt")


def test_roberta_words_keep_their_space_marker_and_match_the_tokenizer():
    tok = _bpe_tokenizer(add_prefix_space=True)
    assert _backend(tok) is not None and not uses_token_types(tok)
    for rows in (ROWS, list(TINY_PAIRS)):
        enc, own = encode(tok, rows, 64), _own_call(tok, rows)
        assert torch.equal(enc.input_ids, own["input_ids"]) and enc.token_type_ids is None
        # every word starts with the byte-level space marker, not only the first one
        for i, r in enumerate(rows):
            first = {w: j for j, w in reversed(list(enumerate(enc.word_ids[i]))) if w is not None}
            starts = [tok.convert_ids_to_tokens(int(enc.input_ids[i, j])) for _, j in sorted(first.items())]
            assert len(starts) == sum(len(s) for s in r) and all(t.startswith("Ġ") for t in starts), starts


def test_roberta_without_prefix_space_is_refused_not_silently_wrong():
    tok = _bpe_tokenizer(add_prefix_space=False)
    assert _backend(tok) is None  # the fast path would drop the marker of every word but the first
    with pytest.raises(Exception, match="add_prefix_space"):
        encode(tok, ROWS, 64)


def test_load_tokenizer_adds_the_prefix_space(tmp_path):
    from harness.models.reference import load_tokenizer

    _bpe_tokenizer(add_prefix_space=False).save_pretrained(tmp_path / "bpe")
    tok = load_tokenizer(tmp_path / "bpe")
    assert tok.add_prefix_space is True and _backend(tok) is not None
    assert torch.equal(encode(tok, ROWS, 64).input_ids, _own_call(tok, ROWS)["input_ids"])
    # a WordPiece tokenizer is loaded as saved: same pre-tokenizer, same ids
    from transformers import BertTokenizerFast

    wp = _wordpiece_tokenizer(BertTokenizerFast)
    wp.save_pretrained(tmp_path / "wp")
    again = load_tokenizer(tmp_path / "wp")
    assert again.backend_tokenizer.pre_tokenizer.__getstate__() == wp.backend_tokenizer.pre_tokenizer.__getstate__()
    assert torch.equal(encode(again, ROWS, 64).input_ids, encode(wp, ROWS, 64).input_ids)


def test_distilbert_gets_no_token_types_and_runs():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertTokenizerFast

    from harness.core.submission import resolve

    tok = _wordpiece_tokenizer(DistilBertTokenizerFast)
    assert not uses_token_types(tok)
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=len(tok), dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64,
        num_labels=2)).eval()
    bundle = ModelBundle(model, tok, "tiny-distilbert", 2, 64)
    for rows in (ROWS, list(TINY_PAIRS)):
        enc = encode(tok, rows, 64)
        assert enc.token_type_ids is None
        assert torch.equal(enc.input_ids, _own_call(tok, rows)["input_ids"])
        p = bundle.proba_of_segments(rows)
        assert p.shape == (len(rows), 2) and np.allclose(p.sum(1), 1.0)
    # a model-agnostic explainer runs on it: leave-one-out, one map entry per word
    batch = bundle.make_batch(ROWS, [0] * len(ROWS), seed=0)
    attr = resolve("leave_one_out").instantiate().explain(bundle, batch)
    maps = word_maps(attr, check_attributions(attr, batch), batch, "absmax")  # the harness's own output checks
    assert [len(m) for m in maps] == [sum(len(s) for s in r) for r in ROWS]
    assert all(np.isfinite(m).all() for m in maps) and any(np.abs(m).sum() > 0 for m in maps)
