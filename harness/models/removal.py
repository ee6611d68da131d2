"""Removal operators: how a word is taken out of an input (shared by explainers and metrics).

- ``delete``: the word is dropped from the sequence (the default of every removal metric).
- ``mask`` / ``unk`` / ``pad``: each of the word's sub-word tokens is replaced by the
  tokenizer's [MASK] / [UNK] / [PAD] id (the sequence keeps its length; [PAD] stays attended).
- ``zero``: the word's token embeddings are replaced by the zero vector.
- ``mlm``: the word is replaced by the masked LM's top-1 fill (all removed words of an input
  are masked together and filled in one masked-LM call), then the text is re-encoded.

The choice biases results (paper 003): every metric and explainer built on this module
records its operator.  All variants go through the model in large batched forward passes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from harness.explain_utils import keep_words
from harness.protocols import Segments

OPERATORS = ("delete", "mask", "unk", "pad", "zero", "mlm")


def check_operator(operator: str) -> str:
    if operator not in OPERATORS:
        import difflib

        close = difflib.get_close_matches(operator, OPERATORS, n=1)
        raise ValueError(f"unknown removal operator {operator!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                         + f" (operators: {', '.join(OPERATORS)})")
    return operator


def _replace_words(segments: Segments, remove: Sequence[bool], fills: Sequence[str]) -> Segments:
    words = [w for seg in segments for w in seg]
    for j, fill in zip(np.flatnonzero(np.asarray(remove, dtype=bool)).tolist(), fills):
        words[j] = fill
    out, k = [], 0
    for seg in segments:
        out.append(tuple(words[k:k + len(seg)]))
        k += len(seg)
    return tuple(out)


def mlm_fill(bundle, segments: Sequence[Segments], removes: Sequence[np.ndarray]) -> list[Segments]:
    """Replace every removed word by the masked LM's top-1 fill (one masked-LM call per input)."""
    if getattr(bundle, "mlm", None) is None:
        raise ValueError("removal operator 'mlm' needs a masked LM, but this model bundle has none")
    positions = [np.flatnonzero(r).tolist() for r in removes]
    todo = [i for i, p in enumerate(positions) if p]
    out = list(segments)
    if todo:
        fills = bundle.mlm.top_fills([segments[i] for i in todo], [positions[i] for i in todo], k=1)
        for i, f in zip(todo, fills):
            out[i] = _replace_words(segments[i], removes[i], [cands[0][0] for cands in f])
    return out


def _checked_removes(segments: Sequence[Segments], removes: Sequence[np.ndarray], operator: str) -> list[np.ndarray]:
    """The removal masks as boolean arrays, each checked against its input's word count."""
    check_operator(operator)
    if len(segments) != len(removes):
        raise ValueError(f"{len(segments)} inputs but {len(removes)} removal masks")
    removes = [np.asarray(r, dtype=bool) for r in removes]
    for i, (s, r) in enumerate(zip(segments, removes)):
        n = sum(len(x) for x in s)
        if r.shape != (n,):
            raise ValueError(f"removal mask {i} has shape {r.shape}, input has {n} words")
    return removes


def _in_place_outputs(bundle, segments: Sequence[Segments], removes: list[np.ndarray], operator: str,
                      batch_size: int | None, forward) -> list:
    """``forward(input_ids, attention_mask, token_type_ids, inputs_embeds)`` per chunk of the
    inputs with the flagged words' tokens replaced in place: by a special token (``mask``,
    ``unk``, ``pad``), by zero embeddings (``zero``), or not at all (``none``)."""
    import torch

    token_id = {"mask": bundle.mask_token_id, "unk": bundle.unk_token_id, "pad": bundle.pad_token_id}.get(operator)
    if operator not in ("zero", "none") and token_id is None:
        from harness.protocols import NotApplicableError

        raise NotApplicableError(f"removal operator {operator!r}: the model's tokenizer has no {operator} token "
                                 f"({type(bundle.tokenizer).__name__})")
    bs = batch_size or bundle.predict_batch_size
    out = []
    with torch.no_grad():
        for start in range(0, len(segments), bs):
            enc = bundle.encode(list(segments[start:start + bs]))
            hit = torch.zeros_like(enc.input_ids, dtype=torch.bool)
            for b, row in enumerate(enc.word_ids):
                r = removes[start + b]
                for t, w in enumerate(row):
                    if w is not None and w < r.size and r[w]:
                        hit[b, t] = True
            if operator == "zero":
                emb = bundle.embeddings(enc.input_ids).masked_fill(hit.unsqueeze(-1), 0.0)
                out.append(forward(None, enc.attention_mask, enc.token_type_ids, emb))
            else:
                ids = enc.input_ids if operator == "none" else enc.input_ids.masked_fill(hit, int(token_id))
                out.append(forward(ids, enc.attention_mask, enc.token_type_ids, None))
    return out


def removed_proba(bundle, segments: Sequence[Segments], removes: Sequence[np.ndarray], operator: str,
                  batch_size: int | None = None) -> np.ndarray:
    """Class probabilities (N, C) of N inputs with the flagged words removed by ``operator``.

    ``removes[i]`` is a boolean array over input i's words (all segments), True = remove.
    """
    removes = _checked_removes(segments, removes, operator)
    if operator == "delete":
        return bundle.proba_of_segments([keep_words(s, ~r) for s, r in zip(segments, removes)], batch_size)
    if operator == "mlm":
        return bundle.proba_of_segments(mlm_fill(bundle, segments, removes), batch_size)

    def forward(ids, mask, types, emb):
        return bundle.proba(ids, mask, types, inputs_embeds=emb).cpu().numpy()

    out = _in_place_outputs(bundle, segments, removes, operator, batch_size, forward)
    return np.concatenate(out, 0).astype(np.float64) if out else np.zeros((0, bundle.num_labels))


def removed_logits(bundle, segments: Sequence[Segments], removes: Sequence[np.ndarray], operator: str,
                   batch_size: int | None = None) -> np.ndarray:
    """Classifier logits (N, C), float64, of N inputs with the flagged words removed by ``operator``.

    Same inputs and batching as :func:`removed_proba`, but the raw logits, so that log-odds
    (e.g. paper 003's log2(p / (1 - p))) can be computed without loss of precision when the
    classifier is confident.
    """
    removes = _checked_removes(segments, removes, operator)
    if operator in ("delete", "mlm"):
        inputs = ([keep_words(s, ~r) for s, r in zip(segments, removes)] if operator == "delete"
                  else mlm_fill(bundle, segments, removes))
        removes = [np.zeros(sum(len(x) for x in s), dtype=bool) for s in inputs]
        segments, operator = inputs, "none"

    def forward(ids, mask, types, emb):
        return bundle.logits(ids, mask, types, inputs_embeds=emb).double().cpu().numpy()

    out = _in_place_outputs(bundle, segments, removes, operator, batch_size, forward)
    return np.concatenate(out, 0) if out else np.zeros((0, bundle.num_labels))


def removed_token_ids(bundle, segments: Segments, remove: np.ndarray, operator: str) -> list[int]:
    """The classifier's token ids for one input after removal (for inspection and tests)."""
    check_operator(operator)
    remove = np.asarray(remove, dtype=bool)
    if operator == "delete":
        return bundle.encode([keep_words(segments, ~remove)]).input_ids[0].tolist()
    if operator == "mlm":
        return bundle.encode(mlm_fill(bundle, [segments], [remove])).input_ids[0].tolist()
    if operator == "zero":
        raise ValueError("operator 'zero' changes embeddings, not token ids")
    token_id = {"mask": bundle.mask_token_id, "unk": bundle.unk_token_id, "pad": bundle.pad_token_id}[operator]
    if token_id is None:
        from harness.protocols import NotApplicableError

        raise NotApplicableError(f"removal operator {operator!r}: the model's tokenizer has no {operator} token")
    enc = bundle.encode([segments])
    return [int(token_id) if (w is not None and remove[w]) else int(t)
            for t, w in zip(enc.input_ids[0].tolist(), enc.word_ids[0])]
