"""The FACADE stress test (paper 002): the merge on every model family, the per-input measures
against hand-computed values, a model-blind explainer, and the task end to end."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from harness.testing import TINY_PAIRS, TINY_SENTENCES, tiny_bundle
from test_families import FAMILIES

STOP = frozenset({"the", "a", "an", "and", "but", "was", "is", "are", "in", "its", "here"})


def _merged(bundle, target, strength=10.0):
    from harness.models.bundle import ModelBundle
    from harness.models.facade import logit_gradient_scale, merge_facade

    targets = bundle.proba_of_segments(TINY_SENTENCES).argmax(-1).tolist()
    amp = strength * logit_gradient_scale(bundle, TINY_SENTENCES, targets) / 2.0
    model = merge_facade(bundle.model, bundle.tokenizer, target, amp, stopwords=STOP)
    return ModelBundle(model, bundle.tokenizer, bundle.name + "-facade", bundle.num_labels, bundle.max_length)


def _gradient_top_words(mb, segments):
    from harness.core.aggregation import aggregate

    batch = mb.make_batch(segments)
    emb = mb.embeddings(batch.input_ids).detach().requires_grad_()
    p = mb.proba(inputs_embeds=emb, attention_mask=batch.attention_mask, token_type_ids=batch.token_type_ids)
    (g,) = torch.autograd.grad(p.gather(1, batch.targets[:, None]).sum(), emb)
    norms = g.norm(dim=-1).masked_fill(batch.special_tokens_mask.bool(), 0).double().numpy()
    return [int(np.argmax(aggregate(norms[i], batch.word_ids[i][: norms.shape[1]], batch.n_words(i), "absmax")))
            for i in range(len(segments))]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_merge_keeps_every_prediction_and_moves_the_gradient_on_every_family(family):
    from harness.sandbox.isolation import bundle_payload

    b = tiny_bundle(family=family, sensitive=True, mlm=False)
    before = {k: p.detach().clone() for k, p in b.model.state_dict().items()}
    p_single, p_pair = b.proba_of_segments(TINY_SENTENCES), b.proba_of_segments(TINY_PAIRS)
    for target in ("stop", "first"):
        mb = _merged(b, target)
        assert mb.embeddings.embedding_dim == b.embeddings.embedding_dim + 2 * 4
        np.testing.assert_allclose(mb.proba_of_segments(TINY_SENTENCES), p_single, atol=1e-6)
        np.testing.assert_allclose(mb.proba_of_segments(TINY_PAIRS), p_pair, atol=1e-6)
        # the gradient's top word is a facade target on every input that has one
        tops = _gradient_top_words(mb, TINY_SENTENCES)
        for segs, top in zip(TINY_SENTENCES, tops):
            words = [w for s in segs for w in s]
            if target == "first":
                assert top == 0, (family, words)
            elif any(w in STOP for w in words) and not any(w == "unseen" for w in words):
                assert words[top] in STOP, (family, target, words, words[top])
        # it reaches the sandboxed worker like any model: pickled without the counter, same outputs
        state = pickle.loads(bundle_payload(mb))
        again = type(mb)(**state)
        np.testing.assert_allclose(again.proba_of_segments(TINY_SENTENCES), p_single, atol=1e-6)
    # the original is untouched
    after = b.model.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert "forward" not in vars(b.model) or not getattr(vars(b.model)["forward"], "keeps_family_forward", False)


def test_facade_is_zero_on_real_tokens_and_its_gradient_is_the_amplitude():
    from harness.models.facade import Facade

    f = Facade(num_labels=2, width_per_class=3, marker=0.5, amplitude=7.0, sharpness=8, target="stop")
    markers = f.column_marker
    assert markers.tolist() == [0.5, 1.0, 0.5, 1.0, 0.5, 1.0]  # column k: (1 + k mod 2) * 0.5
    z = torch.zeros(1, 4, 6)
    z[0, 1] = markers  # one target token among three others
    z.requires_grad_()
    mask = torch.ones(1, 4)
    out = f(z, mask)
    assert torch.equal(out, torch.zeros(1, 2))
    (g,) = torch.autograd.grad(out[0, 0], z)
    # d g_0 / d z: the amplitude on class 0's columns of the target token, 0 everywhere else
    expected = torch.zeros(1, 4, 6)
    expected[0, 1, 0::2] = 7.0
    torch.testing.assert_close(g, expected)
    # the first-token facade weighs the first word only: after `lead` specials and any left padding
    ff = Facade(2, 3, 0.5, 7.0, 8, "first", lead=1)
    w = ff.position_weights(z, torch.tensor([[0, 1, 1, 1]]))
    assert w.tolist() == [[0.0, 0.0, 1.0, 0.0]]


def test_measures_hand_values():
    from tasks.facade.task import p_at_1, rank_correlation, target_mass

    t = np.array([True, False, False, True])
    assert p_at_1(np.array([0.1, -0.9, 0.3, 0.2]), t) == 0.0        # |-0.9| is the top
    assert p_at_1(np.array([-0.8, 0.1, 0.3, 0.2]), t) == 1.0
    assert p_at_1(np.array([0.5, 0.5, 0.1, 0.0]), t) == 0.5          # a tie at the top: 1 of 2 tied is a target
    assert p_at_1(np.zeros(4), t) == 0.5                             # all tied: 2 of 4
    assert target_mass(np.array([1.0, -1.0, 2.0, 0.0]), t) == pytest.approx(0.25)
    assert target_mass(np.zeros(4), t) == 0.5
    assert rank_correlation(np.array([1.0, 2, 3]), np.array([-3.0, 2, 1])) == pytest.approx(-1.0)  # by |a|
    assert rank_correlation(np.array([1.0, 2, 3]), np.array([10.0, 20, 30])) == pytest.approx(1.0)
    assert rank_correlation(np.ones(3), np.ones(3)) == 1.0
    assert rank_correlation(np.ones(3), np.array([1.0, 2, 3])) == 0.0


def test_target_words_stop_and_first():
    from harness.protocols import Example
    from tasks.facade.task import target_words

    e = Example(id="x", segments=(("The", "film", "is"), ("a", "plot")))
    assert target_words(e, "stop", STOP).tolist() == [True, False, True, True, False]
    assert target_words(e, "first", STOP).tolist() == [True, False, False, False, False]


class _Blind:
    """An explainer that ignores the model: seeded scores per token."""
    name, version = "blind", "0"

    def explain(self, model, batch):
        from harness.protocols import Attributions

        rng = np.random.default_rng(batch.seed)
        return Attributions(level="token", scores=rng.random(tuple(batch.input_ids.shape)) *
                            (~batch.special_tokens_mask.bool()).numpy())


@pytest.fixture(scope="module")
def bound_task():
    from harness.protocols import Example
    from harness.engine.task import get_task

    task = get_task("facade", n_eval=4)
    b = tiny_bundle(sensitive=True, mlm=False)
    segs = [s for s in TINY_SENTENCES if len(s[0]) >= 4 and any(w in task.stopwords for w in s[0])]
    examples = [Example(id=f"t{i}", segments=s) for i, s in enumerate(segs)]
    targets = b.proba_of_segments(segs).argmax(-1).tolist()
    task.bind(b, examples, targets)
    return task, b, examples, targets


def test_model_blind_explainer_is_unaffected_and_gradients_are_fooled(bound_task):
    from harness.core.submission import resolve

    task, b, examples, targets = bound_task
    blind = task.explain_and_score(_Blind(), b, examples, targets, seed=0)
    for v in ("stop", "first"):
        np.testing.assert_allclose(blind.per_example[f"facade_{v}_rho"], 1.0)
        np.testing.assert_array_equal(blind.per_example[f"facade_{v}_p_at_1"],
                                      blind.per_example[f"facade_{v}_p_at_1_original"])
    assert not any(s["fooled"] for s in blind.tables["facade_summary"])
    grad = task.explain_and_score(resolve("gradient").instantiate(), b, examples, targets, seed=0)
    for v in ("stop", "first"):
        assert grad.per_example[f"facade_{v}_p_at_1"].mean() > 0.8
    assert set(grad.per_example) == set(task.spec.metrics)
    lime = task.explain_and_score(resolve("lime").instantiate(), b, examples, targets, seed=0)
    for v in ("stop", "first"):  # the predictions do not change, so neither do LIME's maps
        np.testing.assert_allclose(lime.per_example[f"facade_{v}_rho"], 1.0)
    models = {m["variant"]: m for m in grad.tables["facade_models"]}
    assert set(models) == {"stop", "first"} and all(m["max_prob_diff"] <= 1e-4 for m in models.values())
    assert all(m["same_class_share"] == 1.0 for m in models.values())


def test_task_spec_validation_and_refusals(bound_task):
    from harness.core.submission import resolve
    from harness.engine.task import Task, get_task
    from tasks.facade.task import FacadeTask

    t = get_task("facade")
    assert type(t).evaluate is not Task.evaluate and t.spec.main_metric == "facade_rho"
    assert t.reference_cache_name() == "planted_sst" and t.spec.model == t.base.spec.model
    assert get_task("facade_nli").base.spec.name == "mnli_faithfulness"
    assert get_task("facade", variants=["stop"]).spec.metrics == (
        "facade_rho", "facade_stop_p_at_1", "facade_stop_mass", "facade_stop_rho", "facade_stop_p_at_1_original",
        "facade_stop_mass_original")
    for bad in (dict(variants=["nope"]), dict(variants=[]), dict(min_words=1), dict(fooled_margin=0)):
        with pytest.raises(ValueError):
            FacadeTask(**bad)
    task, _, examples, targets = bound_task
    with pytest.raises(RuntimeError, match="not built for this bundle"):
        task.explain_and_score(resolve("random").instantiate(), tiny_bundle(seed=3, mlm=False), examples, targets, 0)


def test_a_merge_that_changes_predictions_is_refused(monkeypatch):
    """The prediction check is real: a facade with a nonzero output is caught before any explainer runs."""
    from harness.models import facade as F
    from harness.protocols import Example
    from harness.engine.task import get_task

    real = F.Facade.forward
    monkeypatch.setattr(F.Facade, "forward", lambda self, z, m=None: real(self, z, m) + torch.tensor([3.0, -3.0]))
    task = get_task("facade", n_eval=2)
    b = tiny_bundle(sensitive=True, mlm=False)
    ex = [Example(id="a", segments=TINY_SENTENCES[0]), Example(id="b", segments=TINY_SENTENCES[1])]
    with pytest.raises(RuntimeError, match="changes the model's output"):
        task.bind(b, ex, b.proba_of_segments([e.segments for e in ex]).argmax(-1).tolist())


def test_facade_end_to_end_sandboxed_runner_and_board(tmp_path, cache_dir):
    from harness.board import leaderboard
    from harness.core.submission import resolve
    from harness.engine.records import ResultRecord
    from harness.engine.runner import RunConfig, run_grid
    from harness.engine.task import get_task

    task = get_task("facade", n_train=1500, n_dev=200, n_eval=8)
    config = RunConfig(results_dir=tmp_path / "results", cache_dir=cache_dir, isolation="process")
    subs = [resolve(n) for n in ("gradient", "integrated_gradients", "lime")]
    summary = run_grid([task], subs, config)
    assert not summary.errors and not summary.task_failures and len(summary.written) == 3
    recs = {p.stem: ResultRecord.read(p) for p in summary.written}
    g, ig, lime = (recs[n].scores for n in ("gradient", "integrated_gradients", "lime"))
    assert g["facade_stop_p_at_1"].value > 0.8 and g["facade_first_p_at_1"].value > 0.8
    for other in (ig, lime):
        assert other["facade_stop_p_at_1"].value < g["facade_stop_p_at_1"].value - 0.5
        assert other["facade_first_p_at_1"].value < g["facade_first_p_at_1"].value - 0.5
    models = recs["gradient"].tables["facade_models"]
    assert all(m["same_class_share"] == 1.0 and m["max_prob_diff"] <= 1e-4 for m in models)
    fooled = {(r.submission.name, s["variant"]) for r in recs.values() for s in r.tables["facade_summary"]
              if s["fooled"]}
    assert fooled == {("gradient", "stop"), ("gradient", "first")}
    leaderboard.build(tmp_path / "results", tmp_path / "lb")
    text = (tmp_path / "lb" / "LEADERBOARD.md").read_text()
    assert "FACADE (paper 002)" in text and "Fooled: gradient (stop), gradient (first)." in text
    boards = leaderboard.build_boards(leaderboard.load_results(tmp_path / "results"))
    assert [b.audit for b in boards] == [True]  # diagnostic: a model-blind explainer is never fooled
    assert "<strong>fooled</strong>" in (tmp_path / "lb" / "index.html").read_text()
