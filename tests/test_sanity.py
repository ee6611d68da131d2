"""T5 sanity and bias checks: hand-computed metric values, the bias flags on a constructed flip,
exact randomization of the intended blocks (and exact restoration), the task end to end."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tasks.sanity import metrics as M
from tasks.sanity.bias import (DELETION, DELETION_BERT, bias_matrix, explainer_operator)
from tasks.sanity.randomize import (head_modules, module_seed, randomized, reinitialize, state_checksum,
                                      top_fc_modules, transformer_blocks)

from conftest import FIXTURES

POSITION_ONLY = str(FIXTURES / "submissions" / "position_only")


# --- per-example formulas on hand-made maps --------------------------------------------------

def test_sign_change_share_hand_values():
    a = [0.5, -0.2, 0.0, 0.3, -0.1]
    b = [-0.1, -0.4, 0.7, 0.0, 0.2]
    # word 0 flips +->-, word 4 flips -->+; word 1 keeps its sign; words 2, 3 have a zero (no sign)
    assert M.sign_change_share(a, b) == pytest.approx(2 / 5)
    assert M.sign_change_share(a, a) == 0.0
    assert M.sign_change_share([1, 2, -3], [-1, -2, 3]) == 1.0
    with pytest.raises(ValueError, match="different lengths"):
        M.sign_change_share([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        M.sign_change_share([1, np.nan], [1, 2])


def test_magnitude_and_absolute_change_hand_values():
    a = [2.0, -1.0, 0.0, 1.0]      # scaled: [1, -0.5, 0, 0.5]
    b = [0.5, 0.5, -1.0, 0.0]      # scaled: [0.5, 0.5, -1, 0]
    # | |a'| - |b'| | = [0.5, 0, 1, 0.5] -> 0.5 ; |a' - b'| = [0.5, 1, 1, 0.5] -> 0.75
    assert M.magnitude_change(a, b) == pytest.approx(0.5)
    assert M.absolute_change(a, b) == pytest.approx(0.75)
    np.testing.assert_allclose(M.scale_unit(a), [1, -0.5, 0, 0.5])
    np.testing.assert_array_equal(M.scale_unit([0.0, 0.0]), [0.0, 0.0])
    # scale-free: multiplying a map by a positive constant changes nothing
    assert M.magnitude_change(np.array(a) * 7, b) == pytest.approx(0.5)


def test_spearman_hand_values_ties_and_constants():
    from scipy.stats import spearmanr

    assert M.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert M.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks [1, 2, 3] vs [1, 3, 2]: 1 - 6 * (0 + 1 + 1) / (3 * 8) = 0.5
    assert M.spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 4, 9).astype(float), rng.normal(size=9)   # with ties
        if len(set(a)) > 1:
            assert M.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert M.spearman([1, 1, 1], [1, 1, 1]) == 1.0
    assert M.spearman([1, 1, 1], [1, 2, 3]) == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        M.spearman([1.0], [2.0])


def test_jaccard_at_25_percent_hand_values():
    a = [0.9, 0.1, 0.8, 0.2, 0.0, 0.3, 0.7, 0.4]   # n = 8, top ceil(2) = {0, 2}
    b = [0.9, 0.8, 0.1, 0.2, 0.0, 0.3, 0.7, 0.4]   # top {0, 1}
    assert M.top_set(a) == {0, 2} and M.top_set(b) == {0, 1}
    assert M.jaccard_top(a, b) == pytest.approx(1 / 3)
    assert M.jaccard_top(a, a) == 1.0
    # n = 5: ceil(1.25) = 2 words; ties broken by position (earlier first)
    assert M.top_set([1, 1, 1, 0, 0]) == {0, 1}
    assert M.jaccard_top([1, 1, 1, 0, 0], [0, 1, 1, 1, 0]) == pytest.approx(1 / 3)   # {0,1} vs {1,2}
    # n = 3: at least one word
    assert M.top_set([0.1, 0.5, 0.2]) == {1}
    # signed: a strongly negative word is not "important for the target"
    assert M.top_set([-5.0, 1.0, 0.5, 0.2]) == {1}


class FakeMLM:
    """Always proposes "the" with likelihood 0.9, except after "film", where it proposes "was" (0.6)."""

    name = "fake"

    def top_fills(self, segments, positions, k):
        out = []
        for segs, pos in zip(segments, positions):
            words = [w for s in segs for w in s]
            out.append([[("was", 0.6)] if j > 0 and words[j - 1] == "film" else [("the", 0.9)] for j in pos])
        return out


def test_mlm_predictability_hand_values():
    from tasks.sanity.checks import mlm_predictability

    inputs = [(("The", "film", "was", "good"),), (("a", "man"), ("the", "dog"))]
    # words: The (hit, .9) film (miss, .9) was (hit, .6) good (miss, .9) | a (miss) man (miss) the (hit, .9) dog
    out = mlm_predictability(FakeMLM(), inputs, gold_words=[[2, 3], [2]])
    assert out["n_words"] == 8 and out["n_exact"] == 3
    assert out["exact_match"] == pytest.approx(3 / 8)
    assert out["top1_likelihood_exact"] == pytest.approx((0.9 + 0.6 + 0.9) / 3)
    assert out["top1_likelihood_all"] == pytest.approx((0.9 * 7 + 0.6) / 8)
    assert out["exact_match_gold"] == pytest.approx(2 / 3) and out["n_gold"] == 3
    with pytest.raises(ValueError, match="masked LM"):
        mlm_predictability(None, inputs)


# --- the bias matrix on a constructed flip ---------------------------------------------------

def _rec(name, d, m, params=None):
    score = lambda v, op: SimpleNamespace(value=v, params={"operator": op, "curve_fraction": 0.2})  # noqa: E731
    return SimpleNamespace(status="ok", submission=SimpleNamespace(name=name, params=params or {}),
                           scores={DELETION: score(d, "delete"), DELETION_BERT: score(m, "mlm")}, tables={})


def test_explainer_operator():
    assert explainer_operator(_rec("loo_empty", 0, 0, {"operator": "delete", "space": "log_odds"})) == "delete"
    assert explainer_operator(_rec("leave_one_out", 0, 0, {"operator": "unk"})) == "unk"   # params win
    assert explainer_operator(_rec("lime_bert", 0, 0)) == "mlm"
    assert explainer_operator(_rec("input_marginalization", 0, 0, {"k": 10})) == "mlm"
    assert explainer_operator(_rec("gradient", 0, 0)) is None


def test_bias_flags_a_constructed_flip():
    recs = [_rec("loo_empty", 0.40, 0.52, {"operator": "delete"}),   # best under Deletion
            _rec("input_marginalization", 0.47, 0.49),                # best under Deletion_BERT
            _rec("random", 0.60, 0.60),                               # last under both: no flip
            _rec("gradient", 0.47, 0.55)]                             # ties IM under Deletion: no flip with IM
    mat = bias_matrix("planted_sst", "tiny-bert", recs)
    ranks = {r["submission"]: (r["deletion_rank"], r["deletion_bert_rank"]) for r in mat.rows}
    assert ranks == {"loo_empty": (1, 2), "input_marginalization": (2, 1), "gradient": (2, 3), "random": (4, 4)}
    assert [(f.a, f.b) for f in mat.flips] == [("loo_empty", "input_marginalization")]
    f = mat.flips[0]
    assert f.consistent_with_bias and (f.a_operator, f.b_operator) == ("delete", "mlm") and f.favoured_side == "both"
    assert "loo_empty and Deletion both remove by `delete`" in f.shared
    assert "input_marginalization and Deletion_BERT both remove by `mlm`" in f.shared
    # a flip between two explainers that do not remove words: flagged, but not "the bias"
    mat2 = bias_matrix("t", "m", [_rec("gradient", 0.40, 0.50), _rec("random", 0.45, 0.48)])
    assert [(f.a, f.b, f.consistent_with_bias) for f in mat2.flips] == [("gradient", "random", False)]
    assert "gradient removes by `none`" in mat2.flips[0].shared and mat2.flips[0].favoured_side == ""
    # one side only: LIME (delete) wins under Deletion against gradient, which wins under Deletion_BERT
    mat3 = bias_matrix("t", "m", [_rec("lime", 0.40, 0.50), _rec("gradient", 0.45, 0.48)])
    assert mat3.flips[0].favoured_side == "Deletion" and not mat3.flips[0].consistent_with_bias
    # no flip when the orders agree; fewer than two records -> no matrix
    assert bias_matrix("t", "m", [_rec("a", 0.4, 0.4), _rec("b", 0.5, 0.5)]).flips == []
    assert bias_matrix("t", "m", recs[:1]) is None


def test_bias_flags_are_rendered_under_removal_metrics_and_in_their_section():
    from tasks.sanity.report import board_notes, render_sections

    recs = [_rec("loo_empty", 0.40, 0.52, {"operator": "delete"}), _rec("input_marginalization", 0.47, 0.49),
            _rec("gradient", 0.50, 0.55)]
    board = SimpleNamespace(task="planted_sst", model="tiny-bert", ranked=[(i + 1, r, "") for i, r in enumerate(recs)])
    notes = "\n".join(board_notes(board))
    assert "removal `delete` (`deletion_auc`): explainers removing words the same way: loo_empty" in notes
    assert "removal `mlm` (`deletion_bert_auc`): explainers removing words the same way: input_marginalization" in notes
    assert "order 1 pair(s) of explainers oppositely, 1 of them" in notes
    text = "\n".join(render_sections([board]))
    assert "## Metric bias" in text and "| loo_empty (delete) | input_marginalization (mlm) |" in text
    assert "`mlm` | both |" in text
    assert "| loo_empty | delete | 0.4000 | 1 | 0.5200 | 2 | +1 |" in text
    # the one-paragraph summary above the matrix (ranks 1,2,3 vs 2,1,3: tau-b = 1/3)
    summary = next(ln for ln in text.splitlines() if ln.startswith("Summary: 3 submissions."))
    assert "Kendall tau-b 0.33" in summary and "1 of 3 pairs flip between Deletion and Deletion_BERT; 1 of them" in summary
    assert "Largest rank changes (Deletion_BERT rank minus Deletion rank): input_marginalization -1, loo_empty +1." in summary
    assert "`delete` +1.0 (1), `mlm` -1.0 (1), `none` +0.0 (1)" in summary
    # a board without removal metrics gets no notes
    plain = SimpleNamespace(task="x", model="m", ranked=[(1, SimpleNamespace(
        status="ok", submission=SimpleNamespace(name="a", params={}),
        scores={"gt_overlap": SimpleNamespace(value=1.0, params={})}, tables={}), "")])
    assert board_notes(plain) == [] and render_sections([plain]) == []


def test_tasks_record_both_deletion_metrics():
    from harness.engine.task import get_task

    t = get_task("planted_sst")
    assert {DELETION, DELETION_BERT} <= set(t.spec.metrics)
    assert t.spec.metric_params[DELETION]["operator"] == "delete"
    assert t.spec.metric_params[DELETION_BERT]["operator"] == "mlm"
    assert DELETION_BERT not in get_task("planted_sst", bias_metrics=False).spec.metrics
    m = get_task("mnli_faithfulness", operator="unk")
    assert m.spec.metric_params[DELETION]["operator"] == "unk"        # the task's operator
    assert m.spec.metric_params[DELETION_BERT]["operator"] == "mlm"   # always mlm


# --- randomization: exactly the intended modules, exact restoration --------------------------

def _trained_like(seed=0):
    """A tiny BERT whose every parameter is moved away from its initial value (so that a
    re-initialisation visibly changes LayerNorm weights and biases too)."""
    from harness.testing import tiny_bundle

    bundle = tiny_bundle(seed=seed, sensitive=True)
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in bundle.model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return bundle


def _params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_module_lists_of_a_bert_classifier():
    model = _trained_like().model
    assert transformer_blocks(model) == ["bert.encoder.layer.0", "bert.encoder.layer.1"]
    assert head_modules(model) == ["classifier"]
    assert top_fc_modules(model) == ["bert.pooler", "classifier"]
    with pytest.raises(ValueError, match="no model-family adapter for model_type None"):
        transformer_blocks(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("names", [["bert.encoder.layer.1"], ["bert.encoder.layer.0"], ["classifier"],
                                   ["bert.encoder.layer.0", "bert.encoder.layer.1"], ["bert.pooler", "classifier"]])
def test_randomized_changes_exactly_the_named_modules_and_restores(names):
    model = _trained_like().model
    before, checksum = _params(model), state_checksum(model)
    std = model.config.initializer_range
    with randomized(model, names, seed=5) as written:
        inside = {k for k in before if any(k.startswith(n + ".") for n in names)}
        assert set(written) == inside and inside
        now = _params(model)
        for k, v in now.items():
            if k in inside:
                assert not torch.equal(v, before[k]), f"{k} was not re-initialised"
                if k.endswith("LayerNorm.weight"):
                    assert torch.all(v == 1)
                elif k.endswith("bias"):
                    assert torch.all(v == 0)
                else:
                    assert abs(float(v.std()) - std) < 0.5 * std, k   # N(0, initializer_range)
            else:
                assert torch.equal(v, before[k]), f"{k} changed but is outside {names}"
        assert state_checksum(model) != checksum
    assert state_checksum(model) == checksum
    assert all(torch.equal(v, before[k]) for k, v in _params(model).items())


def test_randomization_is_seeded_nested_and_restores_after_an_error():
    model = _trained_like().model
    checksum = state_checksum(model)
    top, bottom = "bert.encoder.layer.1", "bert.encoder.layer.0"
    with randomized(model, [top], seed=3):
        alone = _params(model)
    with randomized(model, [bottom, top], seed=3):
        both = _params(model)
    with randomized(model, [top], seed=4):
        other = _params(model)
    key = f"{top}.attention.self.query.weight"
    assert torch.equal(alone[key], both[key])            # cascading steps nest
    assert not torch.equal(alone[key], other[key])       # another seed, other weights
    assert module_seed(3, top) != module_seed(3, bottom)
    with pytest.raises(RuntimeError, match="boom"):
        with randomized(model, [top], seed=3):
            raise RuntimeError("boom")
    assert state_checksum(model) == checksum


def test_reinitialize_refuses_unknown_layer_types():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(3))

    m = torch.nn.Module()
    m.odd = Odd()
    with pytest.raises(ValueError, match="unknown layer type"):
        reinitialize(m, ["odd"], seed=0)


# --- the task's evaluation on tiny models ----------------------------------------------------

class Spy:
    def __init__(self, inner):
        self.inner, self.batches = inner, []
        self.name, self.version = inner.name, inner.version

    def explain(self, model, batch):
        self.batches.append(batch)
        return self.inner.explain(model, batch)


@pytest.fixture(scope="module")
def tiny_sanity():
    """A sanity task bound to a sensitive tiny BERT (the "reference") and another seed's tiny BERT."""
    from harness.protocols import Example
    from harness.engine.task import get_task
    from harness.testing import TINY_SENTENCES, tiny_mlm

    task = get_task("sanity", n_eval=4, head_seeds=[1, 2], init_seeds=[1])
    ref = _trained_like(seed=0)
    other = _trained_like(seed=1)
    init = [(1, SimpleNamespace(bundle=other, dev_accuracy=1.0, model_hash="h1"))]
    task._mlm_inputs = list(TINY_SENTENCES)
    task._mlm_gold = None
    examples = [Example(id=f"t{i}", segments=s) for i, s in enumerate(TINY_SENTENCES[:4])]
    targets = ref.proba_of_segments([e.segments for e in examples]).argmax(-1).tolist()
    task.bind(ref, init, tiny_mlm(), examples=examples, targets=targets)
    return task, ref, examples, targets


def test_evaluate_position_only_random_and_gradient(tiny_sanity):
    from harness.core.submission import resolve

    task, ref, examples, targets = tiny_sanity
    checksum = state_checksum(ref.model)
    evs = {}
    for name in ("random", "gradient_x_input", POSITION_ONLY):
        spy = Spy(resolve(name).instantiate())
        evs[name] = ev = task.explain_and_score(spy, ref, examples, targets, seed=0)
        assert state_checksum(ref.model) == checksum                         # the model is restored
        # 1 + 1 + 2 head + 2 cascade + 1 independent + 1 init + 1 untrained variants
        assert len(spy.batches) == 9 and ev.details["head_sign_change"]["n_variants"] == 9
        assert [b.seed for b in spy.batches] == list(range(9))                # each variant its own seed
        assert all(b.targets.tolist() == targets for b in spy.batches)        # the reference's targets
        assert set(ev.per_example) == set(task.spec.metrics)
        assert all(v.shape == (4,) for v in ev.per_example.values())
    pos = evs[POSITION_ONLY]
    for m in ("rho_repeat", "rho_top_block", "rho_all_blocks", "rho_independent_mean", "dit_jaccard", "uit_jaccard"):
        np.testing.assert_array_equal(pos.per_example[m], 1.0, err_msg=m)
    np.testing.assert_array_equal(pos.per_example["head_sign_change"], 0.0)
    assert pos.tables["sanity_summary"][0]["insensitive"] is True and pos.details["head_sign_change"]["insensitive"] == 1
    rnd = evs["random"]
    assert abs(rnd.per_example["rho_repeat"].mean()) < 0.6 and not rnd.tables["sanity_summary"][0]["insensitive"]
    gxi = evs["gradient_x_input"]
    np.testing.assert_allclose(gxi.per_example["rho_repeat"], 1.0)            # deterministic
    assert gxi.per_example["rho_top_block"].mean() < 0.9
    layers = {(r["mode"], r["step"]): r for r in gxi.tables["sanity_layers"]}
    assert set(layers) == {("full", 0), ("cascading", 1), ("cascading", 2), ("independent", 1), ("independent", 2)}
    assert layers[("independent", 1)]["spearman_mean"] == layers[("cascading", 1)]["spearman_mean"]  # both: top block
    assert [r["kind"] for r in gxi.tables["sanity_consistency"]] == ["DIT", "UIT", "UIT"]
    assert gxi.tables["sanity_mlm"][0]["status"] == "measured"
    behaviour = {r["variant"]: r for r in gxi.tables["sanity_variants"]}
    assert set(behaviour) == {"original", "head_1", "head_2", "cascade_1", "cascade_2", "independent_1", "init_0",
                              "untrained"}
    assert behaviour["original"]["prediction_agreement"] == 1.0       # targets are the reference's predictions
    p_orig = ref.proba_of_segments([e.segments for e in examples])[np.arange(4), targets].mean()
    assert behaviour["original"]["p_target_mean"] == pytest.approx(p_orig)


def test_evaluate_refuses_an_unbound_bundle(tiny_sanity):
    from harness.core.submission import resolve

    task, _, examples, targets = tiny_sanity
    with pytest.raises(RuntimeError, match="not built for this bundle"):
        task.explain_and_score(resolve("random").instantiate(), _trained_like(seed=2), examples, targets, seed=0)


def test_sanity_task_spec_and_validation():
    from harness.engine.task import Task, get_task

    t = get_task("sanity")
    assert type(t).evaluate is not Task.evaluate and t.spec.main_metric == "head_sign_change"
    assert t.base.spec.name == "planted_sst" and t.spec.model == t.base.spec.model
    assert "random" in t.default_submissions and "lime" in t.default_submissions
    assert get_task("sanity_nli").base.spec.name == "mnli_faithfulness"
    with pytest.raises(ValueError, match="must differ"):
        get_task("sanity", init_seeds=[0])
    from tasks.sanity.task import SanityTask

    with pytest.raises(ValueError, match="base must be"):
        SanityTask(base="nope")


# --- end to end: runner, records, leaderboard sections and plots -----------------------------

def test_sanity_end_to_end_runner_and_leaderboard(tmp_path, cache_dir):
    from harness.board import leaderboard
    from harness.engine.records import ResultRecord
    from harness.engine.runner import RunConfig, run_grid
    from harness.core.submission import resolve
    from harness.engine.task import get_task

    task = get_task("sanity", n_train=1500, n_dev=200, n_eval=6, mlm_n_eval=40, head_seeds=[1, 2], init_seeds=[1])
    config = RunConfig(results_dir=tmp_path / "results", cache_dir=cache_dir, all_submissions=True)
    summary = run_grid([task], [resolve("random"), resolve("gradient"), resolve(POSITION_ONLY)], config)
    assert not summary.errors and not summary.task_failures and len(summary.written) == 3
    recs = {p.stem: ResultRecord.read(p) for p in summary.written}
    assert recs["position_only"].scores["rho_all_blocks"].value == 1.0
    assert recs["position_only"].tables["sanity_summary"][0]["insensitive"] is True
    assert recs["gradient"].scores["rho_top_block"].value < 0.9
    assert abs(recs["random"].scores["rho_top_block"].value) < 0.5
    mlm = recs["random"].tables["sanity_mlm"][0]
    # over the planted words of the first 40 inputs: 1 to 4 per input on the default
    assert mlm["status"] == "measured" and 0 <= mlm["exact_match"] <= 1 and 40 <= mlm["n_gold"] <= 160
    assert [m["seed"] for m in recs["random"].tables["sanity_models"]] == [0, 1]
    assert recs["random"].tables["sanity_variants"][0]["prediction_agreement"] == 1.0
    assert all(m["dev_accuracy"] >= 0.99 for m in recs["random"].tables["sanity_models"])
    paths = leaderboard.build(tmp_path / "results", tmp_path / "lb")
    text = (tmp_path / "lb" / "LEADERBOARD.md").read_text()
    assert "## Sanity checks" in text and "| position_only | none |" in text and "**insensitive**" in text
    assert "Masked-LM predictability" in text and "| cascade_1 | block 2 |" in text
    pngs = sorted(p.name for p in paths if p.suffix == ".png")
    assert pngs == [f"sanity__tiny-bert__{n}.png" for n in ("gradient", "position_only", "random")]
    # the sanity board is diagnostic: shown, but not part of the overall rank
    boards = leaderboard.build_boards(leaderboard.load_results(tmp_path / "results"))
    assert [b.audit for b in boards] == [True] and leaderboard.overall(boards) == []
    assert "diagnostic boards" in leaderboard.OVERALL_RULE
    assert "Diagnostic board: shown, not counted in the overall rank." in text
    page = (tmp_path / "lb" / "index.html").read_text()
    assert 'data-tab="bias-sanity"' in page and "<h3>Sanity checks</h3>" in page
    assert "<strong>insensitive</strong>" in page and "sanity__tiny-bert__position_only.png" in page
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths if p.suffix == ".png")


def test_position_only_fixture_is_a_conformant_submission():
    """The model-independent fixture is a valid submission (so the sanity checks, not the
    conformance suite, are what catch it)."""
    from harness.core.submission import load_submission
    from harness.engine.validation import validate

    report = validate(load_submission(POSITION_ONLY))
    assert report.passed, report.render()
