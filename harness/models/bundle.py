"""The model bundle an explainer receives, with call counting for cost accounting."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from harness.models.encoding import Encoded, encode
from harness.protocols import ExplainBatch, Segments

log = logging.getLogger(__name__)


@dataclass
class CallCounter:
    """Counts sequences through the model: forward passes and backward passes.

    One *pass* is one input sequence through the network (a batch of 32 counts 32), so
    the counts are comparable across explainers that batch differently.  Backward passes
    are counted when a gradient flows back through the classifier's logits.
    """

    forward: int = 0
    backward: int = 0
    mlm: int = 0

    def snapshot(self) -> tuple[int, int, int]:
        return (self.forward, self.backward, self.mlm)


def _install_counter(model: torch.nn.Module, counter: CallCounter):
    def hook(_module, _args, output):
        logits = output.logits if hasattr(output, "logits") else output
        if isinstance(logits, tuple):
            logits = logits[0]
        n = int(logits.shape[0])
        counter.forward += n
        if logits.requires_grad:
            def on_backward(grad, n=n):
                counter.backward += n
                return grad

            logits.register_hook(on_backward)

    return model.register_forward_hook(hook)


#: the declared precisions (``--dtype``): float32 is the default; the others are run as mixed precision
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class _Autocast:
    """A forward pre-hook / forward hook pair on the classifier: its forward runs under
    ``torch.autocast(<its device>, dtype)`` (mixed precision: the weights stay float32, matmuls
    run in the lower precision, softmax and norms in float32 as autocast decides), and every
    floating tensor of its output comes back as float32, so callers (explainers included) see
    the same dtypes as at float32.  The post hook is ``always_call``: a forward that raises
    (out of memory) still leaves the autocast region."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype
        self.stack: list = []

    def pre(self, module, args, kwargs):
        dev = next(module.parameters()).device.type
        ctx = torch.autocast(device_type=dev, dtype=self.dtype)
        ctx.__enter__()
        self.stack.append(ctx)

    def post(self, module, args, kwargs, output):
        self.stack.pop().__exit__(None, None, None)
        if hasattr(output, "keys"):
            for k in list(output.keys()):
                output[k] = _as_float32(output[k])
            return output
        return _as_float32(output)


def _as_float32(v):
    if isinstance(v, torch.Tensor):
        return v.float() if v.is_floating_point() and v.dtype != torch.float32 else v
    if isinstance(v, tuple):
        return tuple(_as_float32(x) for x in v)
    return v


def hook_dicts(model: torch.nn.Module) -> tuple[dict, ...]:
    """Every dict in which ``model`` keeps its forward hooks and pre-hooks (keyed by hook id)."""
    return (model._forward_hooks, getattr(model, "_forward_hooks_with_kwargs", {}),
            getattr(model, "_forward_hooks_always_called", {}), model._forward_pre_hooks,
            getattr(model, "_forward_pre_hooks_with_kwargs", {}))


def unhooked_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``model`` without forward (pre-)hooks: a bundle's call counter and precision
    hooks stay with the original (the copy's own bundle installs its own)."""
    import copy

    m = copy.deepcopy(model)
    for d in hook_dicts(m):
        d.clear()
    return m


@dataclass
class ModelBundle:
    """A fine-tuned sequence classifier and its tokenizer, in eval mode.

    ``model`` is a Hugging Face ``*ForSequenceClassification`` module.  The helpers give
    explainers batched access: :meth:`logits` / :meth:`proba` on token tensors or input
    embeddings, and :meth:`proba_of_segments` on perturbed word lists.
    """

    model: torch.nn.Module
    tokenizer: object
    name: str
    num_labels: int
    max_length: int = 128
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    predict_batch_size: int = 256
    counter: CallCounter = field(default_factory=CallCounter)
    mlm: "object | None" = None
    """The task's masked LM (a :class:`harness.protocols.MaskedLM`) when the run declares one."""
    dtype: str = "float32"
    """The declared precision of the classifier's forward (:data:`DTYPES`): ``float32``, or
    ``bfloat16`` / ``float16`` as mixed precision under ``torch.autocast`` (:class:`_Autocast`)."""

    def __post_init__(self) -> None:
        self.model.eval()
        fam = self.family_or_none
        if fam is not None:
            fam.prepare(self.model)
        self._hook = _install_counter(self.model, self.counter)
        self._precision_hooks: list = []
        self.set_dtype(self.dtype)

    def set_dtype(self, dtype: str) -> None:
        """Run the classifier at ``dtype`` from now on (``float32``: plainly, as loaded)."""
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        for h in self._precision_hooks:
            h.remove()
        self._precision_hooks = []
        self.dtype = dtype
        if dtype != "float32":
            ac = _Autocast(DTYPES[dtype])
            self._precision_hooks = [self.model.register_forward_pre_hook(ac.pre, with_kwargs=True),
                                     self.model.register_forward_hook(ac.post, with_kwargs=True, always_call=True)]

    @property
    def hook_ids(self) -> list[int]:
        """The ids of the hooks this bundle put on its model (the counter's, the precision's)."""
        return [self._hook.id, *(h.id for h in self._precision_hooks)]

    # --- the model family ------------------------------------------------------------
    @property
    def family_or_none(self):
        """The model's :class:`harness.models.families.Family` (None for a model no adapter claims)."""
        from harness.models.families import UnknownFamilyError, family_of

        try:
            return family_of(self.model)
        except UnknownFamilyError:
            return None

    @property
    def family(self):
        """The model's :class:`harness.models.families.Family`; a clear error if none claims it."""
        from harness.models.families import family_of

        return family_of(self.model)

    # --- token-level access -------------------------------------------------------
    @property
    def embeddings(self) -> torch.nn.Embedding:
        """The word (token) embedding layer, (V, D)."""
        return self.model.get_input_embeddings()

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def mask_token_id(self) -> int | None:
        return getattr(self.tokenizer, "mask_token_id", None)

    @property
    def unk_token_id(self) -> int | None:
        return getattr(self.tokenizer, "unk_token_id", None)

    def logits(self, input_ids=None, attention_mask=None, token_type_ids=None,
               inputs_embeds=None) -> torch.Tensor:
        """(B, C) logits; pass either ``input_ids`` (B, T) or ``inputs_embeds`` (B, T, D).

        Out-of-memory back-off: a batch that does not fit the device is split in halves (and the
        halves again, down to one row), and every later call is sent in pieces of at most the
        largest size that fitted (:attr:`max_rows`, ``None`` until a batch failed); each split
        counts in :attr:`oom_backoffs`.  Each row's result is that of the whole batch up to float
        rounding (a row does not depend on the other rows of its batch), so only time and peak
        memory change."""
        tensors = {"attention_mask": attention_mask, "token_type_ids": token_type_ids,
                   "inputs_embeds" if inputs_embeds is not None else "input_ids":
                   inputs_embeds if inputs_embeds is not None else input_ids}
        return self._rows(tensors)

    max_rows: int | None = field(default=None, init=False, repr=False)
    """The largest batch that fitted after an out-of-memory error (None: none failed yet)."""
    oom_backoffs: int = field(default=0, init=False, repr=False)
    """How many times a batch was split because it did not fit the device."""

    def _rows(self, tensors: dict) -> torch.Tensor:
        present = {k: v for k, v in tensors.items() if v is not None}
        rows = next(iter(v for k, v in present.items() if k != "attention_mask")).shape[0]
        if self.max_rows is not None and rows > self.max_rows:
            step = self.max_rows  # fixed for this split (a piece that fails lowers max_rows for later calls)
            return torch.cat([self._rows({k: v[s:s + step] for k, v in present.items()})
                              for s in range(0, rows, step)], 0)
        try:
            return self.model(**present).logits
        except torch.OutOfMemoryError:
            if rows <= 1:
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            half = (rows + 1) // 2
            self.oom_backoffs += 1
            self.max_rows = half if self.max_rows is None else min(self.max_rows, half)
            log.warning("%s: a batch of %d rows did not fit the device; sending at most %d rows at a time",
                        self.name, rows, self.max_rows)
            return self._rows(present)

    def proba(self, input_ids=None, attention_mask=None, token_type_ids=None,
              inputs_embeds=None) -> torch.Tensor:
        """(B, C) class probabilities (softmax of the logits)."""
        return torch.softmax(self.logits(input_ids, attention_mask, token_type_ids, inputs_embeds), -1)

    def forward_batch(self, batch: ExplainBatch) -> torch.Tensor:
        return self.proba(batch.input_ids, batch.attention_mask, batch.token_type_ids)

    # --- word-level access ----------------------------------------------------------
    def encode(self, segments: Sequence[Segments]) -> Encoded:
        return encode(self.tokenizer, list(segments), self.max_length, self.device)

    @torch.inference_mode()
    def proba_of_segments(self, segments: Sequence[Segments], batch_size: int | None = None) -> np.ndarray:
        """Class probabilities (N, C) for N word-level inputs, in large no-grad batches."""
        bs = batch_size or self.predict_batch_size
        out = []
        for start in range(0, len(segments), bs):
            chunk = list(segments[start:start + bs])
            enc = self.encode(chunk)
            out.append(self.proba(enc.input_ids, enc.attention_mask, enc.token_type_ids).cpu().numpy())
        if not out:
            return np.zeros((0, self.num_labels))
        return np.concatenate(out, 0).astype(np.float64)

    def make_batch(self, segments: Sequence[Segments], targets: Sequence[int] | None = None,
                   seed: int = 0) -> ExplainBatch:
        """Encode inputs and attach targets (the model's predictions when not given)."""
        enc = self.encode(segments)
        if targets is None:
            with torch.no_grad():
                targets_t = self.proba(enc.input_ids, enc.attention_mask, enc.token_type_ids).argmax(-1)
        else:
            targets_t = torch.as_tensor(list(targets), dtype=torch.long, device=self.device)
        return ExplainBatch(
            input_ids=enc.input_ids,
            attention_mask=enc.attention_mask,
            token_type_ids=enc.token_type_ids,
            special_tokens_mask=enc.special_tokens_mask,
            word_ids=enc.word_ids,
            segments=enc.segments,
            targets=targets_t,
            seed=seed,
        )
