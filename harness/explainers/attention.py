"""Attention-based attributions: pure functions of an attention tensor, and model access.

Definitions (paper 001 sec. 2.2.2.3), for an attention tensor A of shape (L, H, T, T) -- layers,
heads, query j, key i -- over the T real tokens of one input:

- Average Attention: AverageAttention_i = 1/(L H T) sum_l sum_h sum_j A[l, h, j, i], the
  attention paid to token i, averaged over all layers, heads and all query positions j.
- Attention Rollout (Abnar & Zuidema 2020, paper 001's [1]): per layer the head-averaged
  attention, mixed with the identity for the residual connection,
  Ã_l = r I + (1 - r) mean_h A[l, h] (r = 0.5 as in Abnar & Zuidema, rows renormalised to 1),
  multiplied through the layers, R = Ã_L ... Ã_2 Ã_1, and then, as paper 001 writes it,
  AttentionRollout_i = 1/T sum_j R[j, i] (the average over query positions, not the [CLS] row
  alone; ``source="cls"`` gives R[0, i] instead).

Batched tensors (B, L, H, T, T) come with a (B, T) mask of real tokens: padded query rows are
left out of the averages and padded key columns carry zero attention, so a score does not
depend on how much the batch was padded.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np


def _batched(attn, mask):
    import torch

    a = torch.as_tensor(attn, dtype=torch.float64)
    if a.dim() == 4:
        a = a.unsqueeze(0)
    if a.dim() != 5 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"attention must be (L, H, T, T) or (B, L, H, T, T), got {tuple(a.shape)}")
    B, T = a.shape[0], a.shape[-1]
    m = torch.ones(B, T, dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool().reshape(B, T)
    return a, m


def average_attention(attn, mask=None) -> np.ndarray:
    """(B, T) [or (1, T) for an (L, H, T, T) input]: mean over layers, heads and real query rows."""
    a, m = _batched(attn, mask)
    rows = m.to(a.dtype)[:, None, None, :, None]  # (B, 1, 1, T, 1): real query rows
    per_key = (a * rows).sum(3) / rows.sum(3).clamp_min(1.0)  # (B, L, H, T): mean over j
    out = per_key.mean((1, 2))
    return (out * m.to(a.dtype)).numpy()


def rollout_matrix(attn, mask=None, residual: float = 0.5):
    """(B, T, T) rolled-out attention R = Ã_L ... Ã_1 with Ã_l = r I + (1 - r) mean_h A_l, rows renormalised."""
    import torch

    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual must be in [0, 1], got {residual}")
    a, m = _batched(attn, mask)
    B, L, H, T, _ = a.shape
    eye = torch.eye(T, dtype=a.dtype).expand(B, T, T)
    keep = (m[:, :, None] & m[:, None, :]).to(a.dtype)  # real rows x real columns
    R = eye.clone()
    for layer in range(L):
        mixed = residual * eye + (1.0 - residual) * a[:, layer].mean(1)
        mixed = mixed * keep + eye * (1 - keep) * (~m[:, :, None]).to(a.dtype)  # padding rows: identity
        mixed = mixed / mixed.sum(-1, keepdim=True).clamp_min(1e-30)
        R = mixed @ R
    return R


def attention_rollout(attn, mask=None, residual: float = 0.5, source: str = "mean") -> np.ndarray:
    """(B, T) rollout scores: mean over real query rows j of R[j, i] (``source="mean"``, paper 001)
    or the [CLS] row R[0, i] (``source="cls"``)."""
    import torch

    if source not in ("mean", "cls"):
        raise ValueError(f"source must be 'mean' or 'cls', got {source!r}")
    a, m = _batched(attn, mask)
    R = rollout_matrix(a, m, residual)
    mf = m.to(R.dtype)
    if source == "cls":
        out = R[:, 0, :]
    else:
        out = (R * mf[:, :, None]).sum(1) / mf.sum(1, keepdim=True).clamp_min(1.0)
    return (out * mf).numpy() if isinstance(out, torch.Tensor) else out


@contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def forward_with_attentions(bundle, batch, grad: bool = False):
    """One forward pass of the classifier with ``output_attentions=True``.

    Returns (probabilities (B, C), tuple of L attention tensors (B, H, T, T)).  The model
    family's adapter switches the attention implementation to ``eager`` for the call where the
    family needs it (GPT-2, Llama and ModernBERT return no weights under ``sdpa``) and puts it
    back afterwards (:meth:`harness.models.families.Family.attentions`); a family without
    accessible attention is refused with a clear error.  Counted by the bundle's hooks like any call.
    """
    import torch

    kwargs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "output_attentions": True}
    if batch.token_type_ids is not None:
        kwargs["token_type_ids"] = batch.token_type_ids
    ctx = torch.enable_grad() if grad else torch.no_grad()
    fam = bundle.family_or_none
    access = fam.attentions(bundle.model) if fam is not None else _quiet_transformers()
    with ctx, _quiet_transformers(), access:
        out = bundle.model(**kwargs)
    attentions = getattr(out, "attentions", None)
    if not attentions or any(a is None for a in attentions):
        impl = getattr(bundle.model.config, "_attn_implementation", "?")
        raise RuntimeError(f"the model returned no attention weights (attention implementation {impl!r}); "
                           "load it with attn_implementation='eager' to use attention explainers")
    return torch.softmax(out.logits, -1), attentions


def stack_attentions(attentions):
    """Tuple of L (B, H, T, T) tensors -> (B, L, H, T, T) float64 tensor (detached)."""
    import torch

    return torch.stack([a.detach().double() for a in attentions], 1).cpu()
