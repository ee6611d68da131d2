"""Official runs: the planted words come from a vocabulary that the secret itself generates, and
the scored examples do not give the planted pair away to word counting.  See docs/SECURITY.md.

The records and commitment checks of an official run are in tests/test_hostile.py; the re-run
with the secret in tests/test_verify.py.
"""

import ast
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from harness.engine.official import COMMON_WORDS, pseudo_word, secret_vocabulary
from harness.engine.records import ResultRecord
from harness.engine.runner import RunConfig, run_grid
from harness.core.submission import resolve
from harness.engine.task import get_task
from tasks.planted_sst.corpus import corpus_vocabulary

from conftest import REPO, SMALL_TASK

SECRET = "0123456789abcdef-test-secret-not-for-real-use"  # as tests/test_hostile.py: one cached model
OTHERS = [f"frequency-check-secret-{k}-0123456789" for k in range(4)]


def official_task(secret=SECRET, **overrides):
    task = get_task("planted_sst", **{**SMALL_TASK, **overrides})
    task.use_secret(secret)
    return task


def classic_task(secret=SECRET, **overrides):
    """The classic one-word planting (variant ``easy``, the default up to 1.1) in an official run."""
    return official_task(secret, **{"variant": "easy", **overrides})


def flat(words):
    return [w for x in words for w in ([x] if isinstance(x, str) else flat(x))]


def drawn_words(task):
    train, held = task._raw()
    return task._vocabulary(train + held)


def corpus_words(task):
    train, held = task._raw()
    return corpus_vocabulary() | {w.lower() for text, _ in train + held for w in text.split()}


def test_secret_vocabulary_is_large_and_selected_by_the_secret():
    vocab = secret_vocabulary(SECRET)
    assert len(vocab) == len(set(vocab)) == 4096
    assert secret_vocabulary(SECRET) == vocab, "deterministic given the secret"
    assert all(w.isalpha() and w.islower() and len(w) >= 6 for w in vocab)
    assert not set(vocab) & COMMON_WORDS
    # another secret (or purpose) selects another vocabulary: a handful of chance collisions at most
    assert len(set(vocab) & set(secret_vocabulary(OTHERS[0]))) < 41
    assert len(set(vocab) & set(secret_vocabulary(SECRET, purpose="other"))) < 41
    # excluded words are skipped, and the vocabulary stays full
    skipped = secret_vocabulary(SECRET, exclude=vocab[:100])
    assert len(skipped) == 4096 and not set(skipped) & set(vocab[:100]) and skipped[:10] == vocab[100:110]


def test_planted_words_and_distractors_are_secret_words_absent_from_the_corpus():
    task = classic_task()
    planted, distractors = drawn_words(task)
    assert len(set(planted + distractors)) == 4
    generated = {pseudo_word(SECRET, "planted_sst/vocabulary", i) for i in range(5000)}
    assert set(planted + distractors) <= generated
    used = secret_vocabulary(SECRET, exclude=corpus_words(task), purpose="planted_sst/vocabulary")
    assert set(planted + distractors) <= set(used) and not set(used) & corpus_words(task)
    # other secrets draw other words
    for other in OTHERS:
        assert not set(planted + distractors) & set(sum(drawn_words(classic_task(other)), []))
    # every scored example: its gold word is planted (the label's), plus exactly one distractor,
    # the two side by side at the end (position "end") in either order
    data = task.prepare()
    firsts = Counter()
    for ex, (g,) in zip(data.examples, data.gold):
        words = ex.words
        assert words[g] in planted
        new = [i for i, w in enumerate(words) if w not in corpus_vocabulary()]
        assert sorted(new) == [len(words) - 2, len(words) - 1] and g in new
        assert {words[i] for i in new} - {words[g]} <= set(distractors)
        firsts[g == len(words) - 2] += 1
    assert min(firsts.values()) >= 4, firsts  # the planted word is not always last


def test_no_candidate_list_in_the_code():
    """The candidates exist only given the secret: no word of the secret vocabulary is a string
    in tasks/ or harness/ (a list of candidates in the code could be read from .git)."""
    import tasks.planted_sst.task

    assert not hasattr(tasks.planted_sst.task, "SECRET_VOCABULARY")
    literals = set()
    for path in [*(REPO / "tasks").rglob("*.py"), *(REPO / "harness").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                literals.update(node.value.lower().split())
    for secret in [SECRET, *OTHERS]:
        vocab = set(secret_vocabulary(secret))
        assert len(vocab & literals) <= 2, sorted(vocab & literals)
        assert not set(sum(drawn_words(classic_task(secret)), [])) & literals
        assert not set(flat(drawn_words(official_task(secret)))) & literals


def _guess_rates(data):
    """Share of scored examples where a guess from the batch text alone (no model) hits the gold
    word: the new word (not in the public corpus generator) that is most frequent in the batch,
    the least frequent one, the last new word, and the first one."""
    new = [[i for i, w in enumerate(ex.words) if w not in corpus_vocabulary()] for ex in data.examples]
    freq = Counter(ex.words[i] for ex, idx in zip(data.examples, new) for i in set(idx))
    hits = Counter()
    for ex, idx, g in zip(data.examples, new, data.gold):
        hits["most frequent"] += max(idx, key=lambda i: freq[ex.words[i]]) in g
        hits["least frequent"] += min(idx, key=lambda i: freq[ex.words[i]]) in g
        hits["last"] += max(idx) in g
        hits["first"] += min(idx) in g
    n = len(data.examples)
    return {k: v / n for k, v in hits.items()}, {w: c / n for w, c in freq.items()}


def test_word_counting_does_not_single_out_the_planted_pair():
    # the public task: the only new word of each sentence is the planted one -> counting wins
    public = get_task("planted_sst_easy", n_train=200, n_dev=50, n_eval=300).prepare()
    assert _guess_rates(public)[0]["most frequent"] == 1.0
    rates = []
    for secret in OTHERS:
        for position in ("end", "random"):
            task = classic_task(secret, n_train=200, n_dev=50, n_eval=300, position=position)
            data = task.prepare()
            planted, distractors = drawn_words(task)
            r, share = _guess_rates(data)
            # four new words, each in about half of the scored examples
            assert set(share) == set(planted + distractors)
            assert all(0.4 < s < 0.6 for s in share.values()), share
            # each pair splits the batch: one word of each in every example, so co-occurrence
            # cannot tell the planted pair from the distractor pair either
            for pair in (planted, distractors):
                assert all(sum(w in pair for w in ex.words) == 1 for ex in data.examples)
            rates.append(r)
    for guess in rates[0]:
        mean = np.mean([r[guess] for r in rates])
        assert 0.4 < mean < 0.6, (guess, mean, rates)  # a coin flip, not 1.0


@pytest.mark.parametrize("position", ["start", "random"])
def test_other_positions_place_the_distractor_like_the_planted_word(position):
    data = classic_task(n_train=200, n_dev=50, n_eval=60, position=position).prepare()
    new = [[i for i, w in enumerate(ex.words) if w not in corpus_vocabulary()] for ex in data.examples]
    assert all(len(idx) == 2 and g in idx for idx, (g,) in zip(new, data.gold))
    if position == "start":
        assert all(idx == [0, 1] for idx in new) and 10 < sum(g == 0 for (g,) in data.gold) < 50


def test_the_default_draws_all_its_pairs_from_the_secret_and_stays_a_coin_flip():
    """The ``discriminating`` default in an official run: its four planted and four distractor
    pairs are secret words; the distractors mirror the planted words, so word counts and places
    single out nothing."""
    task = official_task(n_train=200, n_dev=50, n_eval=600)
    assert task.spec.params["planted_words"] == task.spec.params["distractor_words"] == "secret"
    planted, distractors = drawn_words(task)
    assert len(planted) == len(distractors) == 4 and all(len(p) == 2 for p in planted + distractors)
    words = flat(planted + distractors)
    assert len(set(words)) == 16 and not set(words) & corpus_words(task)
    assert set(words) <= {pseudo_word(SECRET, "planted_sst/vocabulary", i) for i in range(5000)}
    assert not set(words) & set(flat(drawn_words(official_task(OTHERS[0]))))
    side = {w: k for pair in planted for k, w in enumerate(pair)}
    data = task.prepare()
    for ex, g in zip(data.examples, data.gold):
        assert g == [i for i, w in enumerate(ex.words) if w in side]
        assert len({side[ex.words[i]] for i in g}) == 1
    rates, share = _guess_rates(data)
    assert set(share) == set(words)
    assert max(share.values()) / min(share.values()) < 1.5, share
    # a word's place says nothing: the last / first new word is planted half of the time
    assert all(0.4 < rates[k] < 0.6 for k in ("last", "first")), rates
    # nor does its frequency in the batch.  Which of the 16 words happens to be the most (least)
    # frequent is a matter of sampling, and it decides most of one secret's hit rate (measured over
    # 12 secrets: most frequent 0.18-0.63, least frequent 0.37-0.63), so the test averages over
    # secrets: the planted and distractor words are exchangeable, so the mean is 0.5
    many = [_guess_rates(official_task(f"frequency-check-secret-{k}-0123456789", n_train=100, n_dev=50,
                                       n_eval=600).prepare())[0] for k in range(12)]
    for k in rates:
        mean = np.mean([r[k] for r in many])
        assert 0.35 < mean < 0.65, (k, mean, many)


def test_official_run_trains_the_model_and_scores(tmp_path, cache_dir):
    """The reference model learns the secret words (and ignores the distractors): above the
    accuracy floor, Kernel SHAP finds the planted words rather than the distractors, and
    leave-one-out does where one planted word is alone (with several, each is redundant)."""
    task = official_task()
    planted, distractors = drawn_words(task)
    config = RunConfig(results_dir=tmp_path / "r", cache_dir=cache_dir, batch_size=8, secret=SECRET,
                       hidden_subset=16)
    summary = run_grid([task], [resolve("kernel_shap"), resolve("leave_one_out")], config)
    assert not summary.task_failures and not summary.errors, (summary.task_failures, summary.errors)
    data = task.prepare()
    n_gold = {e.id: len(g) for e, g in zip(data.examples, data.gold)}
    recs = {}
    for name in ("kernel_shap", "leave_one_out"):
        path = next(Path(tmp_path / "r").rglob(f"{name}.json"))
        rec = recs[name] = ResultRecord.read(path)
        assert rec.status == "ok" and rec.official.secret_vocabulary
        assert rec.model.dev_accuracy >= task.spec.model.min_dev_accuracy
        text = path.read_text()
        assert SECRET not in text and not any(w in text for w in flat(planted + distractors))
    assert recs["kernel_shap"].scores["gt_overlap"].value > 0.9, recs["kernel_shap"].scores["gt_overlap"]
    loo = recs["leave_one_out"]
    alone = [v for i, v in zip(loo.example_ids, loo.per_example["gt_overlap"]) if n_gold[i] == 1]
    assert alone and min(alone) == 1.0, alone
