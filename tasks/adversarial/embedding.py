"""The embedding-space attack of paper 001 sec. 2.3 / 3.5 (after Ghorbani et al.), made runnable
against sandboxed explainers.

The paper perturbs the input embeddings by gradient descent on the explanation (which must be
differentiable: Gradients, Gradients x Input, Integrated Gradients).  A submission is a black box
that receives token ids, so here:

- the perturbation is found **white-box against a surrogate**: the plain-gradient map (L2 norm of
  ``d p(target) / d e_t`` per token, word level by max over a word's tokens, L1-normalised),
  differentiated twice; for the built-in ``gradient`` explainer it is the explainer itself, for
  every other one a transfer attack;
- the adversarial input is **the same token ids read through a perturbed embedding table**: the
  rows of the input's word tokens move by ``delta_v`` (one vector per token id, so a word that
  occurs twice moves the same way; ``||delta||_inf <= eps``), and the explainer is given that
  model.  Every explainer, gradient or not, then explains x + delta exactly: its own embedding
  look-ups return the moved rows.

Objectives (the word-swap attack's): ``topk`` maximises D = -sum_{i in topk(a_x, k)} a_x+delta,i
among iterates that keep the predicted class; ``topk_constrained`` maximises alpha D - beta
(p(x) - p(x + delta))^2.  Adam, ``lr`` halved every 200 steps, projected onto the eps-ball, early
stop when delta moves less than 1e-5 for 20 steps (paper 001 sec. 3.5); the best iterate that
keeps the class is kept.  All inputs of a call are optimised in one batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch


@dataclass
class EmbeddingAdversary:
    """One input's perturbation: token id -> delta row, and what the surrogate saw."""

    rows: dict[int, np.ndarray]
    proba: float
    objective_value: float
    steps: int
    kept_class: bool


def _word_index(batch) -> torch.Tensor:
    """(B, T) word index of every token (-1 for special tokens and padding)."""
    B, T = batch.input_ids.shape
    out = torch.full((B, T), -1, dtype=torch.long)
    for b in range(B):
        for t, w in enumerate(batch.word_ids[b][:T]):
            if w is not None:
                out[b, t] = int(w)
    return out


def surrogate_maps(bundle, embeds, batch, words: torch.Tensor, n_words: int, create_graph: bool):
    """(B, n_words) L1-normalised plain-gradient word maps at ``embeds``, and p(target) (B,)."""
    proba = bundle.proba(inputs_embeds=embeds, attention_mask=batch.attention_mask,
                         token_type_ids=batch.token_type_ids)
    p = proba.gather(1, batch.targets[:, None]).squeeze(1)
    (g,) = torch.autograd.grad(p.sum(), embeds, create_graph=create_graph)
    tok = g.norm(dim=-1) * (words >= 0)
    maps = torch.zeros((tok.shape[0], n_words), dtype=tok.dtype, device=tok.device)
    maps = maps.scatter_reduce(1, words.clamp_min(0), tok, reduce="amax", include_self=True)
    maps = maps / maps.sum(1, keepdim=True).clamp_min(1e-30)
    return maps, p, proba.argmax(-1)


def attack(bundle, inputs: Sequence, targets: Sequence[int], objective: str, eps: float, k_share: float = 0.15,
           steps: int = 200, lr: float = 0.1, alpha: float = 1.0, beta: float = 1.0) -> list[EmbeddingAdversary]:
    """Find one perturbation per input (see the module docstring).  Runs under PyTorch's math
    attention kernel: the fused ones have no second derivative."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        return _attack(bundle, inputs, targets, objective, eps, k_share, steps, lr, alpha, beta)


def _attack(bundle, inputs, targets, objective, eps, k_share, steps, lr, alpha, beta) -> list[EmbeddingAdversary]:
    from tasks.adversarial.measures import k_for

    if objective not in ("topk", "topk_constrained"):
        raise ValueError(f"unknown objective {objective!r}")
    if eps <= 0 or steps < 1:
        raise ValueError("eps must be > 0 and steps >= 1")
    batch = bundle.make_batch(list(inputs), list(targets))
    ids = batch.input_ids
    words = _word_index(batch)
    n_words = int(words.max()) + 1 if words.numel() else 1
    emb = bundle.embeddings
    with torch.no_grad():
        base = emb(ids).detach()
    # one delta per (input, distinct word-token id)
    slot = torch.full(ids.shape, -1, dtype=torch.long)
    vocab_of = []
    for b in range(ids.shape[0]):
        uniq = sorted({int(ids[b, t]) for t in range(ids.shape[1]) if words[b, t] >= 0})
        pos = {v: i for i, v in enumerate(uniq)}
        vocab_of.append(uniq)
        for t in range(ids.shape[1]):
            if words[b, t] >= 0:
                slot[b, t] = pos[int(ids[b, t])]
    U = max(1, max(len(u) for u in vocab_of))
    delta = torch.zeros((ids.shape[0], U, base.shape[-1]), dtype=base.dtype, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=200, gamma=0.5)
    use = (slot >= 0)[..., None].to(base.dtype)
    lengths = [sum(len(s) for s in segs) for segs in inputs]
    with torch.enable_grad():
        e0 = base.clone().requires_grad_()
        m0, p0, y0 = surrogate_maps(bundle, e0, batch, words, n_words, create_graph=False)
    m0, p0, y0 = m0.detach(), p0.detach(), y0.detach()
    top = torch.zeros_like(m0)
    for b, n in enumerate(lengths):
        order = np.argsort(-m0[b, :n].double().numpy(), kind="stable")[: k_for(n, k_share)]
        top[b, torch.as_tensor(order)] = 1.0
    best_val = torch.full((ids.shape[0],), -np.inf, dtype=torch.float64)
    best = torch.zeros_like(delta)
    best_p = p0.double().clone()
    still, prev, n_steps = 0, delta.detach().clone(), 0
    for step in range(steps + 1):
        e = base + delta.gather(1, slot.clamp_min(0)[..., None].expand(-1, -1, base.shape[-1])) * use
        with torch.enable_grad():
            m, p, y = surrogate_maps(bundle, e, batch, words, n_words, create_graph=True)
            d = -(m * top).sum(1)
            val = alpha * d - (beta * (p0 - p) ** 2 if objective == "topk_constrained" else 0.0)
        with torch.no_grad():  # the iterate evaluated at this step: keep it if it keeps the class
            ok = (y == y0) & (val.double() > best_val)
            best_val = torch.where(ok, val.double(), best_val)
            best[ok] = delta.detach()[ok]
            best_p = torch.where(ok, p.double(), best_p)
        if step == steps:
            break
        opt.zero_grad()
        (-val.sum()).backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            delta.clamp_(-eps, eps)
            moved = float((delta - prev).abs().max())
            prev = delta.detach().clone()
        n_steps = step + 1
        still = still + 1 if moved < 1e-5 else 0
        if still >= 20:
            break
    out = []
    for b, uniq in enumerate(vocab_of):
        rows = {v: best[b, i].detach().double().numpy().copy() for i, v in enumerate(uniq)}
        kept = bool(np.isfinite(float(best_val[b])))
        out.append(EmbeddingAdversary(rows if kept else {}, float(best_p[b]), float(best_val[b]) if kept else 0.0,
                                      n_steps, kept))
    return out


def perturbed_model(model, rows: dict[int, np.ndarray]):
    """A copy of ``model`` whose word-embedding rows ``rows`` are moved by their deltas (the
    original is untouched; the counting hooks of its bundle are not copied)."""
    from harness.models.bundle import unhooked_copy

    m = unhooked_copy(model)
    w = m.get_input_embeddings().weight
    with torch.no_grad():
        for v, delta in rows.items():
            w[int(v)] += torch.as_tensor(delta, dtype=w.dtype, device=w.device)
    return m.eval()
