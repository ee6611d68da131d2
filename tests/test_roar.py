"""ROAR / ROAR_BERT (paper 003 sec. 5.1): the removal helpers against hand-computed values, a
constructed case where the important words are known (an oracle's removal drops the retrained
accuracy far below random removal, an anti-oracle's does not), and the task end to end."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.planted_sst.task import PLANTED_PAIRS

PLANTED = {w for pair in PLANTED_PAIRS for w in pair}
SMALL_BASE = dict(n_train=1500, n_dev=200)
SMALL = dict(roar_train=800, n_eval=60, levels=[30], **SMALL_BASE)


def test_removal_helpers_hand_values():
    from tasks.roar.task import delete_words, n_removed, random_orders, removal_mask

    assert [n_removed(n, 20) for n in (10, 20, 30)] == [2, 4, 6]
    assert n_removed(10, 4) == 1 and n_removed(30, 10) == 3  # ceil, 0.3 * 10 is 3, not 4
    order = np.array([3, 0, 4, 1, 2])
    assert removal_mask(order, 2, 5).tolist() == [True, False, False, True, False]
    segs = (("a", "b", "c"), ("d", "e"))
    assert delete_words(segs, np.array([True, False, False, True, False])) == (("b", "c"), ("e",))
    a, b = random_orders([segs, (("x", "y"),)], 7), random_orders([segs, (("x", "y"),)], 7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and sorted(a[0].tolist()) == [0, 1, 2, 3, 4]


def test_spec_and_validation():
    from harness.engine.task import Task, get_task
    from tasks.roar.task import RoarTask

    t = get_task("roar")
    assert type(t).evaluate is not Task.evaluate and t.spec.main_metric == "roar_gain"
    assert t.spec.metrics == ("roar_gain", "roar_bert_gain", "roar_acc_10", "roar_acc_20", "roar_acc_30",
                              "roar_bert_acc_10", "roar_bert_acc_20", "roar_bert_acc_30")
    assert t.reference_cache_name() == "planted_sst" and get_task("roar_nli").base.spec.name == "mnli_faithfulness"
    for bad in (dict(levels=[0]), dict(levels=[10, 10]), dict(levels=[]), dict(n_models=0), dict(base="x")):
        with pytest.raises(ValueError):
            RoarTask(**bad)


def _oracle(segments, sign=1.0):
    return np.array([sign * (1.0 if w in PLANTED else 0.0) for seg in segments for w in seg])


@pytest.fixture(scope="module")
def bound(small_ctx, cache_dir):
    """A ROAR task bound to the small planted task's reference model and masked LM."""
    from harness.engine.task import get_task
    from harness.models.mlm import attach_mlm, build_task_mlm

    task = get_task("roar", **SMALL)
    data = task.prepare()
    bundle = small_ctx.ref.bundle
    if bundle.mlm is None:
        attach_mlm(bundle, build_task_mlm("tiny", small_ctx.data.train, cache_dir, "planted_sst"))
    task.bind(bundle, data.examples, data.gold, cache_dir)
    return task, data


def test_an_oracle_drops_accuracy_far_below_random_removal_and_an_anti_oracle_does_not(bound):
    task, data = bound
    train = [s for s, _ in task._train]
    test = [e.segments for e in data.examples]
    assert sum(any(w in PLANTED for seg in s for w in seg) for s in train) > 0.6 * len(train)
    oracle = task.score([_oracle(s) for s in train], [_oracle(s) for s in test])
    anti = task.score([_oracle(s, -1.0) for s in train], [_oracle(s, -1.0) for s in test])
    curve = {r["kind"]: r for r in oracle.tables["roar_curve"]}
    assert curve["roar"]["unmodified_accuracy"] >= 0.95          # the recipe learns the task from 800 rows
    assert curve["roar"]["control_accuracy"] >= 0.8              # random 30% removal leaves most planted words
    # removing the planted words (those an input has, up to 30% of its words) leaves mostly chance
    assert oracle.per_example["roar_acc_30"].mean() < curve["roar"]["control_accuracy"] - 0.2
    assert oracle.per_example["roar_gain"].mean() > 0.2
    assert anti.per_example["roar_gain"].mean() < 0.1               # it removes everything but them
    for ev in (oracle, anti):
        g = ev.per_example
        np.testing.assert_allclose(g["roar_gain"], np.asarray(task._bound["control"][("roar", 30)]) - g["roar_acc_30"])
        assert set(g) == set(task.spec.metrics) and all(v.shape == (60,) for v in g.values())
    assert {r["kind"] for r in oracle.tables["roar_curve"]} == {"roar", "roar_bert"}


def test_roar_bert_replaces_instead_of_deleting(bound):
    task, data = bound
    segs = [e.segments for e in data.examples[:5]]
    masks = [np.arange(sum(len(s) for s in x)) < 2 for x in segs]
    filled = task._modified("roar_bert", segs, masks)
    deleted = task._modified("roar", segs, masks)
    for s, f, d in zip(segs, filled, deleted):
        n = sum(len(x) for x in s)
        assert sum(len(x) for x in f) == n and sum(len(x) for x in d) == n - 2
        assert [w for x in f for w in x][2:] == [w for x in s for w in x][2:]


def test_roar_end_to_end_sandboxed_runner_and_board(tmp_path, cache_dir):
    from harness.board import leaderboard
    from harness.core.submission import resolve
    from harness.engine.records import ResultRecord
    from harness.engine.runner import RunConfig, run_grid
    from harness.engine.task import get_task

    task = get_task("roar", **SMALL)
    config = RunConfig(results_dir=tmp_path / "results", cache_dir=cache_dir, isolation="process")
    summary = run_grid([task], [resolve("random"), resolve("gradient")], config)
    assert not summary.errors and not summary.task_failures and len(summary.written) == 2
    recs = {p.stem: ResultRecord.read(p) for p in summary.written}
    assert recs["gradient"].scores["roar_gain"].value > recs["random"].scores["roar_gain"].value + 0.1
    # the training inputs were explained too, and count in the cost per explained input
    for r in recs.values():
        assert r.cost.forward_passes >= 0 and r.timing.total_s > 0
    assert recs["gradient"].cost.backward_per_example == pytest.approx(1.0)
    leaderboard.build(tmp_path / "results", tmp_path / "lb")
    text = (tmp_path / "lb" / "LEADERBOARD.md").read_text()
    assert "ROAR / ROAR_BERT (paper 003" in text and "random removal (control)" in text
    assert "order the explainers the same way" in text or "ROAR and ROAR_BERT disagree" in text
    # a rerun resumes: nothing is retrained or re-explained
    again = run_grid([get_task("roar", **SMALL)], [resolve("random"), resolve("gradient")], config)
    assert len(again.skipped) == 2 and not again.written


def test_disagreements_lists_flipped_pairs():
    from tasks.roar.board import disagreements

    tau, flips = disagreements({"a": (0.3, 0.1), "b": (0.2, 0.2), "c": (0.1, 0.05)})
    assert flips == [("a", "b")] and tau == pytest.approx(1 / 3)
    assert disagreements({"a": (0.3, 0.3), "b": (0.1, 0.1)})[1] == []
