"""The interfaces between the engine, tasks, metrics and submissions.

What an explainer receives is deliberately narrow: a :class:`~harness.models.bundle.ModelBundle`
(model, tokenizer, batched helpers) and an :class:`ExplainBatch` (token ids, masks, the
words, the target class).  Labels, rationales and planted words never appear here; they
stay with the task and are only seen by metrics, which run in the harness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, Sequence, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from harness.models.bundle import ModelBundle

Segments = tuple[tuple[str, ...], ...]
"""One input: one word tuple per segment (one segment for single sentences, two for pairs)."""


@dataclass(frozen=True)
class Example:
    """An input as the explainer may see it: an id and its words, nothing gold."""

    id: str
    segments: Segments

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(w for seg in self.segments for w in seg)

    @property
    def n_words(self) -> int:
        return sum(len(s) for s in self.segments)


@dataclass(frozen=True)
class ExplainBatch:
    """A padded batch handed to :meth:`Explainer.explain`.

    Shapes: B examples, T tokens (padded to the longest in the batch).

    - ``input_ids``: (B, T) long
    - ``attention_mask``: (B, T) long, 1 for real tokens
    - ``token_type_ids``: (B, T) long or ``None`` when the model has no segment embeddings
    - ``special_tokens_mask``: (B, T) bool, True for [CLS], [SEP], [PAD] and other specials
    - ``word_ids``: per example, per token, the index of the word it belongs to (counting
      across segments) or ``None`` for special tokens
    - ``segments``: per example, the words of each segment
    - ``targets``: (B,) long, the class to explain (the model's prediction on the input)
    - ``seed``: the seed a stochastic explainer must use; results must depend only on
      (seed, example), never on the other examples of the batch
    """

    input_ids: "torch.Tensor"
    attention_mask: "torch.Tensor"
    token_type_ids: "torch.Tensor | None"
    special_tokens_mask: "torch.Tensor"
    word_ids: list[list[int | None]]
    segments: list[Segments]
    targets: "torch.Tensor"
    seed: int = 0

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def words(self, i: int) -> list[str]:
        return [w for seg in self.segments[i] for w in seg]

    def n_words(self, i: int) -> int:
        return sum(len(s) for s in self.segments[i])


@dataclass
class Attributions:
    """What an explainer returns.

    ``level="token"``: ``scores`` is a (B, T) float array aligned with ``input_ids``; special
    and padding positions must be 0.  The harness aggregates tokens into words.
    ``level="word"``: ``scores`` is a list of B float arrays, one score per word.

    ``extras`` holds optional per-example diagnostics, each a (B,) array (for example
    integrated gradients' convergence delta); they are averaged into the result.
    Positive scores are evidence for the target class.
    """

    level: Literal["token", "word"]
    scores: Any
    extras: dict[str, np.ndarray] = field(default_factory=dict)


class NotApplicableError(Exception):
    """Raised by an explainer (or a removal operator) that is not defined on the given model,
    with the reason: e.g. ``mask`` removal on a model whose tokenizer has no mask token (GPT-2,
    Llama), or gradient x input on a model whose word embeddings enter only through a
    normalisation (the map is identically zero there).  ``attriboard validate`` reports it as
    "not applicable" on a non-default model family, and as a failure on the default tiny BERT."""


@runtime_checkable
class Explainer(Protocol):
    """A submission's explainer: constructed with its declared parameters, then called on batches."""

    name: str
    version: str

    def explain(self, model: "ModelBundle", batch: ExplainBatch) -> Attributions:  # pragma: no cover
        ...


@runtime_checkable
class MaskedLM(Protocol):
    """Word-level access to a masked language model (for IM, LIME_BERT and ``mlm`` removal).

    ``top_fills(segments, positions, k)``: for each input, mask all the words at the given
    word positions at once and return, per position, the k most likely replacement words
    with their probabilities (best first).  Every call counts its sequences as masked-LM
    calls in the bundle's :class:`~harness.models.bundle.CallCounter`.
    """

    name: str
    description: str
    model_hash: str

    def top_fills(self, segments: Sequence[Segments], positions: Sequence[Sequence[int]],
                  k: int) -> list[list[list[tuple[str, float]]]]:  # pragma: no cover
        ...


@dataclass(frozen=True)
class MetricInputs:
    """Everything a metric may use; built by the harness, never shown to explainers.

    ``word_scores``: per example, (n_words,) word-level attribution map.
    ``gold``: per example, the task's gold annotation (task specific; e.g. the indices of
    the planted words).
    """

    examples: Sequence[Example]
    word_scores: Sequence[np.ndarray]
    gold: Sequence[Any]
    model: "ModelBundle | None" = None
    targets: Sequence[int] = ()


@runtime_checkable
class Metric(Protocol):
    """A metric scores every example; the runner aggregates (mean) and bootstraps the CI.

    Metrics are built with keyword parameters (``TaskSpec.metric_params``, e.g. a removal
    operator), recorded beside the score.  A metric may set a ``details`` dict of floats
    during ``per_example`` (e.g. the chosen threshold tau); it is recorded too.
    """

    name: str
    higher_is_better: bool
    family: str

    def per_example(self, inputs: MetricInputs) -> np.ndarray:  # pragma: no cover
        ...
