"""Encode once (harness.models.pieces): a perturbed input composed from the word pieces already
seen has exactly the ids, attention, token types, special-token mask and word alignment of
tokenizing it, on WordPiece, byte-level BPE and Unigram (SentencePiece) tokenizers of every
family and on the hub tokenizer classes; unknown words, over-long rows and empty rows go
through the tokenizer; a tokenizer that tokenizes one word two ways switches the memo off."""

import numpy as np
import pytest
import torch

from harness.models import pieces
from harness.models.encoding import encode
from harness.testing import tiny_family_model, tiny_texts

from test_families import ALIGN_PAIRS, ALIGN_ROWS, FAMILIES, HUB_TOKENIZERS, hub_tokenizer

WORDS = " ".join(tiny_texts()).split()


def _variants(rows, rng, n=40):
    """Deletions (the first word too), replacements by other seen words, reorders, emptied segments."""
    seen = sorted({w for r in rows for s in r for w in s})
    out = []
    for _ in range(n):
        r = rows[rng.integers(len(rows))]
        kind = rng.integers(4)
        segs = []
        for s in r:
            s = list(s)
            if kind == 0:
                s = [w for w in s if rng.random() > 0.4]
            elif kind == 1 and s:
                s[rng.integers(len(s))] = seen[rng.integers(len(seen))]
            elif kind == 2:
                s = list(rng.permutation(s))
            elif kind == 3 and rng.random() < 0.5:
                s = []
            segs.append(tuple(str(w) for w in s))
        out.append(tuple(segs))
    return out


def _same(a, b, where):
    assert torch.equal(a.input_ids, b.input_ids), where
    assert torch.equal(a.attention_mask, b.attention_mask), where
    assert (a.token_type_ids is None) == (b.token_type_ids is None), where
    if a.token_type_ids is not None:
        assert torch.equal(a.token_type_ids, b.token_type_ids), where
    assert torch.equal(a.special_tokens_mask, b.special_tokens_mask), where
    assert a.word_ids == b.word_ids and a.segments == b.segments and a.truncated == b.truncated, where


def _check(tok, rows, max_length=64):
    memo = pieces.memo_for(tok)
    encode(tok, rows, max_length)  # the originals: tokenized once, learned
    before = memo.composed
    rng = np.random.default_rng(0)
    for b in range(6):
        batch = _variants(rows, rng)
        _same(encode(tok, batch, max_length), encode(tok, batch, max_length, memo=False), (b, batch[:3]))
    assert memo.disabled is None, memo.disabled
    assert memo.composed > before  # most variants were composed, not tokenized
    return memo


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_composed_equals_tokenized_on_every_family(family):
    tok, _ = tiny_family_model(family)
    pieces._MEMOS.pop(tok, None)
    singles = ALIGN_ROWS + [(tuple(WORDS[i:i + 12]),) for i in range(0, 120, 12)]
    m1 = _check(tok, singles)
    m2 = _check(tok, ALIGN_PAIRS + [(tuple(WORDS[i:i + 6]), tuple(WORDS[i + 6:i + 11])) for i in range(0, 60, 11)])
    assert m1 is m2 and set(m1.templates) == {1, 2}
    assert m1.composed > m1.tokenized  # composed rows outnumber tokenized ones


@pytest.mark.parametrize("cls_name", HUB_TOKENIZERS)
def test_composed_equals_tokenized_with_the_hub_tokenizer_classes(cls_name, tmp_path):
    tok = hub_tokenizer(cls_name, tmp_path)
    _check(tok, ALIGN_ROWS + [(tuple(WORDS[i:i + 12]),) for i in range(0, 96, 12)])
    _check(tok, ALIGN_PAIRS)


def test_unknown_words_long_rows_and_empty_rows_are_tokenized():
    tok, _ = tiny_family_model("gpt2")  # no special tokens: an empty row gets the filler token
    pieces._MEMOS.pop(tok, None)
    rows = [(tuple(WORDS[:10]),)]
    memo = pieces.memo_for(tok)
    encode(tok, rows, 64)
    assert memo.compose(rows[0], 64) is not None
    assert memo.compose((("zyzzyva",) + rows[0][0],), 64) is None  # a new word
    assert memo.compose(((),), 64) is None  # encodes to nothing: the tokenizer's path adds the filler
    assert memo.compose(rows[0], 3) is None  # needs truncation: the policy applies
    for batch, L in ([((),), rows[0]], 64), ([rows[0] * 1, (tuple(WORDS[:60]),)], 24):
        _same(encode(tok, batch, L), encode(tok, batch, L, memo=False), batch)
    e = encode(tok, [(tuple(WORDS[:60]),)], 24)
    assert e.truncated == [True] and int(e.attention_mask.sum()) <= 24


def test_a_word_tokenized_two_ways_switches_the_memo_off():
    memo = pieces.PieceMemo(10)
    memo.learn((("a", "b"),), [1, 5, 6, 2], [0, 0, 0, 0], [None, 0, 1, None], [None, 0, 0, None])
    assert memo.compose((("b", "a"),), 64) is None  # "b" never seen first, "a" never seen later
    assert memo.compose((("a", "b", "b"),), 64) == ([1, 5, 6, 6, 2], [0] * 5, [1, 0, 0, 0, 1], [None, 0, 1, 2, None])
    memo.learn((("a", "b"),), [1, 5, 7, 2], [0, 0, 0, 0], [None, 0, 1, None], [None, 0, 0, None])
    assert memo.disabled and "'b'" in memo.disabled and memo.compose((("a",),), 64) is None


def test_encode_once_is_fast():
    """Not a timing test: the composed path must not call the tokenizer at all."""
    tok, _ = tiny_family_model("bert")
    pieces._MEMOS.pop(tok, None)
    rows = [(tuple(WORDS[i:i + 20]),) for i in range(0, 200, 20)]
    encode(tok, rows, 64)
    calls = []
    real = tok.backend_tokenizer.encode_batch
    backend = tok.backend_tokenizer

    class Spy:
        def __getattr__(self, k):
            return getattr(backend, k)

        def encode_batch(self, *a, **k):
            calls.append(1)
            return real(*a, **k)

    from harness.models import encoding

    orig = encoding._backend
    encoding._backend = lambda t: Spy() if t is tok else orig(t)
    try:
        encode(tok, [(tuple(w for j, w in enumerate(r[0]) if j == 0 or j % 3),) for r in rows], 64)
        assert calls == []  # deletions keeping each first word: all composed
        dropped_first = [(r[0][1:],) for r in rows]  # the second word now starts the input: a new position class
        encode(tok, dropped_first, 64)
        encode(tok, dropped_first, 64)
        assert calls == [1]  # tokenized (and learned) once
        encode(tok, [(("zyzzyva",) + rows[0][0],)], 64)
        assert calls == [1, 1]
    finally:
        encoding._backend = orig
