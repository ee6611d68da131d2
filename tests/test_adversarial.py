"""Adversarial explanations (paper 001 sec. 2.3, 3.5): the top-k attack's distance and measures
against hand-computed values (the paper's worked example), the search's use of them, and the
task end to end on the fragility fixture's tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from test_fragility import Spy, tiny  # noqa: F401  (the fixture)


def test_measures_hand_values():
    from tasks.adversarial.measures import k_for, normalise, objective, rank_change, topk, topk_distance, topk_sum_change

    assert [k_for(n, 0.15) for n in (4, 7, 10, 14, 20)] == [1, 1, 1, 2, 3]   # floor(15%), at least 1
    assert topk(np.array([0.1, 0.5, 0.5, -2.0]), 2).tolist() == [1, 2]      # signed; ties: earlier first
    # paper 001's worked example: top-3 [12, 3, 7] against [3, 15, 7] changes 2 of 3 ranks
    a0 = np.zeros(16)
    a0[[12, 3, 7]] = [3.0, 2.0, 1.0]
    a1 = np.zeros(16)
    a1[[3, 15, 7]] = [3.0, 2.0, 1.0]
    assert rank_change(a0, a1, 3) == pytest.approx(2 / 3)
    assert rank_change(a0, a0, 3) == 0.0
    # normalised: a0 -> [..3/6, 2/6, 1/6]; a1 keeps 1/6 on word 7, 3/6 on word 3
    assert topk_sum_change(a0, a1, 3) == pytest.approx(1.0 - (0 + 3 / 6 + 1 / 6))
    assert topk_distance(a0, a1, 3) == pytest.approx(-(0 + 3 / 6 + 1 / 6))
    np.testing.assert_allclose(normalise([1.0, -3.0]), [0.25, -0.75])
    assert normalise(np.zeros(3)).tolist() == [0, 0, 0]
    params = {"topk_share": 0.2, "alpha": 1.0, "beta": 1.0}
    x0, x1 = np.array([4.0, 1.0, 0, 0, 0]), np.array([1.0, 4.0, 0, 0, 0])   # k = 1: word 0
    assert objective("topk", x0, x1, params) == pytest.approx(-0.2)
    assert objective("topk_constrained", x0, x1, params, 0.9, 0.6) == pytest.approx(-0.2 - 0.09)
    with pytest.raises(ValueError):
        objective("topk_constrained", x0, x1, params)


def test_at_budget_takes_the_last_level_reached():
    from types import SimpleNamespace as NS

    from tasks.adversarial.task import at_budget, measures

    levels = [NS(m=1, map=np.array([0.0, 1.0, 0.0]), proba=0.8), NS(m=2, map=np.array([0.0, 0.0, 1.0]), proba=0.7)]
    assert at_budget(levels, 1).m == 1 and at_budget(levels, 3).m == 2 and at_budget([], 2) is None
    attack = NS(original_map=np.array([1.0, 0.0, 0.0]), original_proba=0.9, levels={"topk": levels})
    rc, sc, pc, reached = measures(attack, "topk", 3, 0.34)
    assert (rc, sc, reached) == (1.0, 1.0, False) and pc == pytest.approx(0.2)
    assert measures(attack, "random", 1, 0.34) == (0.0, 0.0, 0.0, False)     # no valid swap: the input itself


def test_the_search_maximises_the_top_k_objectives(tiny):  # noqa: F811
    from harness.core.submission import resolve
    from tasks.adversarial.measures import objective
    from tasks.fragility import resources as R
    from tasks.fragility.attack import Explanations, ExplainFooler
    from tasks.fragility.constraints import ConstraintConfig, HarnessBackend

    bundle, rows, targets, subs = tiny
    backend = HarnessBackend(subs, R.ENGLISH_STOPWORDS, ConstraintConfig(), None, None)
    expl = Explanations(resolve("gradient_x_input").instantiate(), bundle, seed=0, max_batch=None)
    params = {"topk_share": 0.15, "alpha": 1.0, "beta": 1.0}
    attack = ExplainFooler(backend, bundle, expl, objectives=("topk", "topk_constrained"), seed=0,
                           objective_params=params, max_levels=2)
    results = attack.run([(r,) for r in rows], targets, list(range(len(rows))))
    checked = 0
    for r, target in zip(results, targets):
        for obj in ("topk", "topk_constrained"):
            levels = r.levels[obj]
            assert len(levels) <= 2
            if not levels:
                continue
            lv = levels[0]  # level 1: every candidate of the first word was explained; the chosen one is the best
            cands = [c for c in r.candidate_texts if sum(a != b for a, b in zip(c, r.words)) == 1 and
                     c[lv.index] != r.words[lv.index]]
            maps = expl.get([((c,), target) for c in cands])
            probs = bundle.proba_of_segments([(c,) for c in cands])[:, target]
            vals = [objective(obj, r.original_map, m, params, r.original_proba, p) for m, p in zip(maps, probs)]
            assert lv.objective_value == pytest.approx(max(vals), rel=1e-5)  # other batches: float rounding
            checked += 1
    assert checked > 0


def test_task_end_to_end_and_validation(tiny):  # noqa: F811
    from harness.core.submission import resolve
    from harness.engine.task import get_task
    from tasks.adversarial.task import AdversarialTask, METRICS

    bundle, _, _, _ = tiny
    task = get_task("adversarial_explanations", n_eval=4, max_words=14, budgets=[1, 2], embedding_budgets=[])
    assert task.reference_cache_name() == "fragility" and task.spec.main_metric == "adv_rank_change"
    assert task.spec.params["objectives"] == ["topk", "topk_constrained", "random"]
    data = task.prepare()
    targets = bundle.proba_of_segments([e.segments for e in data.examples]).argmax(-1).tolist()
    spy = Spy(resolve("gradient").instantiate())
    ev = task.explain_and_score(spy, bundle, data.examples, targets, seed=0)
    assert set(ev.per_example) == set(METRICS) and all(v.shape == (4,) for v in ev.per_example.values())
    assert all(0 <= x <= 1 for x in ev.per_example["adv_rank_change"])
    rows = ev.tables["adversarial_budgets"]
    assert {(r["objective"], r["budget"]) for r in rows} == {(o, b) for o in ("topk", "topk_constrained", "random")
                                                             for b in (1, 2)}
    top = {r["objective"]: r for r in rows if r["budget"] == 2}
    assert top["topk"]["rank_change_mean"] == pytest.approx(ev.per_example["adv_rank_change"].mean())
    assert ev.details["adv_rank_change"]["explainer_calls"] == len(spy.batches)
    for bad in (dict(budgets=[]), dict(budgets=[0]), dict(topk_share=0), dict(objectives=["l2"])):
        with pytest.raises(ValueError):
            AdversarialTask(**bad)


@pytest.mark.parametrize("family", [None, "roberta", "gpt2", "llama"])
def test_embedding_attack_keeps_the_class_and_moves_the_gradient_map(family):
    from harness.core.submission import resolve
    from harness.models.bundle import ModelBundle
    from harness.testing import TINY_SENTENCES, tiny_bundle
    from tasks.adversarial.embedding import attack, perturbed_model
    from tasks.adversarial.measures import k_for, rank_change, topk_sum_change
    from tasks.fragility.attack import Explanations

    b = tiny_bundle(family=family, sensitive=True, mlm=False)
    segs = [s for s in TINY_SENTENCES if len(s[0]) >= 4]
    targets = b.proba_of_segments(segs).argmax(-1).tolist()
    eps = float(b.embeddings.weight.detach().std())
    before = b.embeddings.weight.detach().clone()
    advs = attack(b, segs, targets, "topk", eps, steps=60)
    assert torch_equal(b.embeddings.weight.detach(), before)                    # the model is untouched
    grad = resolve("gradient").instantiate()
    orig = Explanations(grad, b, 0).get([(s, t) for s, t in zip(segs, targets)])
    moved = 0
    for s, t, a, m0 in zip(segs, targets, advs, orig):
        assert a.kept_class
        for v, d in a.rows.items():
            assert np.abs(d).max() <= eps * (1 + 1e-6)                          # inside the eps-ball
        pb = ModelBundle(perturbed_model(b.model, a.rows), b.tokenizer, "adv", b.num_labels, b.max_length)
        assert int(pb.proba_of_segments([s])[0].argmax()) == t                 # the class is kept
        (m1,) = Explanations(grad, pb, 0).get([(s, t)])
        k = k_for(len(m0), 0.15)
        if a.rows and any(np.any(d) for d in a.rows.values()):
            moved += 1
            assert topk_sum_change(m0, m1, k) > 0 or rank_change(m0, m1, k) > 0
    assert moved >= 1


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_task_embedding_metrics(tiny):  # noqa: F811
    from harness.core.submission import resolve
    from harness.engine.task import get_task
    from tasks.adversarial.task import EMB_METRICS

    bundle, _, _, _ = tiny
    task = get_task("adversarial_explanations", n_eval=3, max_words=14, budgets=[1], embedding_budgets=[0.5],
                    embedding_steps=30)
    data = task.prepare()
    targets = bundle.proba_of_segments([e.segments for e in data.examples]).argmax(-1).tolist()
    task.bind(bundle, data.examples, targets)
    ev = task.explain_and_score(resolve("gradient").instantiate(), bundle, data.examples, targets, seed=0)
    assert set(EMB_METRICS) <= set(ev.per_example) and all(ev.per_example[m].shape == (3,) for m in EMB_METRICS)
    rows = ev.tables["adversarial_embedding"]
    assert {(r["objective"], r["budget"]) for r in rows} == {("topk", 0.5), ("topk_constrained", 0.5)}
    with pytest.raises(RuntimeError, match="not built for this bundle"):
        get_task("adversarial_explanations", n_eval=3, max_words=14).explain_and_score(
            resolve("gradient").instantiate(), bundle, data.examples, targets, seed=0)
