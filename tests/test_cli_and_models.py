"""CLI entry points, model recipes, the real MiniLM sub-word path, and real SST-2 end to end."""

import json

import numpy as np
import pytest

from harness.cli.main import main
from harness.models.reference import ModelRecipe, recipe_from

from conftest import FIXTURES, SMALL_TASK, shared_data


def test_validate_cli_passes_baseline_and_fails_broken(capsys):
    assert main(["validate", "random"]) == 0
    assert "validate random: PASS" in capsys.readouterr().out
    assert main(["validate", str(FIXTURES / "submissions" / "wrong_shape"),
                 str(FIXTURES / "submissions" / "nan_scores")]) == 1
    out = capsys.readouterr().out
    assert "shape: expected token scores of shape (6, 14) (batch, tokens), got (6, 13)" in out
    assert "finite: example 0 has 5 NaN or infinite word scores" in out
    assert main(["validate", "randm"]) == 1
    assert "did you mean 'random'" in capsys.readouterr().out


def test_run_cli_then_leaderboard(tmp_path, cache_dir, capsys):
    res, out = tmp_path / "results", tmp_path / "board"
    # two of the default tasks, small (the NLI tasks' own end-to-end runs are in test_nli_tasks.py)
    args = ["run", "--tasks", "planted_sst", "fragility", "--submissions", "random", "leave_one_out",
            "--n-eval", "8", "--results-dir", str(res),
            "--out-dir", str(out), "--cache-dir", str(cache_dir)]
    for k, v in SMALL_TASK.items():
        if k != "n_eval":
            args += ["--set", f"{k}={v}"]
    assert main(args) == 0
    assert (out / "LEADERBOARD.md").exists()
    first = (out / "leaderboard.json").read_bytes()
    assert main(["leaderboard", "--results-dir", str(res), "--out-dir", str(out)]) == 0
    assert (out / "leaderboard.json").read_bytes() == first
    doc = json.loads(first)
    assert [r["submission"] for r in doc["overall"]] == ["leave_one_out", "random"]
    capsys.readouterr()
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    tasks_line = next(line for line in listing.splitlines() if line.startswith("tasks: "))
    assert {"planted_sst", "planted_sst2"} <= set(tasks_line[len("tasks: "):].split(", "))
    assert "  integrated_gradients " in listing and "  random 1.0.0" in listing


def test_schema_forbids_extra_fields(capsys):
    main(["schema"])
    schema = json.loads(capsys.readouterr().out)
    assert schema["additionalProperties"] is False
    assert {"timing", "cost", "provenance", "memory", "scores"} <= set(schema["properties"])


def test_model_presets():
    assert recipe_from(None) == ModelRecipe()
    assert recipe_from("minilm").kind == "minilm"
    assert recipe_from("hf:roberta-base").hf_name == "roberta-base"
    assert recipe_from({"epochs": 5}).epochs == 5
    with pytest.raises(ValueError, match="did you mean"):
        recipe_from("minilmm")


def test_minilm_subword_alignment_and_aggregation():
    pytest.importorskip("all_minilm_l6_v2", reason="MiniLM weights package not installed "
                        "(bash scripts/setup.sh --with-minilm)")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from harness.core.aggregation import aggregate
    from harness.models.bundle import ModelBundle
    from harness.models.pretrained import minilm_path
    from harness.core.submission import resolve

    path = minilm_path()
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    bundle = ModelBundle(model, tok, "minilm", 2, max_length=128)
    pair = bundle.make_batch([(("ok",), ("the", "hypothesis"))])
    assert [w for w in pair.word_ids[0] if w is not None] == [0, 1, 2]
    assert pair.token_type_ids[0].tolist() == [0, 0, 0, 1, 1, 1]
    batch = bundle.make_batch([(("an", "unbelievably", "dull", "film"),), (("ok", "then"),)])
    row = batch.word_ids[0]
    assert row.count(1) >= 2, "'unbelievably' should split into several word pieces"
    assert row[0] is None and [w for w in row if w is not None] == sorted(w for w in row if w is not None)
    attr = resolve("gradient_x_input").instantiate().explain(bundle, batch)
    from harness.core.outputs import check_attributions, word_maps

    raw = check_attributions(attr, batch)
    maps = word_maps(attr, raw, batch, "absmax")
    assert [m.shape for m in maps] == [(4,), (2,)]
    toks = raw[0][[i for i, w in enumerate(row[: raw[0].size]) if w == 1]]
    assert maps[0][1] == toks[np.argmax(np.abs(toks))]
    assert aggregate(raw[0], row[: raw[0].size], 4, "sum")[1] == pytest.approx(toks.sum())


def test_truncation_policy_drops_trailing_words_and_counts():
    from harness.models.encoding import encode
    from harness.testing import tiny_bundle

    b = tiny_bundle()
    long_input = (tuple(["film"] * 70),)
    enc = encode(b.tokenizer, [long_input, (("good",),)], max_length=64)
    assert enc.truncated == [True, False]
    assert len(enc.segments[0][0]) == 62 and enc.input_ids.shape[1] == 64
    pair = (tuple(["dog"] * 50), tuple(["cat"] * 20))
    enc = encode(b.tokenizer, [pair], max_length=64)
    assert [len(s) for s in enc.segments[0]] == [41, 20]


@pytest.mark.slow
def test_real_sst2_end_to_end(tmp_path, cache_dir):
    """Planted-token GLUE SST-2 from the local folder: model > 99%; on the discriminating default
    Kernel SHAP finds the planted words and random does not; on the classic one-word variant
    integrated gradients finds the planted word."""
    from harness.engine.records import ResultRecord
    from harness.engine.runner import RunConfig, run_grid
    from harness.core.submission import resolve
    from harness.engine.task import get_task

    d = shared_data("sst2")
    task = get_task("planted_sst2", data_dir=str(d), n_eval=60, bias_metrics=False)
    easy = get_task("planted_sst2", data_dir=str(d), n_eval=60, bias_metrics=False, variant="easy")
    recs = {}
    for t, subs in ((task, ("random", "integrated_gradients", "kernel_shap")), (easy, ("random", "integrated_gradients"))):
        out = tmp_path / t.spec.params["variant"]
        # no masked LM: this test checks the planted words on real data, and each variant would
        # train its own (their vocabularies differ), about 35 s each
        summary = run_grid([t], [resolve(s) for s in subs], RunConfig(results_dir=out, cache_dir=cache_dir, mlm="none"))
        assert not summary.task_failures and not summary.errors
        recs.update({(t.spec.params["variant"], p.stem): ResultRecord.read(p) for p in out.rglob("*.json")})
    ig, shap, rnd = (recs["discriminating", n] for n in ("integrated_gradients", "kernel_shap", "random"))
    assert ig.model.dev_accuracy > 0.99 and ig.task.data_source == "local:glue/sst2"
    assert "variant" not in ig.run_spec.task_overrides and task.spec.params["variant"] == "discriminating"
    assert shap.scores["gt_overlap"].value > 0.8
    assert rnd.scores["gt_overlap"].value < 0.15 < ig.scores["gt_overlap"].value
    assert recs["easy", "integrated_gradients"].scores["gt_overlap"].value > 0.9
    assert recs["easy", "random"].scores["gt_overlap"].value < 0.3
