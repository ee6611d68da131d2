"""Throughput of the classifier at each declared precision (``--dtype``), through the harness's
bundle and through plain PyTorch.

For each model and dtype the benchmark pushes the same rows (64 inputs of 40 words, in batches
of 32) through

- the **bundle** (``ModelBundle.proba`` after ``set_dtype``: its counter hook and, below float32,
  the autocast hooks that return float32 outputs), and
- **plain PyTorch**: ``model(**batch).logits`` under ``torch.inference_mode()`` (and, below
  float32, ``torch.autocast(device, dtype)`` around the call, with ``.float()`` on the logits),
  the floor a user writing the loop by hand would get,

and reports rows per second for both and ``ratio = bundle time / plain time`` (1.0: the
harness's path costs nothing over plain PyTorch).  ``extra_info``: ``rows_per_s``,
``plain_rows_per_s``, ``ratio``, ``max_abs_diff`` (the largest probability difference from float32).

Run: ``pytest benchmarks/ -k precision --benchmark-only -s``; a table is printed at the end.
On a CPU without bfloat16 matrix units, bfloat16 is usually *slower* than float32: the setting
is for GPUs (and CPUs with AMX); measure on the target hardware.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from bench_floor import _model, _words

N_INPUTS, N_WORDS, BATCH, ROUNDS = 64, 40, 32, 5
TABLE: dict[tuple, dict] = {}


@pytest.fixture(scope="module", params=["tiny-bert", "minilm"])
def model(request):
    torch.manual_seed(0)
    return _model(request.param)


def _batches(bundle):
    words = _words()
    segs = [(tuple(words[i * 7:i * 7 + N_WORDS]),) for i in range(N_INPUTS)]
    return [bundle.encode(segs[s:s + BATCH]) for s in range(0, N_INPUTS, BATCH)]


def _plain(model, encs, dtype):
    out = []
    dev = next(model.parameters()).device.type
    with torch.inference_mode():
        for e in encs:
            kw = {"input_ids": e.input_ids, "attention_mask": e.attention_mask}
            if e.token_type_ids is not None:
                kw["token_type_ids"] = e.token_type_ids
            if dtype == "float32":
                out.append(torch.softmax(model(**kw).logits, -1))
            else:
                with torch.autocast(dev, dtype=getattr(torch, dtype)):
                    logits = model(**kw).logits
                out.append(torch.softmax(logits.float(), -1))
    return torch.cat(out)


def _bundle(bundle, encs):
    with torch.inference_mode():
        return torch.cat([bundle.proba(e.input_ids, e.attention_mask, e.token_type_ids) for e in encs])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_precision_throughput(benchmark, model, dtype):
    encs = _batches(model)
    model.set_dtype("float32")
    ref = _bundle(model, encs)
    model.set_dtype(dtype)
    # the plain loop runs the model without the bundle's hooks: a copy without them
    from harness.models.bundle import unhooked_copy

    plain_model = unhooked_copy(model.model).eval()
    got = _bundle(model, encs)
    _plain(plain_model, encs, dtype)  # warm-up
    ours, plain = [], []
    for _ in range(ROUNDS):  # interleaved rounds
        t0 = time.perf_counter()
        _bundle(model, encs)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _plain(plain_model, encs, dtype)
        plain.append(time.perf_counter() - t0)
    benchmark.pedantic(lambda: _bundle(model, encs), rounds=1, iterations=1)
    o, p = statistics.median(ours), statistics.median(plain)
    info = {"rows_per_s": N_INPUTS / o, "plain_rows_per_s": N_INPUTS / p, "ratio": o / p,
            "max_abs_diff": float((got - ref).abs().max())}
    benchmark.extra_info.update(info)
    TABLE[(model.name, dtype)] = info
    model.set_dtype("float32")


def teardown_module(_module):
    if not TABLE:
        return
    print("\nmodel      dtype     rows/s (bundle)  rows/s (plain)  bundle/plain  max |p - p_float32|")
    for (m, d), i in sorted(TABLE.items()):
        print(f"{m:<10} {d:<9} {i['rows_per_s']:>15.1f} {i['plain_rows_per_s']:>15.1f} {i['ratio']:>13.3f} "
              f"{i['max_abs_diff']:>20.4f}")
