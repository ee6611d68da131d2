"""DeepLift (Shrikumar et al., 2017) at the word embeddings, via captum's ``LayerDeepLift``.

Attributes the target-class probability to the word-embedding layer output relative to the
[PAD] baseline of ``integrated_gradients`` (every word token replaced by [PAD], [CLS]/[SEP]
kept); score of token t = sum over the embedding dimension of (e_t - e'_t) * multiplier_t.
Input and baseline go through the model together (captum concatenates them: 2B sequences in one
forward and one backward per batch).

What happens to BERT's nonlinearities (captum's DeepLift only rewrites the backward pass of the
module types in ``captum.attr._core.deep_lift.SUPPORTED_NON_LINEAR``):

- the pooler's ``nn.Tanh``: captum's Rescale rule (multiplier = delta out / delta in);
- the feed-forward activation, Hugging Face's ``GELUActivation`` (and the other elementwise
  activations of ``transformers.activations``): not known to captum, which would silently fall
  back to the plain gradient; they are registered with captum's Rescale rule for the duration
  of the call (the registry is restored afterwards);
- the output softmax, where a confident classifier saturates (p ~ 0.95: tiny gradients at the
  input, the reason gradient x input fails), is written as an elementwise ``nn.Sigmoid`` of each
  class's log-odds, p_c = sigmoid(z_c - logsumexp_{c' != c} z_c') -- the same probabilities --
  so that captum's Rescale rule (multiplier = delta p / delta log-odds) applies to it per
  example; for two classes the log-odds z_t - z_other is linear in the logits.  (captum's own
  ``nn.Softmax`` rule normalises over the *whole batch tensor*, which would make an example's
  attribution depend on the other examples of its batch.);
- LayerNorm, the attention softmax, the query-key / attention-value products and (for more than
  two classes) the logsumexp of the log-odds are not elementwise nonlinearities DeepLift has
  rules for: they are differentiated normally (the gradient at the input), so
  summation-to-delta holds only approximately (the reported delta says how far).

``extras["convergence_delta"]`` is |f(x) - f(baseline) - sum_t attr_t| per example (captum's delta).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
from captum.attr import LayerDeepLift

from harness.explain_utils import zero_specials
from harness.explainers.common import pad_baseline
from harness.protocols import Attributions, ExplainBatch


def class_log_odds(logits: torch.Tensor) -> torch.Tensor:
    """(B, C) log-odds of every class, z_c - logsumexp_{c' != c} z_c' (natural log)."""
    C = logits.shape[-1]
    eye = torch.eye(C, dtype=torch.bool, device=logits.device)
    others = logits.unsqueeze(-2).masked_fill(eye, float("-inf"))  # (B, C, C): row c without class c
    return logits - torch.logsumexp(others, -1)


class _Proba(torch.nn.Module):
    """(input_ids, attention_mask, token_type_ids) -> class probabilities, as an nn.Module for captum.

    The softmax is written as an elementwise sigmoid of each class's log-odds,
    p_c = sigmoid(z_c - logsumexp_{c' != c} z_c') (the same numbers), so that captum applies the
    Rescale rule to it through an ``nn.Sigmoid`` module, per example."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.sigmoid = torch.nn.Sigmoid()

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        return self.sigmoid(class_log_odds(self.model(**kwargs).logits))


def hf_activation_classes() -> list[type]:
    """Elementwise activation module classes of ``transformers.activations``."""
    from transformers import activations

    out = []
    for v in activations.ACT2CLS.values():
        cls = v[0] if isinstance(v, tuple) else v
        if isinstance(cls, type) and issubclass(cls, torch.nn.Module) and cls not in out:
            out.append(cls)
    return out


@contextmanager
def rescale_rule_for_hf_activations():
    """Register the Hugging Face activations with captum's Rescale rule for the block."""
    from captum.attr._core import deep_lift

    added = [c for c in hf_activation_classes() if c not in deep_lift.SUPPORTED_NON_LINEAR]
    for c in added:
        deep_lift.SUPPORTED_NON_LINEAR[c] = deep_lift.nonlinear
    try:
        yield
    finally:
        for c in added:
            deep_lift.SUPPORTED_NON_LINEAR.pop(c, None)


class DeepLift:
    name = "deeplift"
    version = "1.1.0"

    def explain(self, model, batch: ExplainBatch) -> Attributions:
        wrapper = _Proba(model.model)
        fam = model.family_or_none
        unshared = fam.unshared(model.model) if fam is not None else nullcontext()
        with unshared, rescale_rule_for_hf_activations(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ldl = LayerDeepLift(wrapper, model.embeddings, multiply_by_inputs=True)
            args = (batch.attention_mask,) if batch.token_type_ids is None else (batch.attention_mask, batch.token_type_ids)
            attr, delta = ldl.attribute(
                batch.input_ids, baselines=pad_baseline(batch, model.pad_token_id), target=batch.targets,
                additional_forward_args=args, return_convergence_delta=True)
        scores = attr.detach().sum(-1).double().cpu().numpy()
        delta = np.abs(delta.detach().double().cpu().numpy()).reshape(-1)
        model.model.eval()
        return Attributions(level="token", scores=zero_specials(scores, batch), extras={"convergence_delta": delta})
