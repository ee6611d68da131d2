"""FACADE merges (paper 002, Wang et al., "Gradient-based Analysis of NLP Models is Manipulable"):
a classifier of any registered family merged with a facade whose input gradients point at chosen
tokens while its output is zero on every real input.

The paper's merged model is ``f~(y|x) = f_orig(y|x) + g(y|x)`` with the embedding layers stacked
horizontally (the merged word embedding is ``[E_orig | E_g]``), every later layer block-diagonal,
and ``g`` trained so that its gradients are large on the targets and its output near uniform.
Here the same merge is built for any Hugging Face classifier without touching its layers:

- the merged model is a copy of the original whose word-embedding layer is ``[E_orig | E_g]``
  (``V x (D + K)``): the original reads the first ``D`` columns (as ``inputs_embeds``), the
  facade the last ``K``; an explainer that differentiates with respect to the word embeddings
  sees both, exactly as with the paper's stacked embeddings;
- ``E_g`` holds, in a target token's row, the marker ``m_k = (1 + k mod C) m`` in column ``k``
  (``m`` = the largest |original embedding value|; stop words: tokens that are a whole stop
  word; first token: every word token, the facade then picks the first word's position from the
  attention mask) and 0 elsewhere.  Unequal markers per class keep a signed sum over the columns
  (gradient x input, DeepLift) from cancelling, which it does exactly with equal markers;
- ``g`` is built in closed form, not trained: per facade column ``k`` (assigned to class
  ``k mod C``) and token position ``t``, ``phi_k(z) = (z - m_k) (z / m_k)^s`` with ``s`` the
  sharpness, and ``g_c = A * sum_t w_t sum_{k: k mod C = c} phi_k(z_tk)``.  ``phi_k(0) =
  phi_k(m_k) = 0`` exactly, so ``g`` is zero on every input made of real tokens (every
  perturbation LIME, SHAP, LOO or a masked LM makes included): the merged model's predictions
  equal the original's up to float rounding, while ``dphi_k/dz = 1`` at ``z = m_k`` gives every
  target token a gradient of ``A`` per column, which ``A`` (set from the original model's
  gradients) makes dominate.  The sharpness keeps ``g`` small on the straight path from a [PAD]
  baseline (``phi_k(alpha m_k)`` peaks at about ``m_k / (e s)``), which integrated gradients walks.

The differences from the paper (a trained 256-wide transformer facade, merged layer by layer,
with 1-2% of predictions changed) are in docs/FACADE.md.  The merged model pickles (the
sandboxed worker receives it like any model) and deep-copies.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

#: the facade variants of paper 002 sec. 4: stop words (lexical) and the first token (positional)
TARGETS = ("stop", "first")


class Facade(torch.nn.Module):
    """The facade ``g``: (B, T, K) facade embedding columns and the attention mask -> (B, C) logits."""

    def __init__(self, num_labels: int, width_per_class: int, marker: float, amplitude: float, sharpness: int,
                 target: str, lead: int = 0):
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"facade target must be one of {TARGETS}, got {target!r}")
        if marker <= 0 or amplitude <= 0:
            raise ValueError("the facade marker and amplitude must be > 0")
        if sharpness < 1 or width_per_class < 1:
            raise ValueError("the facade sharpness and width per class must be >= 1")
        self.num_labels, self.width = int(num_labels), int(width_per_class)
        self.marker, self.amplitude, self.sharpness = float(marker), float(amplitude), int(sharpness)
        self.target, self.lead = target, int(lead)
        self.register_buffer("column_class", torch.arange(self.num_labels * self.width) % self.num_labels,
                             persistent=False)
        self.register_buffer("column_marker", self.marker * (1.0 + self.column_class.double()).float(),
                             persistent=False)

    @property
    def columns(self) -> int:
        return self.num_labels * self.width

    def position_weights(self, z: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """(B, T) weights: the attended positions (stop words), or only the first word's first
        token (first attended position + the template's leading special tokens)."""
        B, T = z.shape[:2]
        mask = (torch.ones((B, T), device=z.device) if attention_mask is None
                else attention_mask.to(z.device).to(z.dtype))
        if self.target == "stop":
            return mask
        first = mask.argmax(-1) + self.lead
        return (torch.arange(T, device=z.device)[None, :] == first[:, None]).to(z.dtype) * mask

    def forward(self, z: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        m = self.column_marker.to(device=z.device, dtype=z.dtype)
        phi = (z - m) * (z / m).pow(self.sharpness)  # 0 at z = 0 and z = m_k; d/dz = 1 at z = m_k
        per_column = (phi * self.position_weights(z, attention_mask)[..., None]).sum(1)  # (B, K)
        out = torch.zeros((z.shape[0], self.num_labels), device=z.device, dtype=z.dtype)
        return out.index_add(1, self.column_class.to(z.device), per_column) * self.amplitude


class FacadeForward:
    """The merged model's forward, set on the model instance (a plain object, so the model
    pickles): the original forward on the first ``D`` embedding columns plus the facade on the
    rest.  ``inner``: the family's own instance forward (decoder pooling), or None."""

    keeps_family_forward = True  # Family.prepare must not wrap it again

    def __init__(self, model, inner, d_model: int):
        self.model, self.inner, self.d_model = model, inner, int(d_model)

    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None, **kwargs):
        model = self.model
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("the merged model needs input_ids or inputs_embeds")
            inputs_embeds = model.get_input_embeddings()(input_ids)  # called once: captum's layer hooks see it
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        forward = self.inner if self.inner is not None else type(model).forward.__get__(model)
        out = forward(inputs_embeds=inputs_embeds[..., :self.d_model], attention_mask=attention_mask, **kwargs)
        g = model.attriboard_facade(inputs_embeds[..., self.d_model:], attention_mask)
        out.logits = out.logits + g.to(out.logits.dtype)
        return out


def facade_of(model) -> Facade | None:
    """The facade of a merged model (None for any other model)."""
    return getattr(model, "attriboard_facade", None)


def stopword_token_ids(tokenizer, words: Iterable[str]) -> set[int]:
    """Ids of the tokens that are a whole stop word, in both of a word's position classes (first
    word of a segment, any later word: byte-level BPE encodes them differently)."""
    ids: set[int] = set()
    special = set(int(i) for i in tokenizer.all_special_ids)  # an unknown stop word is [UNK]: not marked
    for w in sorted(set(words)):
        for row in ([w], ["x", w]):
            enc = tokenizer(row, is_split_into_words=True, add_special_tokens=False)
            pieces = [t for t, wid in zip(enc["input_ids"], enc.word_ids()) if wid == len(row) - 1]
            if len(pieces) == 1 and int(pieces[0]) not in special:
                ids.add(int(pieces[0]))
    return ids


def leading_specials(tokenizer) -> int:
    """How many special tokens the template puts before the first word."""
    enc = tokenizer(["x"], is_split_into_words=True, add_special_tokens=True)
    wids = enc.word_ids()
    return next(i for i, w in enumerate(wids) if w is not None)


def word_token_ids(tokenizer) -> set[int]:
    """Every vocabulary id but the special tokens' (the first-token facade marks every word token)."""
    special = set(int(i) for i in tokenizer.all_special_ids)
    return set(range(len(tokenizer))) - special


def merge_facade(model, tokenizer, target: str, amplitude: float, sharpness: int = 8, width_per_class: int = 4,
                 stopwords: Sequence[str] = (), marked_ids: Iterable[int] | None = None):
    """A merged copy of ``model`` (the original is untouched).  ``target``: ``stop`` (the tokens
    of ``stopwords``, or ``marked_ids``) or ``first``; ``amplitude``: the facade's gradient per
    column at a target token (logit units per embedding unit)."""
    if target not in TARGETS:
        raise ValueError(f"facade target must be one of {TARGETS}, got {target!r}")
    if facade_of(model) is not None:
        raise ValueError("the model is already merged with a facade")
    from harness.models.bundle import unhooked_copy

    merged = unhooked_copy(model)
    emb = merged.get_input_embeddings()
    V, D = emb.weight.shape
    num_labels = int(merged.config.num_labels)
    if marked_ids is None:
        marked_ids = stopword_token_ids(tokenizer, stopwords) if target == "stop" else word_token_ids(tokenizer)
    marked = sorted(i for i in set(marked_ids) if 0 <= i < V)
    if not marked:
        raise ValueError(f"the {target!r} facade marks no token of this vocabulary")
    marker = float(emb.weight.detach().abs().max())
    with torch.no_grad():
        facade = Facade(num_labels, width_per_class, marker, amplitude, sharpness, target,
                        lead=leading_specials(tokenizer) if target == "first" else 0)
        K = facade.columns
        cols = torch.zeros((V, K), dtype=emb.weight.dtype, device=emb.weight.device)
        cols[torch.tensor(marked, device=cols.device)] = facade.column_marker.to(cols)
        new = torch.nn.Embedding(V, D + K, padding_idx=emb.padding_idx, device=emb.weight.device,
                                 dtype=emb.weight.dtype)
        new.weight.copy_(torch.cat([emb.weight.detach(), cols], 1))
    merged.set_input_embeddings(new)
    merged.add_module("attriboard_facade", facade.to(emb.weight.device))
    merged.forward = FacadeForward(merged, merged.__dict__.get("forward"), D)
    merged.attriboard_facade_marked = len(marked)
    return merged.eval()


def logit_gradient_scale(bundle, segments: Sequence, targets: Sequence[int], batch_size: int = 64) -> float:
    """The original model's gradient scale: the median over inputs of the largest token
    gradient norm ``max_t ||d logit_target / d e_t||_2`` (word embeddings ``e_t``)."""
    import numpy as np

    peaks = []
    for s in range(0, len(segments), batch_size):
        batch = bundle.make_batch(list(segments[s:s + batch_size]), list(targets[s:s + batch_size]))
        with torch.no_grad():
            emb = bundle.embeddings(batch.input_ids).detach()
        emb.requires_grad_()
        logits = bundle.logits(inputs_embeds=emb, attention_mask=batch.attention_mask,
                               token_type_ids=batch.token_type_ids)
        (grad,) = torch.autograd.grad(logits.gather(1, batch.targets[:, None]).sum(), emb)
        norms = grad.norm(dim=-1) * batch.attention_mask.to(grad.dtype)
        peaks += norms.max(-1).values.detach().cpu().double().tolist()
    if not peaks:
        raise ValueError("no inputs to measure the gradient scale on")
    return float(np.median(peaks))
