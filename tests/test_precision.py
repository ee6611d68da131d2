"""The declared lower precision (``--dtype``): mixed precision under ``torch.autocast`` on every
model family, float32 outputs to callers, the dtype recorded in the run spec (a separate cell,
while float32 keys stay as they were), passed to sandboxed workers, and shown on the board."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from harness.models.families import load_all
from harness.testing import tiny_batch, tiny_bundle


@pytest.mark.parametrize("family", sorted(load_all()))
def test_bfloat16_runs_the_classifier_in_mixed_precision_and_returns_float32(family):
    bundle = tiny_bundle(family=family, sensitive=True, mlm=False)
    batch = tiny_batch(bundle)
    ref = bundle.proba(batch.input_ids, batch.attention_mask, batch.token_type_ids).detach()
    inner = []
    linear = next(m for m in bundle.model.modules() if isinstance(m, torch.nn.Linear))
    h = linear.register_forward_hook(lambda _m, _a, out: inner.append(out.dtype))
    bundle.set_dtype("bfloat16")
    emb = bundle.embeddings(batch.input_ids).detach().requires_grad_(True)
    before = bundle.counter.snapshot()
    logits = bundle.logits(attention_mask=batch.attention_mask, token_type_ids=batch.token_type_ids, inputs_embeds=emb)
    h.remove()
    assert inner and set(inner) == {torch.bfloat16}          # the matmuls ran in bfloat16
    assert logits.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
    logits[:, 0].sum().backward()                           # gradients reach the float32 input
    assert emb.grad is not None and emb.grad.dtype == torch.float32 and torch.isfinite(emb.grad).all()
    after = bundle.counter.snapshot()
    assert after[0] - before[0] == len(batch.input_ids) and after[1] - before[1] == len(batch.input_ids)
    # bfloat16 keeps ~3 significant digits: close to float32, not equal
    low = torch.softmax(logits, -1).detach()
    assert torch.allclose(low, ref, atol=0.08) and not torch.equal(low, ref)
    # back to float32: exactly the float32 outputs again
    bundle.set_dtype("float32")
    np.testing.assert_array_equal(bundle.proba(batch.input_ids, batch.attention_mask, batch.token_type_ids).detach(),
                                  ref)


def test_a_forward_that_raises_leaves_the_autocast_region():
    bundle = tiny_bundle(mlm=False)
    bundle.set_dtype("bfloat16")
    with pytest.raises(Exception):
        bundle.model(input_ids=torch.full((1, 3), 10 ** 6))  # an id outside the vocabulary
    assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16, float16"):
        bundle.set_dtype("int8")


def test_the_worker_payload_carries_the_dtype_and_no_hooks():
    import pickle

    from harness.models.bundle import ModelBundle
    from harness.sandbox.isolation import bundle_payload

    bundle = tiny_bundle(mlm=False)
    bundle.set_dtype("bfloat16")
    state = pickle.loads(bundle_payload(bundle))
    assert state["dtype"] == "bfloat16"
    m = state["model"]
    assert not m._forward_hooks and not m._forward_pre_hooks  # the parent's hooks stay with the parent
    assert len(bundle.model._forward_hooks) == 2 and len(bundle.model._forward_pre_hooks) == 1
    worker = ModelBundle(**state)  # as the worker rebuilds it: its own counter and precision hooks
    batch = tiny_batch(worker)
    before = worker.counter.forward
    assert worker.logits(batch.input_ids, batch.attention_mask, batch.token_type_ids).dtype == torch.float32
    assert worker.counter.forward - before == len(batch.input_ids)


def test_float32_run_keys_are_unchanged_and_a_lower_precision_is_another_key():
    import hashlib

    from harness.engine.records import RunSpec

    fields = dict(harness_version="x", task="t", task_spec_hash="a", data_hash="b", model_recipe={}, model_hash="c",
                  submission="s", submission_version="1", code_hash="d", shared_code_hash="e", aggregation="absmax",
                  batch_size=16, seed=0, device="cpu", isolation={"mode": "none"})
    spec = RunSpec(**fields)
    old = {k: v for k, v in spec.model_dump(mode="json").items() if k != "dtype"}  # a record from before dtype
    assert spec.key() == hashlib.sha256(json.dumps(old, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    assert RunSpec(**fields, dtype="bfloat16").key() != spec.key()
    assert RunSpec.model_validate(old).dtype == "float32"


SMALL = ["--set", "n_train=800", "--set", "n_dev=100", "--set", "bias_metrics=false", "--set", 'variant="easy"']


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_a_bfloat16_run_is_recorded_scored_and_shown(tmp_path, isolation):
    from harness.cli.main import main
    from harness.engine.records import ResultRecord

    def run(*extra):
        return main(["run", "--tasks", "planted_sst", "--submissions", "gradient", "loo_empty", "--n-eval", "6",
                     *SMALL, "--results-dir", str(tmp_path / "r"), "--out-dir", str(tmp_path / "o"), "--cache-dir",
                     str(tmp_path / "c"), "--isolation", isolation, "--mlm", "none", *extra])

    assert run() == 0
    f32 = {s: ResultRecord.read(tmp_path / "r" / "planted_sst" / "tiny-bert" / f"{s}.json") for s in ("gradient", "loo_empty")}
    assert run("--dtype", "bfloat16") == 0
    for s, old in f32.items():
        rec = ResultRecord.read(tmp_path / "r" / "planted_sst" / "tiny-bert" / f"{s}.json")
        assert rec.status == "ok" and rec.run_spec.dtype == "bfloat16" and old.run_spec.dtype == "float32"
        assert rec.run_spec.key() != old.run_spec.key()        # re-run, not skipped as up to date
        assert rec.scores["gt_overlap"].value == pytest.approx(old.scores["gt_overlap"].value, abs=0.25)
    md = (tmp_path / "o" / "LEADERBOARD.md").read_text()
    assert "(bfloat16, mixed precision)" in md
    if isolation == "none":  # a reviewer's re-run takes the precision from the run spec: the same scores
        target = tmp_path / "r" / "planted_sst" / "tiny-bert" / "gradient.json"
        assert main(["verify", str(target), "--cache-dir", str(tmp_path / "c"), "--n-eval", "6", *SMALL]) == 0
