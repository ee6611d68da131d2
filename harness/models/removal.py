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
    words: dict[int, int] = {}  # (rows of one input share its segments object)
    for i, (s, r) in enumerate(zip(segments, removes)):
        n = words.get(id(s))
        if n is None:
            n = words[id(s)] = sum(len(x) for x in s)
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
    with torch.inference_mode():  # outputs leave as numpy: no autograd state at all
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


def _kept_group(bundle, memo, segments: Segments, keeps: np.ndarray, failed: set):
    """``(ids, types, lengths)`` numpy arrays of one input with only the ``keeps`` rows' words:
    composed by the piece memo when it can (learning the pieces it lacks with one real tokenizer
    call), else through :meth:`bundle.encode` of the word lists (the same tokens)."""
    from harness.models.encoding import learn_pieces, uses_token_types

    tok = bundle.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    pad_type = getattr(tok, "pad_token_type_id", 0) or 0
    if memo is not None and id(segments) not in failed:
        got = memo.compose_kept(segments, keeps, bundle.max_length, pad_id, pad_type)
        if got is None:
            missing = memo.missing_for_kept(segments, keeps)
            if missing:
                learn_pieces(tok, missing)  # one untruncated tokenizer call: every word's pieces
                got = memo.compose_kept(segments, keeps, bundle.max_length, pad_id, pad_type)
        if got is not None:
            return got
        failed.add(id(segments))
    enc = bundle.encode([keep_words(segments, k) for k in keeps])
    lens = enc.attention_mask.sum(1).cpu().numpy()
    ids = enc.input_ids.cpu().numpy()
    types = (enc.token_type_ids.cpu().numpy() if enc.token_type_ids is not None and uses_token_types(tok)
             else np.full(ids.shape, pad_type, dtype=np.int64))
    return ids, types, lens


def kept_batches(bundle, segments: Sequence[Segments], keeps: Sequence[np.ndarray], batch_size: int | None = None):
    """Model inputs ``(input_ids, attention_mask, token_type_ids)`` per chunk of ``batch_size``
    rows, row i being ``segments[i]`` with only the words flagged in ``keeps[i]`` kept: the same
    tensors as :meth:`bundle.encode` of ``keep_words(segments[i], keeps[i])`` in the same chunks,
    built from each input's word pieces with numpy (:meth:`PieceMemo.compose_kept`) instead of one
    word list and one composed row at a time.  Rows of the same input should share one
    ``segments`` object (they are grouped by identity)."""
    return kept_rows(bundle, segments, keeps, batch_size)[1]


def kept_rows(bundle, segments: Sequence[Segments], keeps: Sequence[np.ndarray], batch_size: int | None = None,
              dedup: bool = False):
    """``(inverse, batches)``: :func:`kept_batches`' model inputs, and with ``dedup`` only the
    distinct rows of each input (first occurrences, in row order), ``inverse[i]`` being the
    position of row i's distinct row (None without ``dedup``).  Rows of one input that encode to
    the same tokens (a removal step that deletes only words past the truncation window, a
    coalition drawn twice) are then sent to the model once.  Rows of one input should share one
    ``segments`` object (they are grouped by identity; see :func:`kept_rows_grouped`)."""
    groups: dict[int, tuple] = {}
    for r in range(len(segments)):
        groups.setdefault(id(segments[r]), (segments[r], []))[1].append(r)
    items, at = [], np.empty(len(segments), dtype=np.int64)  # at[r]: row r's place among the grouped rows
    start = 0
    for segs, rows in groups.values():
        items.append((segs, np.stack([np.asarray(keeps[r], dtype=bool) for r in rows])))
        at[np.asarray(rows)] = np.arange(start, start + len(rows))
        start += len(rows)
    inverse, batches = kept_rows_grouped(bundle, items, at, batch_size, dedup)
    return (inverse[at] if dedup else None), batches


def kept_rows_grouped(bundle, groups: Sequence[tuple[Segments, np.ndarray]], order: np.ndarray | None = None,
                      batch_size: int | None = None, dedup: bool = False):
    """``(inverse, batches)`` for the rows of ``groups``, a list of ``(segments, keeps)`` with
    ``keeps`` an (n_g, words) boolean matrix (row j: the input with only its flagged words): rows
    are numbered by concatenating the groups; they are sent in ``order`` (a permutation of the
    rows, default their own order) in chunks of ``batch_size``; with ``dedup`` the rows of one
    group that encode alike are sent once (the first of them in ``order``).  ``inverse[r]`` is
    the position of row r's result among the sent rows.

    Each chunk is ``(input_ids, attention_mask, token_type_ids)``: the tensors of
    :meth:`bundle.encode` of the rows' word lists, built from the inputs' word pieces
    (:meth:`PieceMemo.compose_kept_many`: every group in one numpy pass) without a tokenizer call
    once the words are known.  An input the memo cannot compose is learned from (one tokenizer
    call) or tokenized."""
    import torch

    from harness.models.encoding import uses_token_types
    from harness.models.pieces import memo_for

    tok = bundle.tokenizer
    memo = memo_for(tok)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    pad_type = getattr(tok, "pad_token_type_id", 0) or 0
    with_types = uses_token_types(tok)
    bs = batch_size or bundle.predict_batch_size
    items = []
    for segs, k in groups:
        k = np.asarray(k, dtype=bool)
        words = sum(len(x) for x in segs)
        if k.ndim != 2 or k.shape[1] != words:
            raise ValueError(f"keep masks have shape {k.shape}, input has {words} words")
        items.append((segs, k))
    ns = np.asarray([k.shape[0] for _, k in items], dtype=np.int64)
    n = int(ns.sum())
    offsets = np.concatenate([[0], np.cumsum(ns)]).astype(np.int64)
    many = (memo.compose_kept_many([it for it in items if len(it[1])], bundle.max_length, pad_id, pad_type)
            if memo is not None else None)
    composed = iter(many) if many is not None else None
    built = []
    failed: set = set()
    for segs, k in items:
        if not len(k):
            built.append(None)
            continue
        got = next(composed) if composed is not None else None
        built.append(got if got is not None else _kept_group(bundle, memo, segs, k, failed))
    # every row's tokens in one padded array, so that a chunk is one gather
    width = max((b[0].shape[1] for b in built if b is not None), default=0)
    ids_all = np.full((n, width), pad_id, dtype=np.int64)
    types_all = np.full((n, width), pad_type, dtype=np.int64) if with_types else None
    lens_all = np.zeros(n, dtype=np.int64)
    for g, b in enumerate(built):
        if b is None:
            continue
        gi, gt, gl = b
        a, z = offsets[g], offsets[g + 1]
        ids_all[a:z, :gi.shape[1]] = gi
        if with_types:
            types_all[a:z, :gt.shape[1]] = gt
        lens_all[a:z] = gl
    order = np.arange(n) if order is None else np.asarray(order, dtype=np.int64)
    if order.shape != (n,) or (n and (order.min() < 0 or np.bincount(order, minlength=n).max() != 1)):
        raise ValueError(f"order must be a permutation of the {n} rows, got shape {order.shape}")
    inverse = np.empty(n, dtype=np.int64)
    if dedup:
        # equal rows of one input (same tokens, types and length) are sent once: the first of them
        from harness.explain_utils import first_occurrences

        group_of = np.repeat(np.arange(len(items)), ns)
        key = np.concatenate([group_of[:, None], lens_all[:, None], ids_all]
                             + ([types_all] if with_types else []), 1)[order]
        chosen, text_of = first_occurrences(key)
        sent = order[chosen]
        inverse[order] = text_of
    else:
        sent = order
        inverse[order] = np.arange(n)

    def batches():
        dev = bundle.device
        for start in range(0, sent.size, bs):
            idx = sent[start:start + bs]
            lens = lens_all[idx]
            T = int(lens.max())
            ids = ids_all[idx, :T]
            att = (np.arange(T)[None, :] < lens[:, None]).astype(np.int64)
            yield (torch.from_numpy(ids).to(dev), torch.from_numpy(att).to(dev),
                   torch.from_numpy(types_all[idx, :T]).to(dev) if with_types else None)

    return inverse, batches()


def kept_outputs_grouped(bundle, groups: Sequence[tuple[Segments, np.ndarray]], forward, width: int,
                         order: np.ndarray | None = None, batch_size: int | None = None,
                         dedup: bool = True) -> np.ndarray:
    """``forward(ids, mask, types, None)``'s outputs (N, width) for every row of ``groups`` (see
    :func:`kept_rows_grouped`), in row order; rows sent in ``order``, equal rows of one input once."""
    return _outputs(*kept_rows_grouped(bundle, groups, order, batch_size, dedup), forward, width)


def _outputs(inverse, batches, forward, width: int) -> np.ndarray:
    """``forward`` over the chunks (no grad), the results in row order (``inverse``)."""
    import torch

    with torch.inference_mode():
        out = [forward(ids, att, tt, None) for ids, att, tt in batches]
    if not out:
        return np.zeros((0, width))
    return np.concatenate(out, 0)[inverse]


def proba_forward(bundle):
    """``forward(ids, mask, types, emb)`` -> class probabilities as numpy (for the output helpers)."""
    return lambda ids, mask, types, emb: bundle.proba(ids, mask, types, inputs_embeds=emb).cpu().numpy()


def logits_forward(bundle):
    """``forward(ids, mask, types, emb)`` -> float64 logits as numpy (for the output helpers)."""
    return lambda ids, mask, types, emb: bundle.logits(ids, mask, types, inputs_embeds=emb).double().cpu().numpy()


def composable(bundle) -> bool:
    """Whether deletions can be composed from word pieces: a :class:`ModelBundle` whose word-level
    calls are its own (a stand-in model that only answers ``proba_of_segments`` gets word lists)."""
    from harness.models.bundle import ModelBundle

    return isinstance(bundle, ModelBundle) and type(bundle).proba_of_segments is ModelBundle.proba_of_segments \
        and type(bundle).encode is ModelBundle.encode


def _kept_outputs(bundle, segments, removes, batch_size, forward, width: int) -> np.ndarray:
    """``forward``'s outputs (N, width) for the rows with the ``removes`` words deleted, in row
    order; rows of one input that encode to the same tokens go to the model once."""
    return _outputs(*kept_rows(bundle, segments, [~r for r in removes], batch_size, dedup=True), forward, width)


def removed_proba(bundle, segments: Sequence[Segments], removes: Sequence[np.ndarray], operator: str,
                  batch_size: int | None = None) -> np.ndarray:
    """Class probabilities (N, C) of N inputs with the flagged words removed by ``operator``.

    ``removes[i]`` is a boolean array over input i's words (all segments), True = remove.
    """
    removes = _checked_removes(segments, removes, operator)
    if operator == "delete" and not composable(bundle):
        return bundle.proba_of_segments([keep_words(s, ~r) for s, r in zip(segments, removes)], batch_size)
    if operator == "delete":
        return _kept_outputs(bundle, segments, removes, batch_size, proba_forward(bundle),
                             bundle.num_labels).astype(np.float64)
    if operator == "mlm":
        return bundle.proba_of_segments(mlm_fill(bundle, segments, removes), batch_size)
    out = _in_place_outputs(bundle, segments, removes, operator, batch_size, proba_forward(bundle))
    return np.concatenate(out, 0).astype(np.float64) if out else np.zeros((0, bundle.num_labels))


def removed_logits(bundle, segments: Sequence[Segments], removes: Sequence[np.ndarray], operator: str,
                   batch_size: int | None = None) -> np.ndarray:
    """Classifier logits (N, C), float64, of N inputs with the flagged words removed by ``operator``.

    Same inputs and batching as :func:`removed_proba`, but the raw logits, so that log-odds
    (e.g. paper 003's log2(p / (1 - p))) can be computed without loss of precision when the
    classifier is confident.
    """
    removes = _checked_removes(segments, removes, operator)
    forward = logits_forward(bundle)
    if operator == "delete" and composable(bundle):
        return _kept_outputs(bundle, segments, removes, batch_size, forward, bundle.num_labels)
    if operator in ("delete", "mlm"):
        inputs = ([keep_words(s, ~r) for s, r in zip(segments, removes)] if operator == "delete"
                  else mlm_fill(bundle, segments, removes))
        removes = [np.zeros(sum(len(x) for x in s), dtype=bool) for s in inputs]
        segments, operator = inputs, "none"

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
