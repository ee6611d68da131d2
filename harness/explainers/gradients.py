"""Batched input-gradient machinery for integrated gradients and SmoothGrad.

Both need the gradient of the target-class probability w.r.t. the word embeddings at many
points per example (50 path points, or 50 noisy copies).  :func:`embedding_gradients`
evaluates all (example, point) rows of a batch in as few forward/backward passes as memory
allows:

- examples are sorted by length and packed into chunks of whole examples (at most
  ``max_rows`` rows, and a memory guard for large models); each chunk is cut to its own
  longest input, so short inputs do not pay for the batch's padding;
- gradients are taken w.r.t. the embedding rows only, with the parameters frozen
  (autograd then skips weight gradients and keeps fewer tensors);
- for a BERT sequence classifier the last layer computes the [CLS] row only
  (:func:`harness.explainers.common.cls_only_last_layer`; exact, the pooler reads nothing else),
  with a hand-written backward for its attention (:func:`harness.explainers.common.cls_attention`);
- the other layers run as one fused autograd function each, forward and input-gradient
  backward tile by tile (about 2048 tokens, so a tile's intermediates stay in cache; fused
  query/key/value projection, attention on strided per-head views, residuals folded into the
  backward GEMMs; :func:`harness.explainers.common.fused_layers`);
- the position and segment embeddings are added once, fused with building the points, not by
  the model for every row (:func:`harness.explainers.common.shifted_embeddings`).

All of these are exact up to float rounding (checked in ``tests/test_zoo.py`` against the
plain model, one input and one point at a time).  Every pass goes through ``bundle.model(...)``,
so the bundle's hooks count it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from harness.explainers.common import (cls_only_last_layer, frozen_parameters, fused_layers,
                                      position_type_shift, shifted_embeddings, supports_shifted_embeddings)
from harness.protocols import ExplainBatch

#: rows x tokens x hidden x layers budget of one pass (about 1.6 GB of float32 activations
#: at ~16 saved tensors per layer); caps ``max_rows`` for large models
ACTIVATION_BUDGET = 2.5e7


def pack_examples(lengths: list[int], rows_per_example: int, max_rows: int) -> list[list[int]]:
    """Chunks of example indices (sorted by length), each at most ``max_rows`` rows (>= 1 example)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    per_chunk = max(1, max_rows // max(1, rows_per_example))
    return [order[s:s + per_chunk] for s in range(0, len(order), per_chunk)]


def row_budget(model, length: int, max_rows: int) -> int:
    cfg = getattr(model, "config", None)
    hidden = int(getattr(cfg, "hidden_size", 64) or 64)
    layers = int(getattr(cfg, "num_hidden_layers", 2) or 2)
    return max(1, min(max_rows, int(ACTIVATION_BUDGET // max(1, length * hidden * layers))))


def embedding_gradients(bundle, batch: ExplainBatch, points: Callable[..., torch.Tensor],
                        weights, max_rows: int = 2048, cls_only: bool = True) -> torch.Tensor:
    """(B, T, D) float64: sum_k weights[k] * d p(target) / d rows[k] over the embedding rows
    ``points(idx, T_c, shift)`` of each example.

    ``points(idx, T_c, shift)`` returns the (len(idx), K, T_c, D) embedding rows of the examples
    ``idx`` cut to T_c tokens, K = len(weights), each plus ``shift`` ((len(idx), T_c, D) or
    (1, T_c, D): the position and segment embeddings, see
    :func:`harness.explainers.common.shifted_embeddings`) when ``shift`` is not None; the
    gradient is the same either way (the shift is a constant).  Positions beyond an example's
    length get zero."""
    w32 = torch.as_tensor(np.asarray(weights, dtype=np.float32))
    n_points = int(w32.numel())
    B, T = batch.input_ids.shape
    lengths = batch.attention_mask.sum(1).tolist()
    D = bundle.embeddings.embedding_dim
    out = torch.zeros(B, T, D, dtype=torch.float64)
    model = bundle.model
    budget = row_budget(model, int(max(lengths) if lengths else 1), max_rows)
    shift_all = position_type_shift(model, batch.token_type_ids, T) if cls_only and supports_shifted_embeddings(model) \
        else None
    with (frozen_parameters(model), cls_only_last_layer(model, cls_only), fused_layers(model, cls_only),
          shifted_embeddings(model, shift_all is not None) as shifted, torch.enable_grad()):
        for idx in pack_examples(lengths, n_points, budget):
            Tc = int(max(lengths[i] for i in idx))
            sel = torch.as_tensor(idx, device=batch.input_ids.device)
            shift = None
            if shift_all is not None:
                shift = shift_all[:, :Tc] if shift_all.shape[0] == 1 else shift_all[sel, :Tc]
            rows = points(idx, Tc, shift).reshape(len(idx) * n_points, Tc, D).detach().requires_grad_()
            mask = batch.attention_mask[sel, :Tc].repeat_interleave(n_points, 0)
            types = None
            if batch.token_type_ids is not None and not shifted:
                types = batch.token_type_ids[sel, :Tc].repeat_interleave(n_points, 0)
            target = batch.targets[sel].repeat_interleave(n_points, 0)
            proba = bundle.proba(inputs_embeds=rows, attention_mask=mask, token_type_ids=types)
            y = proba.gather(1, target.view(-1, 1)).sum()
            (g,) = torch.autograd.grad(y, rows)
            g = g.detach().view(len(idx), n_points, Tc * D)
            # sum_k w_k g[:, k]: one batched (1 x K) @ (K x T_c D) product, no permuted copy of g
            avg = torch.matmul(w32.to(device=g.device, dtype=g.dtype).view(1, 1, n_points), g).view(len(idx), Tc, D)
            out[idx, :Tc] = avg.double().cpu()
    return out


def gauss_legendre(n_steps: int, method: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """captum's path-integral nodes alpha in [0, 1] and weights (sum 1) for ``method``."""
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters(method)
    return np.asarray(alphas(n_steps), dtype=np.float64), np.asarray(step_sizes(n_steps), dtype=np.float64)


def integrated_gradients(bundle, batch: ExplainBatch, baseline_ids: torch.Tensor, n_steps: int = 50,
                         method: str = "gausslegendre", max_rows: int = 2048,
                         cls_only: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Integrated gradients of p(target) at the word embeddings, straight path from the embeddings
    of ``baseline_ids`` (same shape as ``batch.input_ids``) to the input's.

    attr[b, t] = sum_d (e - e')[b, t, d] * sum_k w_k dp/de[b, t, d] at e' + alpha_k (e - e'),
    with captum's nodes alpha_k and weights w_k (``method``, default Gauss-Legendre): the same
    quantity as captum's ``LayerIntegratedGradients`` on the word-embedding layer.  Returns
    (B, T) token attributions and the (B,) signed convergence gap f(x) - f(x') - sum_t attr."""
    alphas, weights = gauss_legendre(n_steps, method)
    a = torch.as_tensor(alphas, dtype=torch.float32)
    with torch.no_grad():
        emb_x = bundle.embeddings(batch.input_ids)
        emb_b = bundle.embeddings(baseline_ids)
    diff = emb_x - emb_b

    def points(idx, Tc, shift):
        sel = torch.as_tensor(idx, device=emb_x.device)
        base, d = emb_b[sel, :Tc], diff[sel, :Tc]
        if shift is not None:
            base = base + shift
        return torch.addcmul(base[:, None], a.to(device=base.device, dtype=base.dtype)[None, :, None, None], d[:, None])

    avg = embedding_gradients(bundle, batch, points, weights, max_rows, cls_only)
    attr = (avg * diff.double().cpu()).sum(-1)
    with torch.no_grad():
        both = torch.cat([batch.input_ids, baseline_ids])
        mask = torch.cat([batch.attention_mask, batch.attention_mask])
        types = None if batch.token_type_ids is None else torch.cat([batch.token_type_ids, batch.token_type_ids])
        p = bundle.proba(both, mask, types).double().cpu()
    B = len(batch)
    t = batch.targets.cpu()
    gap = p[:B].gather(1, t.view(-1, 1))[:, 0] - p[B:].gather(1, t.view(-1, 1))[:, 0] - attr.sum(1)
    return attr.numpy(), gap.numpy()


def smoothgrad(bundle, batch: ExplainBatch, seeds: list[int], n_samples: int = 50, noise_level: float = 0.15,
               max_rows: int = 2048, cls_only: bool = True) -> np.ndarray:
    """SmoothGrad (Smilkov et al. 2017) of p(target) at the word embeddings: the mean over
    ``n_samples`` noisy copies x + eps, eps ~ N(0, sigma^2), of the gradient; returns the
    (B, T, D) mean gradient.  sigma = noise_level * (max - min) of the example's own embedding
    values (Smilkov et al.'s noise level, 10-20%); the noise of example i is drawn from
    ``torch.Generator().manual_seed(seeds[i])`` over its real tokens only, so it does not
    depend on the rest of the batch."""
    with torch.no_grad():
        emb = bundle.embeddings(batch.input_ids)
    B, T, D = emb.shape
    lengths = batch.attention_mask.sum(1).tolist()
    sigmas = []
    for i in range(B):
        real = emb[i, :int(lengths[i])]
        sigmas.append(float(noise_level * (real.max() - real.min())) if len(real) else 0.0)

    def points(idx, Tc, shift):
        sel = torch.as_tensor(idx, device=emb.device)
        base = emb[sel, :Tc]
        if shift is not None:
            base = base + shift
        x = torch.empty((len(idx), n_samples, Tc, D), dtype=base.dtype, device=base.device)
        for k, i in enumerate(idx):
            L = int(lengths[i])
            gen = torch.Generator().manual_seed(int(seeds[i]))
            eps = torch.randn((n_samples, L, D), generator=gen, dtype=torch.float32)  # drawn here: still in cache
            torch.add(base[k, :L], eps.to(x.device), alpha=sigmas[i], out=x[k, :, :L])  # x + sigma * N(0, 1)
            if L < Tc:
                x[k, :, L:] = base[k, L:]  # padding (masked out)
        return x

    return embedding_gradients(bundle, batch, points, np.full(n_samples, 1.0 / n_samples), max_rows,
                               cls_only).numpy()
