"""Removal and plausibility metrics against hand-computed values; removal operators' token ids."""

from dataclasses import dataclass, field

import numpy as np
import pytest

from harness.metrics import removal as rm
from harness.metrics.base import get_metric
from harness.metrics.plausibility import (average_precision_one, best_tau, binarise, normalise_positive, overlap_scores,
                                          token_f1_at_k_one)
from harness.protocols import Example, MetricInputs
from harness.models.removal import removed_token_ids


@dataclass
class StubBundle:
    """A 'model' whose class-1 probability is a function of which words are present.

    p1 = base + sum of the present words' weights (+ bonus when all words of ``pair`` are present);
    unknown words weigh 0.  Only the ``delete`` operator is needed (proba_of_segments).
    """

    weights: dict
    base: float = 0.1
    pair: tuple = ()
    bonus: float = 0.0
    num_labels: int = 2
    predict_batch_size: int = 256
    calls: list = field(default_factory=list)

    def proba_of_segments(self, segments, batch_size=None):
        self.calls.append(len(segments))
        out = []
        for segs in segments:
            present = {w for s in segs for w in s}
            p = self.base + sum(self.weights.get(w, 0.0) for w in present)
            if self.pair and set(self.pair) <= present:
                p += self.bonus
            out.append([1 - p, p])
        return np.array(out, dtype=np.float64)


def five_word_case():
    bundle = StubBundle({"w0": 0.05, "w1": 0.3, "w2": 0.0, "w3": 0.2, "w4": 0.1}, pair=("w1", "w3"), bonus=0.1)
    ex = Example("five", (("w0", "w1", "w2"), ("w3", "w4")))     # a pair: 3 premise + 2 hypothesis words
    scores = np.array([0.1, 0.9, -0.3, 0.5, 0.2])               # order: w1, w3, w4, w0, w2
    return bundle, MetricInputs([ex], [scores], [None], model=bundle, targets=[1])


def test_rounding_and_order():
    assert [rm.n_words_for(k, 5) for k in rm.DEFAULT_BINS] == [1, 1, 1, 1, 3]
    assert [rm.n_words_for(k, 30) for k in rm.DEFAULT_BINS] == [1, 2, 3, 6, 15]   # 0.1 * 30 counts 3, not 4
    assert rm.n_words_for(0.2, 1) == 1 and rm.n_words_for(1.0, 7) == 7
    np.testing.assert_array_equal(rm.attribution_order([0.5, 0.9, 0.5, -1.0, 0.9]), [1, 4, 0, 2, 3])


def test_five_word_aopc_hand_values():
    """p(full) = .1 + .65 + .1 (pair bonus) = .85, p(empty) = .1.
    bins 1/5/10/20% -> top 1 word (w1), 50% -> top 3 (w1, w3, w4).
    without w1: .45; without w1,w3,w4: .15; only w1: .40; only w1,w3,w4: .80."""
    rm.clear_cache()
    bundle, inputs = five_word_case()
    val = lambda name, **kw: float(get_metric(name, **kw).per_example(inputs)[0])  # noqa: E731
    assert val("comprehensiveness") == pytest.approx((4 * 0.40 + 0.70) / 5)           # 0.46
    assert val("sufficiency") == pytest.approx((4 * 0.45 + 0.05) / 5)                 # 0.37
    # S(0) = 1 - (.85 - .10) = .25, 1 - S(0) = .75
    assert val("norm_comprehensiveness") == pytest.approx((4 * 0.40 / 0.75 + 0.70 / 0.75) / 5)
    assert val("norm_sufficiency") == pytest.approx((4 * (0.55 - 0.25) / 0.75 + (0.95 - 0.25) / 0.75) / 5)
    # Deletion / Insertion: 20% of 5 words = 1 step, area of one trapezoid
    assert val("deletion_auc") == pytest.approx((0.85 + 0.45) / 2)
    assert val("insertion_auc") == pytest.approx((0.10 + 0.40) / 2)
    # six metrics, one batched model call (cached curves)
    assert len(bundle.calls) == 1
    m = get_metric("norm_comprehensiveness")
    m.per_example(inputs)
    assert m.details == {"share_degenerate": 0.0}


def test_deletion_curve_over_several_steps_and_custom_bins():
    rm.clear_cache()
    words = tuple(f"v{i}" for i in range(10))
    bundle = StubBundle({w: 0.08 for w in words}, base=0.1)   # p(full) = .9, each word .08
    scores = np.arange(10, dtype=float)[::-1]                  # top words: v0, v1, ...
    inputs = MetricInputs([Example("ten", (words[:6], words[6:]))], [scores], [None], model=bundle, targets=[1])
    # 20% of 10 = 2 steps: .9, .82, .74 -> (.86 + .78) / 2
    assert get_metric("deletion_auc").per_example(inputs)[0] == pytest.approx((0.86 + 0.78) / 2)
    # insertion: .1, .18, .26 -> (.14 + .22) / 2; with curve_fraction 0.3: 3 steps
    assert get_metric("insertion_auc").per_example(inputs)[0] == pytest.approx((0.14 + 0.22) / 2)
    assert get_metric("insertion_auc", curve_fraction=0.3).per_example(inputs)[0] == pytest.approx(
        (0.14 + 0.22 + 0.30) / 3)
    assert get_metric("comprehensiveness", bins=[0.5]).per_example(inputs)[0] == pytest.approx(0.40)
    assert get_metric("sufficiency", bins=[0.1, 1.0]).per_example(inputs)[0] == pytest.approx((0.72 + 0.0) / 2)


def test_normalised_metrics_clip_and_degenerate_examples():
    rm.clear_cache()
    # empty input is *more* likely than the full one: degenerate, both normalised scores 0
    bundle = StubBundle({"a": -0.05, "b": 0.0}, base=0.6)
    ex = [Example("d", (("a",), ("b",))), Example("ok", (("b",), ("a",)))]
    bundle2 = StubBundle({"a": 0.3, "b": -0.2}, base=0.5)     # full .6, empty .5, only a: .8
    inputs = MetricInputs(ex[:1], [np.array([1.0, 0.0])], [None], model=bundle, targets=[1])
    m = get_metric("norm_sufficiency")
    assert m.per_example(inputs)[0] == 0.0 and m.details["share_degenerate"] == 1.0
    assert get_metric("norm_comprehensiveness").per_example(inputs)[0] == 0.0
    # keeping only 'a' (p .8 > p(full)): S = 1 -> (1 - .9) / .1 = 1; removing 'a' (p .3): C = .3 / .1 -> clipped to 1
    inputs2 = MetricInputs([Example("c", (("a",), ("b",)))], [np.array([1.0, 0.0])], [None], model=bundle2, targets=[1])
    assert get_metric("norm_sufficiency", bins=[0.5]).per_example(inputs2)[0] == pytest.approx(1.0)
    assert get_metric("norm_comprehensiveness", bins=[0.5]).per_example(inputs2)[0] == pytest.approx(1.0)
    # the raw (unnormalised) versions are not clipped
    assert get_metric("sufficiency", bins=[0.5]).per_example(inputs2)[0] == pytest.approx(0.6 - 0.8)


def test_batched_engine_matches_per_example_loop_and_targets_default_to_prediction():
    from harness.testing import TINY_PAIRS, tiny_bundle

    rm.clear_cache()
    bundle = tiny_bundle(sensitive=True)
    rng = np.random.default_rng(0)
    examples = [Example(f"p{i}", segs) for i, segs in enumerate(TINY_PAIRS * 3)]
    maps = [rng.standard_normal(e.n_words) for e in examples]
    inputs = MetricInputs(examples, maps, [None] * len(examples), model=bundle)
    before = bundle.counter.forward
    batched = rm.removal_curves(inputs, "mask", use_cache=False)
    n_variants = bundle.counter.forward - before
    preds = bundle.proba_of_segments([e.segments for e in examples]).argmax(-1)
    assert [c.target for c in batched] == preds.tolist()
    for i, e in enumerate(examples):
        one = rm.removal_curves(MetricInputs([e], [maps[i]], [None], model=bundle, targets=[int(preds[i])]),
                                "mask", use_cache=False)[0]
        assert one.removed.keys() == batched[i].removed.keys() and one.kept.keys() == batched[i].kept.keys()
        for j in one.removed:
            assert one.removed[j] == pytest.approx(batched[i].removed[j], abs=1e-5)
            assert one.kept[j] == pytest.approx(batched[i].kept[j], abs=1e-5)
    # per example: full, empty, and top-j removed / kept for j in the bins' counts and the Deletion
    # steps (n = 8: bins 1, 1, 1, 2, 4 and steps 1, 2 -> j in {1, 2, 4}); duplicates evaluated once
    assert rm._needed_counts(8, rm.DEFAULT_BINS, 0.2) == {0, 1, 2, 4}
    assert n_variants == sum(2 + 2 * len(rm._needed_counts(e.n_words, rm.DEFAULT_BINS, 0.2) - {0, e.n_words})
                             for e in examples)


def test_removal_metric_parameters_are_validated():
    with pytest.raises(ValueError, match="unknown removal operator 'delte'; did you mean 'delete'"):
        get_metric("comprehensiveness", operator="delte")
    with pytest.raises(ValueError, match="bins must be fractions"):
        get_metric("sufficiency", bins=[0.0, 0.5])
    with pytest.raises(ValueError, match="curve_fraction"):
        get_metric("deletion_auc", curve_fraction=1.5)
    with pytest.raises(ValueError, match="need the model bundle"):
        get_metric("deletion_auc").per_example(MetricInputs([Example("x", (("a",),))], [np.ones(1)], [None]))


def test_truncated_inputs_use_the_words_the_explainer_saw():
    from harness.models.encoding import fit_segments
    from harness.testing import tiny_bundle

    rm.clear_cache()
    bundle = tiny_bundle()
    long = (("a", "man", "plays", "guitar") * 20, ("a", "dog", "sleeps"))
    seen, truncated = fit_segments(bundle.tokenizer, long, bundle.max_length)
    assert truncated
    n = sum(len(s) for s in seen)
    inputs = MetricInputs([Example("long", long)], [np.arange(n, dtype=float)], [None], model=bundle)
    assert get_metric("deletion_auc").per_example(inputs).shape == (1,)
    with pytest.raises(ValueError, match="attribution map has 3 scores"):
        rm.removal_curves(MetricInputs([Example("long", long)], [np.ones(3)], [None], model=bundle))


class FixedMLM:
    name, description, model_hash = "fixed", "fills every position with 'dog'", "0"

    def top_fills(self, segments, positions, k):
        return [[[("dog", 1.0)] for _ in pos] for pos in positions]


@pytest.mark.parametrize("operator", ["delete", "mask", "unk", "pad", "mlm"])
def test_each_removal_operator_yields_the_expected_tokens(operator):
    from harness.testing import tiny_bundle

    bundle = tiny_bundle()
    bundle.mlm = FixedMLM()
    tok = bundle.tokenizer
    segs = (("a", "man", "plays", "guitar"), ("a", "person", "plays", "music"))
    remove = np.array([0, 1, 0, 0, 0, 0, 1, 0], dtype=bool)      # 'man' and the hypothesis' 'plays'
    ids = lambda words: tok.convert_tokens_to_ids(words)  # noqa: E731
    special = {"mask": "[MASK]", "unk": "[UNK]", "pad": "[PAD]"}
    if operator == "delete":
        words = ["[CLS]", "a", "plays", "guitar", "[SEP]", "a", "person", "music", "[SEP]"]
    elif operator == "mlm":
        words = ["[CLS]", "a", "dog", "plays", "guitar", "[SEP]", "a", "person", "dog", "music", "[SEP]"]
    else:
        t = special[operator]
        words = ["[CLS]", "a", t, "plays", "guitar", "[SEP]", "a", "person", t, "music", "[SEP]"]
    assert removed_token_ids(bundle, segs, remove, operator) == ids(words)


def test_zero_operator_has_no_token_ids_but_runs_in_metrics():
    from harness.testing import TINY_PAIRS, tiny_bundle

    bundle = tiny_bundle()
    with pytest.raises(ValueError, match="changes embeddings"):
        removed_token_ids(bundle, TINY_PAIRS[0], np.zeros(8, dtype=bool), "zero")
    inputs = MetricInputs([Example("z", TINY_PAIRS[0])], [np.arange(8.0)], [None], model=bundle)
    assert np.isfinite(get_metric("comprehensiveness", operator="zero").per_example(inputs)).all()


# --- plausibility ---------------------------------------------------------------------------

def test_normalise_and_binarise():
    np.testing.assert_allclose(normalise_positive([0.8, -0.5, 0.4, 0.1]), [1.0, 0.0, 0.5, 0.125])
    np.testing.assert_array_equal(normalise_positive([-1.0, 0.0]), [0.0, 0.0])
    np.testing.assert_array_equal(binarise([0.8, -0.5, 0.4, 0.1], 0.5), [True, False, True, False])
    assert overlap_scores(np.array([1, 1, 0], bool), np.array([0, 1, 1], bool)) == pytest.approx(
        {"iou": 1 / 3, "precision": 0.5, "recall": 0.5, "f1": 0.5})
    assert overlap_scores(np.zeros(3, bool), np.array([0, 1, 1], bool))["precision"] == 0.0


def iou_case():
    maps = [np.array([0.8, -0.5, 0.4, 0.1]),        # normalised 1, 0, .5, .125; gold {0, 2}
            np.array([0.2, 0.6, -0.1]),             # normalised 1/3, 1, 0; gold {1}
            np.array([0.3, 0.3, 0.9, 0.0, -1.0])]   # normalised 1/3, 1/3, 1, 0, 0; gold {0, 1, 3}
    gold = [[0, 2], [1], [0, 1, 3]]
    ex = [Example(str(i), (tuple(f"w{j}" for j in range(m.size)),)) for i, m in enumerate(maps)]
    return MetricInputs(ex, maps, gold)


def test_iou_at_best_tau_hand_values():
    """Mean IoU by tau: .05-.10: (2/3 + 1/2 + 1/2)/3; .15-.30: (1 + 1/2 + 1/2)/3 = 2/3;
    .35-.50: (1 + 1 + 0)/3 = 2/3; .55-.95: (1/2 + 1 + 0)/3.  Best: 2/3, first at tau = .15."""
    inputs = iou_case()
    tau, per = best_tau(inputs.word_scores, inputs.gold)
    assert tau == pytest.approx(0.15)
    m = get_metric("token_iou_best_tau")
    np.testing.assert_allclose(m.per_example(inputs), [1.0, 0.5, 0.5])
    assert m.details == {"tau": pytest.approx(0.15)}
    np.testing.assert_allclose(get_metric("precision_best_tau").per_example(inputs), [1.0, 0.5, 2 / 3])
    np.testing.assert_allclose(get_metric("recall_best_tau").per_example(inputs), [1.0, 1.0, 2 / 3])
    np.testing.assert_allclose(get_metric("f1_best_tau").per_example(inputs), [1.0, 2 / 3, 2 / 3])
    # a restricted grid: at tau = .5 example 0 still keeps its word at exactly .5 (>= tau)
    m = get_metric("token_iou_best_tau", thresholds=[0.5, 0.9])
    np.testing.assert_allclose(m.per_example(inputs), [1.0, 1.0, 0.0])
    assert m.details["tau"] == 0.5
    # selecting by F1 picks the same tau here
    assert get_metric("f1_best_tau", select_by="f1").per_example(inputs).mean() == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    with pytest.raises(ValueError, match="select_by"):
        get_metric("token_iou_best_tau", select_by="auc")


def test_average_precision_and_token_f1_hand_values():
    s = np.array([0.9, 0.1, 0.5, 0.3])
    assert average_precision_one(s, [0, 3]) == pytest.approx((1 / 1 + 2 / 3) / 2)   # ranks 1 and 3 are gold
    assert average_precision_one(np.zeros(4), [1]) == pytest.approx(0.25)            # constant map: |G| / n
    assert average_precision_one(s, [0, 1, 2, 3]) == 1.0
    assert token_f1_at_k_one(s, [0, 3]) == pytest.approx(0.5)           # top-2 = {0, 2}
    # ties at the k-th score in expectation: above = {0} (miss), one slot among {1,2,3} (2 gold)
    assert token_f1_at_k_one(np.array([1.0, 0.5, 0.5, 0.5]), [1, 3]) == pytest.approx((2 / 3) / 2)
    assert token_f1_at_k_one(np.zeros(4), [1]) == pytest.approx(0.25)
    inputs = MetricInputs([Example("a", (("w",) * 4,))], [s], [[0, 3]])
    assert get_metric("average_precision").per_example(inputs)[0] == pytest.approx(5 / 6)
    assert get_metric("token_f1_at_k").per_example(inputs)[0] == pytest.approx(0.5)


def test_random_maps_score_low_and_oracle_maps_score_one():
    rng = np.random.default_rng(1)
    maps, gold, oracle = [], [], []
    for i in range(200):
        n = int(rng.integers(12, 25))
        g = sorted(rng.choice(n, size=2, replace=False).tolist())
        maps.append(rng.standard_normal(n))
        o = np.zeros(n)
        o[g] = 1.0
        oracle.append(o)
        gold.append(g)
    ex = [Example(str(i), (tuple("x" * m.size),)) for i, m in enumerate(maps)]
    rand, best = MetricInputs(ex, maps, gold), MetricInputs(ex, oracle, gold)
    for name in ("token_iou_best_tau", "average_precision", "token_f1_at_k"):
        assert get_metric(name).per_example(best).mean() == pytest.approx(1.0)
        assert get_metric(name).per_example(rand).mean() < 0.35


def test_removal_variant_registers_another_operator_default():
    from harness.metrics.base import METRICS

    if "deletion_auc_test_mask" not in METRICS.names():
        rm.register_removal_variant("deletion_auc_test_mask", "deletion_auc", operator="mask")
    m = get_metric("deletion_auc_test_mask")
    assert m.operator == "mask" and not m.higher_is_better and m.family == "faithfulness"
    assert get_metric("deletion_auc_test_mask", operator="unk").operator == "unk"


def test_cached_curves_extended_by_other_bins_send_only_the_new_variants():
    """A second call with other bins and another curve fraction reuses the cached curves: only
    the variants not computed yet go to the model, and the curves equal a fresh computation."""
    from harness.testing import TINY_PAIRS, TINY_SENTENCES, tiny_bundle

    rm.clear_cache()
    bundle = tiny_bundle(sensitive=True)
    rng = np.random.default_rng(1)
    for rows in (TINY_SENTENCES, TINY_PAIRS):
        examples = [Example(f"x{i}", segs) for i, segs in enumerate(rows)]
        maps = [rng.standard_normal(e.n_words) for e in examples]
        inputs = MetricInputs(examples, maps, [None] * len(examples), model=bundle)
        first = rm.removal_curves(inputs, "delete", bins=(0.1, 0.5), curve_fraction=0.2)
        known = sum(len(c.removed) + len(c.kept) - 2 for c in first)  # (minus the two aliases each)
        before = bundle.counter.forward
        again = rm.removal_curves(inputs, "delete", bins=(0.1, 0.3, 0.5), curve_fraction=0.6)
        sent = bundle.counter.forward - before
        fresh = rm.removal_curves(inputs, "delete", bins=(0.1, 0.3, 0.5), curve_fraction=0.6, use_cache=False)
        assert 0 < sent <= sum(len(c.removed) + len(c.kept) - 2 for c in fresh) - known
        for a, f in zip(again, fresh):
            assert a.target == f.target and a.removed.keys() == f.removed.keys() and a.kept.keys() == f.kept.keys()
            for j in f.removed:
                assert a.removed[j] == pytest.approx(f.removed[j], abs=1e-6)
                assert a.kept[j] == pytest.approx(f.kept[j], abs=1e-6)
