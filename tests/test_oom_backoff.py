"""Out-of-memory back-off of the model bundle (GPU-first execution): a batch that does not fit the
device is split, later calls are sent in pieces that fit, the results equal those of whole
batches up to float rounding, and the record says how often it happened.  The device's refusal
is simulated (CPU here): the model raises ``torch.OutOfMemoryError`` above a row count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.testing import tiny_bundle


def _tight(bundle, monkeypatch, fits: int) -> list[int]:
    """Make ``bundle``'s model refuse batches of more than ``fits`` rows; returns the row counts
    of the calls that ran."""
    real, ran = bundle.model.forward, []

    def forward(*args, **kwargs):
        rows = (kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"]).shape[0]
        if rows > fits:
            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated: {rows} rows > {fits})")
        ran.append(rows)
        return real(*args, **kwargs)

    monkeypatch.setattr(bundle.model, "forward", forward)
    return ran


def test_a_batch_that_does_not_fit_is_split_and_later_calls_fit(monkeypatch):
    b = tiny_bundle()
    segs = [(("good", "film") * k,) for k in range(1, 11)]
    whole = b.proba_of_segments(segs)
    assert b.oom_backoffs == 0 and b.max_rows is None
    ran = _tight(b, monkeypatch, fits=3)
    np.testing.assert_allclose(b.proba_of_segments(segs), whole, atol=1e-6)
    assert b.oom_backoffs == 2 and b.max_rows == 3     # 10 -> 5 rows failed, 3 fitted
    assert ran == [3, 2, 3, 2] and sum(ran) == 10       # every row once
    ran.clear()
    np.testing.assert_allclose(b.proba_of_segments(segs), whole, atol=1e-6)
    assert ran == [3, 3, 3, 1] and b.oom_backoffs == 2  # sent in pieces that fit: no new failure
    # gradients through the split batch are those of the whole batch
    batch = b.make_batch(segs[:4])
    emb = b.embeddings(batch.input_ids).detach().requires_grad_()
    b.proba(inputs_embeds=emb, attention_mask=batch.attention_mask)[:, 1].sum().backward()
    monkeypatch.undo()
    b.max_rows = None                                   # the whole batch again, in one call
    emb2 = b.embeddings(batch.input_ids).detach().requires_grad_()
    b.proba(inputs_embeds=emb2, attention_mask=batch.attention_mask)[:, 1].sum().backward()
    np.testing.assert_allclose(emb.grad.numpy(), emb2.grad.numpy(), atol=1e-6)


def test_one_row_that_does_not_fit_is_an_error(monkeypatch):
    b = tiny_bundle()
    _tight(b, monkeypatch, fits=0)
    with pytest.raises(torch.OutOfMemoryError, match="simulated: 1 rows"):
        b.proba_of_segments([(("good",),)])


def test_the_record_counts_the_back_offs(small_ctx, tmp_path, monkeypatch):
    from harness.core.submission import resolve
    from harness.engine.runner import RunConfig, run_submission

    config = RunConfig(results_dir=tmp_path, cache_dir=tmp_path / "c", batch_size=8, isolation="none")
    bundle = small_ctx.ref.bundle
    plain = run_submission(resolve("loo_empty"), small_ctx, config)
    assert plain.memory.oom_backoffs == 0 and plain.memory.max_batch_rows is None
    monkeypatch.setattr(bundle, "max_rows", None)
    monkeypatch.setattr(bundle, "oom_backoffs", bundle.oom_backoffs)
    _tight(bundle, monkeypatch, fits=16)
    tight = run_submission(resolve("loo_empty"), small_ctx, RunConfig(results_dir=tmp_path / "t",
                                                                      cache_dir=tmp_path / "c2", batch_size=8,
                                                                      isolation="none"))
    assert tight.status == "ok" and tight.memory.oom_backoffs >= 1 and tight.memory.max_batch_rows <= 16
    for m in plain.scores:
        np.testing.assert_allclose(tight.per_example[m], plain.per_example[m], atol=1e-5)
