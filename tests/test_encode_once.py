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

WORDS = " ".join(tiny_texts()).split() * 3


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


# -- deletions composed from keep masks (harness.models.removal.kept_batches) --------------------

def _kept_bundle(family, max_length=64, batch_size=7):
    from harness.models.bundle import ModelBundle

    tok, model = tiny_family_model(family)
    pieces._MEMOS.pop(tok, None)
    return ModelBundle(model.eval(), tok, f"tiny-{family}", 2, max_length=max_length, predict_batch_size=batch_size)


def _kept_cases(rng):
    """Rows of several inputs interleaved (as the length-sorted callers send them): random keep
    masks, the first word(s) dropped, everything dropped, one segment emptied, repeated inputs."""
    singles = [(tuple(WORDS[i:i + 9]),) for i in range(0, 90, 9)] + [(("the", "the", "cat", "the"),)]
    pairs = [(tuple(WORDS[i:i + 5]), tuple(WORDS[i + 5:i + 9])) for i in range(0, 60, 9)]
    out = []
    for inputs in (singles, pairs):
        segs, keeps = [], []
        for _ in range(60):
            x = inputs[rng.integers(len(inputs))]
            n = sum(len(s) for s in x)
            kind = rng.integers(5)
            keep = rng.random(n) > 0.5
            if kind == 1:
                keep[: rng.integers(1, n)] = False
            elif kind == 2:
                keep[:] = False
            elif kind == 3 and len(x) == 2:
                keep[: len(x[0])] = False
            elif kind == 4:
                keep[:] = True
            segs.append(x)
            keeps.append(keep)
        out.append((segs, keeps))
    return out


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_deletions_composed_from_masks_equal_tokenizing_the_word_lists(family):
    from harness.explain_utils import keep_words
    from harness.models.encoding import uses_token_types
    from harness.models.removal import kept_batches

    bundle = _kept_bundle(family)
    memo = pieces.memo_for(bundle.tokenizer)
    for segs, keeps in _kept_cases(np.random.default_rng(1)):
        got = list(kept_batches(bundle, segs, keeps))
        bs = bundle.predict_batch_size
        assert len(got) == -(-len(segs) // bs)
        for c, (ids, att, tt) in enumerate(got):
            rows = [keep_words(s, k) for s, k in zip(segs[c * bs:(c + 1) * bs], keeps[c * bs:(c + 1) * bs])]
            ref = encode(bundle.tokenizer, rows, bundle.max_length, memo=False)
            where = (family, c, rows[:2])
            assert torch.equal(ids, ref.input_ids), where
            assert torch.equal(att, ref.attention_mask), where
            assert (tt is None) == (not uses_token_types(bundle.tokenizer)), where
            if tt is not None:
                assert torch.equal(tt, ref.token_type_ids), where
    assert memo.disabled is None and memo.composed > 0


def test_deletions_from_masks_fall_back_for_long_inputs_and_the_memo_off(monkeypatch):
    """An input longer than max_length (the truncation policy applies) and encode-once switched
    off both give the tokenizer's tensors; the probabilities equal the word-list path's."""
    from harness.explain_utils import keep_words
    from harness.models.removal import kept_batches, removed_proba

    bundle = _kept_bundle("roberta", max_length=12, batch_size=4)
    long_, short = (tuple(WORDS[:30]),), (tuple(WORDS[30:36]),)
    rng = np.random.default_rng(2)
    segs = [long_, short] * 5
    keeps = [rng.random(sum(len(s) for s in x)) > 0.3 for x in segs]
    for enabled in (True, False):
        monkeypatch.setattr(pieces, "ENABLED", enabled)
        for c, (ids, att, _) in enumerate(kept_batches(bundle, segs, keeps)):
            rows = [keep_words(s, k) for s, k in zip(segs[c * 4:(c + 1) * 4], keeps[c * 4:(c + 1) * 4])]
            ref = encode(bundle.tokenizer, rows, bundle.max_length, memo=False)
            assert torch.equal(ids, ref.input_ids) and torch.equal(att, ref.attention_mask)
        p = removed_proba(bundle, segs, [~k for k in keeps], "delete")
        q = bundle.proba_of_segments([keep_words(s, k) for s, k in zip(segs, keeps)])
        np.testing.assert_array_equal(p, q)


def test_lime_and_shap_rows_from_masks_make_no_tokenizer_call():
    """Once an input's words are known, LIME's and Kernel SHAP's coalitions go to the model
    without any tokenizer call (the spy counts backend calls)."""
    from harness.core.submission import resolve
    from harness.models import encoding

    bundle = _kept_bundle("bert", batch_size=64)
    tok = bundle.tokenizer
    segs = [(tuple(WORDS[i:i + 12]),) for i in range(0, 48, 12)]
    batch = bundle.make_batch(segs)
    calls = []
    backend, real = tok.backend_tokenizer, tok.backend_tokenizer.encode_batch

    class Spy:
        def __getattr__(self, k):
            return getattr(backend, k)

        def encode_batch(self, *a, **k):
            calls.append(1)
            return real(*a, **k)

    orig = encoding._backend
    encoding._backend = lambda t: Spy() if t is tok else orig(t)
    try:
        for name in ("lime", "kernel_shap"):
            explainer = resolve(name).instantiate()
            explainer.explain(bundle, batch)  # first-of-segment pieces of later words learned here
            calls.clear()
            explainer.explain(bundle, batch)
            assert calls == [], name
    finally:
        encoding._backend = orig


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_long_single_inputs_are_truncated_from_pieces_exactly(family):
    """A single-segment row over max_length is cut by the truncation policy from its pieces (its
    trailing kept words dropped until it fits): the same tensors as tokenizing the word list."""
    from harness.explain_utils import keep_words
    from harness.models.removal import kept_batches

    bundle = _kept_bundle(family, max_length=16, batch_size=8)
    memo = pieces.memo_for(bundle.tokenizer)
    long_ = (tuple(WORDS[:40]),)
    encode(bundle.tokenizer, [long_], bundle.max_length)  # the original, as the harness encodes it first
    rng = np.random.default_rng(3)
    keeps = [rng.random(40) > p for p in np.linspace(0.0, 0.9, 24)]
    keeps[0][:] = True
    segs = [long_] * len(keeps)
    before = memo.composed
    for c, (ids, att, _) in enumerate(kept_batches(bundle, segs, keeps)):
        rows = [keep_words(s, k) for s, k in zip(segs[c * 8:(c + 1) * 8], keeps[c * 8:(c + 1) * 8])]
        ref = encode(bundle.tokenizer, rows, bundle.max_length, memo=False)
        assert torch.equal(ids, ref.input_ids) and torch.equal(att, ref.attention_mask), (family, c)
    assert memo.composed - before == len(keeps)  # composed, not tokenized
    assert int(ref.attention_mask.sum(1).max()) <= bundle.max_length


def test_removal_rows_that_encode_alike_go_to_the_model_once():
    """Deleting words past the truncation window leaves the row's tokens unchanged: such rows are
    forwarded once, and every row still gets the probabilities of its own word list."""
    from harness.explain_utils import keep_words
    from harness.models.removal import removed_proba

    bundle = _kept_bundle("bert", max_length=16, batch_size=8)
    long_ = (tuple(WORDS[:40]),)
    removes = []
    for j in range(39, 19, -1):  # delete trailing words one by one: all past the 16-token window
        r = np.zeros(40, dtype=bool)
        r[j:] = True
        removes.append(r)
    removes.append(np.r_[True, np.zeros(39, dtype=bool)])  # the first word: a different row
    rows_sent = []
    real = bundle.proba

    def counting(ids, *a, **k):
        rows_sent.append(ids.shape[0])
        return real(ids, *a, **k)

    bundle.proba = counting
    p = removed_proba(bundle, [long_] * len(removes), removes, "delete")
    bundle.proba = real
    assert sum(rows_sent) == 2
    q = bundle.proba_of_segments([keep_words(long_, ~r) for r in removes])
    np.testing.assert_allclose(p, q, atol=1e-6)
    assert np.abs(p[:-1] - p[0]).max() == 0 and np.abs(p[-1] - p[0]).max() > 0


def test_dedup_of_wide_rows():
    """Rows of an input that repeat are sent once, on rows as wide as the model allows (the first
    version used numpy's unique over rows, which failed on the default run's LIME rows)."""
    from harness.explain_utils import keep_words
    from harness.models.removal import removed_proba

    bundle = _kept_bundle("bert", max_length=64, batch_size=16)
    x = (tuple((WORDS * 2)[:50]),)
    rng = np.random.default_rng(5)
    removes = [rng.random(50) > 0.9 for _ in range(6)]
    removes = removes + removes[:3]
    p = removed_proba(bundle, [x] * len(removes), removes, "delete")
    q = bundle.proba_of_segments([keep_words(x, ~r) for r in removes])
    np.testing.assert_allclose(p, q, atol=1e-6)
    np.testing.assert_array_equal(p[6:], p[:3])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_composing_many_inputs_at_once_equals_composing_each(family):
    """compose_kept_many gives, input by input, exactly what compose_kept gives: inputs with
    random masks, an emptied row, a pair with one segment dropped, a word never seen (None),
    an input without rows, and single inputs and pairs over max_length (the policy / None)."""
    bundle = _kept_bundle(family, max_length=20)
    tok = bundle.tokenizer
    memo = pieces.memo_for(tok)
    rng = np.random.default_rng(4)
    singles = [(tuple(WORDS[i:i + 7]),) for i in range(0, 70, 7)] + [(tuple(WORDS[100:130]),)]
    pairs = [(tuple(WORDS[i:i + 4]), tuple(WORDS[i + 4:i + 9])) for i in range(0, 45, 9)] + \
        [(tuple(WORDS[130:145]), tuple(WORDS[145:160]))]
    encode(tok, singles, 512)  # every word's pieces and both templates learned
    encode(tok, pairs, 512)
    for x in singles + pairs:  # first-of-segment pieces of every word
        for k, seg in enumerate(x):
            encode(tok, [x[:k] + (seg[j:],) + x[k + 1:] for j in range(len(seg))], 512)
    unseen = (("zzqx-never-seen",) + tuple(WORDS[:3]),)
    items = []
    for x in singles + pairs + [unseen]:
        n = sum(len(s) for s in x)
        k = rng.random((int(rng.integers(1, 9)), n)) > 0.4
        k[0] = True
        if rng.random() < 0.3:
            k[-1] = False  # an emptied row: that input is None
        if len(x) == 2 and len(k) > 1:
            k[1, :len(x[0])] = False
        items.append((x, k))
    items.append((singles[0], np.zeros((0, 7), dtype=bool)))
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    pad_type = getattr(tok, "pad_token_type_id", 0) or 0
    for order in (items, items[::-1], items[3:5]):
        many = memo.compose_kept_many(order, bundle.max_length, pad_id, pad_type)
        assert len(many) == len(order)
        for (x, k), got in zip(order, many):
            ref = memo.compose_kept(x, k, bundle.max_length, pad_id, pad_type)
            assert (got is None) == (ref is None), (family, x, k.shape)
            if ref is not None:
                for a, b in zip(got, ref):
                    np.testing.assert_array_equal(a, b)
    assert memo.compose_kept_many(items[-1:], bundle.max_length, pad_id, pad_type) == [None]
    many = memo.compose_kept_many(items, bundle.max_length, pad_id, pad_type)
    assert sum(g is not None for g in many) >= 8
    long_at, unseen_at = len(singles) - 1, len(singles) + len(pairs)
    if many[long_at] is not None:  # (None when its last row was emptied)
        assert bundle.max_length - 4 < many[long_at][2].max() <= bundle.max_length  # truncated from pieces
    assert many[unseen_at] is None and many[len(singles) + len(pairs) - 1] is None  # unseen word; long pair
    assert memo.disabled is None
