"""Model-family adapters: the one place that knows a Hugging Face model family.

A :class:`Family` says, for one family of ``*ForSequenceClassification`` models:

- **tokenizer policy**: the tokenizer type its checkpoints use (``wordpiece``, ``bpe`` for
  byte-level BPE, ``unigram`` for SentencePiece-style), the special-token template
  (:attr:`Family.template`), whether the model takes ``token_type_ids``; sub-word markers are
  read from the tokenizer itself (:mod:`harness.models.tokenizers`);
- **where things are**: the input (word) embeddings (gradient methods), the transformer blocks
  bottom to top and the classification head (randomization and sanity checks), every fully
  connected layer on top of the encoder;
- **attention access**: whether the family returns attention weights and which attention
  implementation that needs (``eager``; switched for the call only, :meth:`Family.attentions`);
- **pooling**: decoder classifiers (GPT-2, Llama-style) are pooled at the last real token as
  given by the attention mask (:meth:`Family.prepare`), so pooling is right with
  ``inputs_embeds`` and with either padding side;
- **the matching masked LM** class for a hub MLM of the same family, and the tiny config a test
  or the embedded default builds (:meth:`Family.tiny_config`);
- **the re-initialisation scheme** (:meth:`Family.init_std`) and whether the BERT fused
  kernels apply (:attr:`Family.fast_path`, BERT only; every other family runs the generic path).

Families are registered by the modules of this package (found by :func:`load_all`); a model
is matched to its family by ``config.model_type`` (:func:`family_of`).  Adding a family is one
new module here plus its row in ``tests/test_families.py``.
"""

from __future__ import annotations

import importlib
import pkgutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

#: the transformer size of a tiny model built from a config
TINY_SIZES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "max_position_embeddings")


class UnknownFamilyError(ValueError):
    """A model whose ``config.model_type`` no registered family claims."""


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    tokenizer_kind: str
    """``wordpiece``, ``bpe`` (byte-level BPE) or ``unigram`` (SentencePiece-style)."""
    template: str
    """special-token template of a tiny tokenizer: ``bert`` ([CLS] A [SEP] B [SEP]), ``roberta``
    (<s> A </s></s> B </s>), ``llama`` (<s> A <s> B) or ``gpt2`` (A <|endoftext|> B)"""
    token_types: bool
    blocks_path: str
    """attribute path, from the model, of the ``ModuleList`` of transformer blocks"""
    head: tuple[str, ...]
    """module names of the classification layer(s) (paper 003 sec. 5.3's "last classification layer")"""
    top_fc: tuple[str, ...]
    """every fully connected module above the encoder, bottom to top (paper 004's "#Untrained")"""
    decoder: bool = False
    fast_path: bool = False
    attention: bool = True
    attention_note: str = ""
    mlm_class: str | None = None
    """the ``transformers`` class of the family's masked LM (None: no masked LM, e.g. decoders)"""
    classifier_class: str = ""
    config_class: str = ""
    blocks_note: str = ""
    config_kwargs: "Callable[[dict, dict], dict] | None" = field(default=None, compare=False)
    """(size, special token ids) -> the config's keyword arguments for a tiny model"""
    normalised_embeddings: "Callable[[object], bool] | None" = field(default=None, compare=False)
    """config -> whether the word embeddings enter the network only through a normalisation
    (LayerNorm of the embedding, nothing added before it), which makes the classifier invariant
    to scaling them: then sum_d e_d df/de_d = 0 (Euler), i.e. gradient x input is identically zero"""
    unshare: "Callable | None" = field(default=None, compare=False)
    """model -> context manager under which no module is called twice in one forward pass
    (ALBERT's shared layers as per-layer copies; for captum's DeepLift), or None"""

    # --- where things are -----------------------------------------------------------------
    def blocks(self, model) -> list[str]:
        """Module names of the transformer blocks, bottom (next to the embeddings) to top."""
        mod = model.get_submodule(self.blocks_path)
        return [f"{self.blocks_path}.{i}" for i in range(len(mod))]

    def head_modules(self, model) -> list[str]:
        return [n for n in self.head if _exists(model, n)]

    def top_fc_modules(self, model) -> list[str]:
        return [n for n in self.top_fc if _exists(model, n) and model.get_submodule(n) is not None]

    def init_std(self, model) -> float:
        """Standard deviation of the normal re-initialisation of Linear / Embedding weights."""
        return float(getattr(model.config, "initializer_range", 0.02))

    # --- behaviour ------------------------------------------------------------------------------
    def prepare(self, model):
        """Make ``model`` ready for the harness (in place, idempotent); returns it."""
        forward = model.__dict__.get("forward")
        if self.decoder and not isinstance(forward, LastTokenForward) and not getattr(forward, "keeps_family_forward", False):
            model.forward = LastTokenForward(model)
        return model

    def embeddings_normalised(self, model) -> bool:
        """See :attr:`normalised_embeddings`."""
        return bool(self.normalised_embeddings and self.normalised_embeddings(model.config))

    @contextmanager
    def unshared(self, model) -> Iterator[None]:
        """Within the block every module runs at most once per forward pass (a no-op for families
        that share no modules); the model is put back afterwards, even on error."""
        if self.unshare is None:
            yield
            return
        with self.unshare(model):
            yield

    @contextmanager
    def attentions(self, model) -> Iterator[None]:
        """Within the block the model returns attention weights (``output_attentions=True``):
        the attention implementation is switched to ``eager`` for families that need it and put
        back afterwards.  Raises a clear error for a family without accessible attention."""
        if not self.attention:
            raise NotImplementedError(f"attention explainers are not available for {self.name} models"
                                      + (f": {self.attention_note}" if self.attention_note else ""))
        impl = getattr(model.config, "_attn_implementation", "eager")
        switch = impl != "eager"
        if switch:
            _set_attention(model, "eager")
        try:
            yield
        finally:
            if switch or model.config._attn_implementation != impl:  # ModernBERT's forward switches it itself
                _set_attention(model, impl)

    def tiny_config(self, vocab_size: int, num_labels: int, size: dict, special: dict):
        """A config for a tiny random model of this family (``size``: :data:`TINY_SIZES`;
        ``special``: pad / bos / eos / cls / sep / mask token ids of its tokenizer)."""
        import transformers

        if self.config_kwargs is None:
            raise NotImplementedError(f"no tiny config for the {self.name} family")
        cls = getattr(transformers, self.config_class)
        return cls(vocab_size=vocab_size, num_labels=num_labels, **self.config_kwargs(dict(size), dict(special)))

    def build_classifier(self, config):
        import transformers

        return self.prepare(getattr(transformers, self.classifier_class)(config))


def _set_attention(model, impl: str) -> None:
    """Switch the attention implementation: through ``set_attn_implementation`` where the model
    supports it, else (ModernBERT in transformers 4.57) on the config its layers read at call time."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        if hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation(impl)
    finally:
        hf_logging.set_verbosity(level)
    if model.config._attn_implementation != impl:
        model.config._attn_implementation = impl


def _exists(model, name: str) -> bool:
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False


def _last_token_forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, position_ids=None,
                        output_attentions=None, output_hidden_states=None, return_dict=None, labels=None,
                        token_type_ids=None, **kwargs):
    """A decoder classifier pooled at the last real token of each row, found from the attention
    mask (the rightmost attended position: right or left padding), with position ids counted
    over the real tokens only; the same result as the unpadded input.  Hugging Face's own
    pooling finds the last token from pad ids in ``input_ids``, so it cannot pool
    ``inputs_embeds`` (it takes the last position, padding included)."""
    import torch
    from transformers.modeling_outputs import SequenceClassifierOutputWithPast

    ref = input_ids if input_ids is not None else inputs_embeds[..., 0]
    B, T = ref.shape[:2]
    if attention_mask is None:
        attention_mask = torch.ones((B, T), dtype=torch.long, device=ref.device)
    if position_ids is None:
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
    base = getattr(self, self.base_model_prefix)
    out = base(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
               position_ids=position_ids, output_attentions=output_attentions,
               output_hidden_states=output_hidden_states, use_cache=False, return_dict=True)
    hidden = out.last_hidden_state
    last = (torch.arange(T, device=hidden.device) * attention_mask.to(hidden.device).bool()).argmax(-1)
    logits = self.score(hidden[torch.arange(B, device=hidden.device), last])
    loss = None
    if labels is not None:
        loss = torch.nn.functional.cross_entropy(logits, labels.view(-1))
    return SequenceClassifierOutputWithPast(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                            attentions=out.attentions)


class LastTokenForward:
    """The forward of a decoder classifier pooled at the last real token (:func:`_last_token_forward`),
    set on the model instance.  A plain object, not a bound method, so the model still pickles
    (the sandboxed worker receives it that way) and deep-copies."""

    def __init__(self, model):
        self.model = model

    def __call__(self, *args, **kwargs):
        return _last_token_forward(self.model, *args, **kwargs)


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    if family.name in _FAMILIES and _FAMILIES[family.name] != family:
        raise ValueError(f"model family {family.name!r} is already registered")
    _FAMILIES[family.name] = family
    return family


def load_all() -> dict[str, Family]:
    """Import every adapter module of this package (each registers its families)."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return dict(_FAMILIES)


def families() -> dict[str, Family]:
    return load_all()


def get_family(name: str) -> Family:
    fams = load_all()
    if name not in fams:
        import difflib

        close = difflib.get_close_matches(name, list(fams), n=2)
        raise UnknownFamilyError(f"unknown model family {name!r}" + (f"; did you mean {close}?" if close else "")
                                 + f" (families: {', '.join(sorted(fams))})")
    return fams[name]


def family_of(model_or_config) -> Family:
    """The registered family of a model (or config), by ``config.model_type``."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    for fam in load_all().values():
        if model_type in fam.model_types:
            return fam
    raise UnknownFamilyError(
        f"no model-family adapter for model_type {model_type!r} ({type(model_or_config).__name__}); "
        f"supported: {', '.join(sorted(t for f in load_all().values() for t in f.model_types))}. "
        "Add one as a module of harness/models/families (README: adding a model family)")
