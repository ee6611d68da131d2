"""One-pass truncation (per-word token counts from one tokenizer call) gives exactly the
definition's result (drop the last word of the longest segment, re-tokenize, repeat) on every
tokenizer type, for single inputs and pairs, and counts tokenizer calls: a constant number,
not one per dropped word."""

from __future__ import annotations

import random

import pytest
import torch

from harness.models.encoding import _fit_one_word_at_a_time, encode, fit_segments
from harness.testing import tiny_family_model, tiny_texts

FAMILIES = [None, "bert", "roberta", "xlm-roberta", "gpt2", "llama"]


def _long_inputs(seed: int, pairs: bool):
    rng = random.Random(seed)
    words = " ".join(tiny_texts()).split() + ["unseenword", "zyxq", "é"]
    out = []
    for _ in range(6):
        a = tuple(rng.choice(words) for _ in range(rng.randint(5, 90)))
        if pairs:
            b = tuple(rng.choice(words) for _ in range(rng.randint(3, 90)))
            out.append((a, b))
        else:
            out.append((a,))
    out.append((("a", "man"), ("plays",)) if pairs else (("great", "acting"),))  # one that fits
    return out


class _Counting:
    """A tokenizer proxy counting its ``__call__``s (everything else passes through)."""

    def __init__(self, tok):
        self.__dict__["_tok"], self.__dict__["calls"] = tok, 0

    def __call__(self, *a, **k):
        self.__dict__["calls"] += 1
        return self._tok(*a, **k)

    def __getattr__(self, name):
        return getattr(self._tok, name)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("pairs", [False, True])
def test_one_pass_truncation_equals_the_definition(family, pairs):
    tok, _ = tiny_family_model(family)
    rows = _long_inputs(7, pairs)
    for r in rows:
        want = _fit_one_word_at_a_time(tok, r, 48)
        assert fit_segments(tok, r, 48) == want
    enc = encode(tok, rows, 48)
    for i, r in enumerate(rows):
        fitted, was = _fit_one_word_at_a_time(tok, r, 48)
        assert enc.segments[i] == fitted and enc.truncated[i] == was
        assert int(enc.attention_mask[i].sum()) <= 48
    assert any(enc.truncated) and not all(enc.truncated)
    # the batch's ids equal the tokenizer's own call on the truncated words
    n_seg = len(rows[0])
    own = tok(*[[list(s[k]) for s in enc.segments] for k in range(n_seg)], is_split_into_words=True,
              padding=True, return_tensors="pt", padding_side="right")
    assert torch.equal(enc.input_ids, own["input_ids"])


def test_truncating_a_500_word_input_takes_a_constant_number_of_tokenizer_calls():
    tok, _ = tiny_family_model("bert")
    words = tuple((" ".join(tiny_texts()).split() * 40)[:500])
    counting = _Counting(tok)
    fitted, truncated = fit_segments(counting, (words,), 64)
    assert truncated and counting.calls == 2  # counts, then the check (was: one call per dropped word)
    assert fitted == _fit_one_word_at_a_time(tok, (words,), 64)[0]


def test_an_input_that_cannot_fit_is_refused():
    tok, _ = tiny_family_model("bert")
    with pytest.raises(ValueError, match="cannot be truncated"):
        fit_segments(tok, (tuple("a man plays guitar".split()), tuple(["x"] * 3)), 4)
