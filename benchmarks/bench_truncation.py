"""Speed of the truncation policy (:func:`harness.models.encoding.encode`) on long inputs.

Setup: the tiny WordPiece BERT of :func:`harness.testing.tiny_family_model` (``max_length``
64) and 16 inputs of 100 or 500 words cut from the tiny texts.

- ``one_pass``: :func:`encode` (per-word token counts from the batch's one tokenizer call, the
  words dropped in one pass, one re-encoding to check);
- ``definition``: the policy as defined (drop one word, re-tokenize, repeat), which the encoder
  used before: its cost grows with the square of the number of dropped words.
- ``removal_500``: the removal curves (comprehensiveness, sufficiency, deletion AUC) of four
  500-word inputs: every perturbed variant goes through the truncation policy.

``extra_info`` holds the words per input and, for ``definition``, ``slowdown_vs_one_pass``.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.models.encoding import _fit_one_word_at_a_time, encode
from harness.testing import tiny_family_model, tiny_texts

MAX_LENGTH = 64  # the tiny model has 64 positions
ONE_PASS: dict[int, float] = {}


def _rows(n_words: int, n: int = 16):
    base = " ".join(tiny_texts()).split() * (n_words // 10 + 2)
    return [(tuple(base[i:i + n_words]),) for i in range(n)]


@pytest.mark.parametrize("n_words", [100, 500])
def test_one_pass(benchmark, n_words):
    tok, _ = tiny_family_model("bert")
    rows = _rows(n_words)
    benchmark.pedantic(encode, args=(tok, rows, MAX_LENGTH), rounds=5, iterations=1)
    ONE_PASS[n_words] = benchmark.stats.stats.mean
    benchmark.extra_info.update(words=n_words, inputs=len(rows))


@pytest.mark.parametrize("n_words", [100, 500])
def test_definition(benchmark, n_words):
    tok, _ = tiny_family_model("bert")
    rows = _rows(n_words)
    benchmark.pedantic(lambda: [_fit_one_word_at_a_time(tok, r, MAX_LENGTH) for r in rows], rounds=1, iterations=1)
    benchmark.extra_info.update(words=n_words, inputs=len(rows))
    if n_words in ONE_PASS:
        benchmark.extra_info["slowdown_vs_one_pass"] = benchmark.stats.stats.mean / ONE_PASS[n_words]


def test_removal_500(benchmark):
    from harness.metrics import removal as rm
    from harness.models.bundle import ModelBundle
    from harness.protocols import Example, MetricInputs

    tok, model = tiny_family_model("bert")
    bundle = ModelBundle(model, tok, "bench-tiny-bert-wp", 2, max_length=MAX_LENGTH)
    examples = [Example(f"e{i}", r) for i, r in enumerate(_rows(500, 4))]
    rng = np.random.default_rng(0)
    maps = [rng.standard_normal(e.n_words) for e in examples]
    targets = bundle.proba_of_segments([e.segments for e in examples]).argmax(-1).tolist()
    inputs = MetricInputs(examples, maps, [None] * len(examples), model=bundle, targets=targets)
    benchmark.pedantic(rm.removal_curves, args=(inputs, "delete"), kwargs={"use_cache": False}, rounds=1,
                       iterations=1)
    benchmark.extra_info.update(words=500, inputs=len(examples))
