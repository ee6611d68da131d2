"""Turning word lists into padded token batches, with word alignment and truncation.

Padding: always on the right, whatever the tokenizer's ``padding_side`` (Llama checkpoints pad
left); decoder classifiers pool at the last real token from the attention mask
(:mod:`harness.models.families`), so the side does not change a result.

Truncation policy (declared, recorded in every result): an input whose encoding exceeds
``max_length`` tokens loses whole words from the end of its longest segment until it fits.
Dropped words are invisible to the explainer and to the metrics; the number of inputs
touched is counted.  Tasks whose gold annotations refer to words are responsible for
building inputs that keep those words (see ``tasks.planted_sst.task``).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Sequence

import numpy as np
import torch

from harness.protocols import Segments

TRUNCATION_POLICY = "drop-trailing-words-of-longest-segment"


@dataclass
class Encoded:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor | None
    special_tokens_mask: torch.Tensor
    word_ids: list[list[int | None]]
    segments: list[Segments]
    truncated: list[bool]


def _n_tokens(tokenizer, segments: Segments) -> int:
    args = [list(s) for s in segments]
    enc = tokenizer(*args, is_split_into_words=True, add_special_tokens=True, truncation=False)
    return len(enc["input_ids"])


def _batch_lengths(tokenizer, batch_segments: list[Segments]) -> list[int]:
    n_seg = len(batch_segments[0])
    args = [[list(s[k]) for s in batch_segments] for k in range(n_seg)]
    enc = tokenizer(*args, is_split_into_words=True, add_special_tokens=True, truncation=False)
    return [len(ids) for ids in enc["input_ids"]]


def truncated_flags(tokenizer, batch_segments: list[Segments], max_length: int) -> list[bool]:
    """Which inputs the truncation policy would shorten."""
    if not batch_segments:
        return []
    return [n > max_length for n in _batch_lengths(tokenizer, list(batch_segments))]


def fit_segments(tokenizer, segments: Segments, max_length: int) -> tuple[Segments, bool]:
    """Apply the truncation policy to one input; returns the (possibly shorter) segments.

    One pass: the input is tokenized once, each word's token count is read from the word
    alignment (pre-tokenized words are tokenized independently, so the counts add up), and
    words are dropped from the end of the longest segment until the total fits.  The result is
    checked by tokenizing it; a tokenizer whose counts do not add up falls back to dropping one
    word at a time (the definition)."""
    segs = [list(s) for s in segments]
    total, counts = _word_token_counts(tokenizer, segments)
    if total <= max_length:
        return tuple(tuple(s) for s in segs), False
    fitted = fit_from_counts(segments, counts, total, max_length)
    if fitted is not None and _n_tokens(tokenizer, fitted) <= max_length:
        return fitted, True
    return _fit_one_word_at_a_time(tokenizer, segments, max_length)


def fit_from_counts(segments: Segments, counts: list[list[int]], total: int, max_length: int) -> Segments | None:
    """The truncation policy from per-word token counts (``counts[k][j]``: tokens of word j of
    segment k; ``total``: tokens of the whole input, special tokens included): drop the last word
    of the (first) longest segment until ``total`` fits.  Raises ``ValueError`` when a segment
    would have to lose its last word."""
    segs = [list(s) for s in segments]
    cnt = [list(c) for c in counts]
    while total > max_length:
        longest = max(range(len(segs)), key=lambda k: len(segs[k]))
        if len(segs[longest]) <= 1:
            raise ValueError(f"input cannot be truncated to {max_length} tokens: {segments!r}")
        segs[longest].pop()
        total -= cnt[longest].pop()
    return tuple(tuple(s) for s in segs)


def _word_token_counts(tokenizer, segments: Segments) -> tuple[int, list[list[int]]]:
    """(tokens of the input with special tokens, per segment the token count of each word), from
    one tokenizer call."""
    args = [list(s) for s in segments]
    enc = tokenizer(*args, is_split_into_words=True, add_special_tokens=True, truncation=False)
    counts = [[0] * len(s) for s in segments]
    for w, sq in zip(enc.word_ids(), enc.sequence_ids()):
        if w is not None and sq is not None:
            counts[sq][w] += 1
    return len(enc["input_ids"]), counts


def _fit_one_word_at_a_time(tokenizer, segments: Segments, max_length: int) -> tuple[Segments, bool]:
    segs = [list(s) for s in segments]
    truncated = False
    while _n_tokens(tokenizer, tuple(tuple(s) for s in segs)) > max_length:
        longest = max(range(len(segs)), key=lambda k: len(segs[k]))
        if len(segs[longest]) <= 1:
            raise ValueError(f"input cannot be truncated to {max_length} tokens: {segments!r}")
        segs[longest].pop()
        truncated = True
    return tuple(tuple(s) for s in segs), truncated


def uses_token_types(tokenizer) -> bool:
    """Whether the model family takes ``token_type_ids`` (the tokenizer's ``model_input_names``:
    BERT does; DistilBERT and RoBERTa do not, and DistilBERT's forward refuses them)."""
    return "token_type_ids" in (getattr(tokenizer, "model_input_names", None) or ["token_type_ids"])


def _backend(tokenizer):
    """The Rust ``tokenizers.Tokenizer`` of a fast tokenizer (else None); batches built from it are
    padded on the right whatever the tokenizer's ``padding_side`` (the harness always pads right).

    Not for a byte-level BPE tokenizer without ``add_prefix_space`` (RoBERTa, GPT-2 as loaded
    by default): its backend would encode every word but the first without the space marker,
    silently; the tokenizer's own call refuses such pre-tokenized input with a clear error
    (load it with ``add_prefix_space=True``, as :func:`harness.models.reference.load_tokenizer` does)."""
    if not getattr(tokenizer, "is_fast", False):
        return None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and _byte_level_without_prefix_space(backend.pre_tokenizer):
        return None
    return backend


def _byte_level_without_prefix_space(pre_tokenizer) -> bool:
    """A ByteLevel pre-tokenizer (alone or in a Sequence) with ``add_prefix_space`` off."""
    import json

    if pre_tokenizer is None:
        return False
    try:
        state = json.loads(pre_tokenizer.__getstate__())
    except (AttributeError, TypeError, ValueError):
        return False
    parts = state.get("pretokenizers", [state]) if isinstance(state, dict) else []
    return any(isinstance(p, dict) and p.get("type") == "ByteLevel" and p.get("add_prefix_space") is False
               for p in parts)


def backend_encodings(backend, rows, n_seg: int):
    """Unpadded, untruncated ``tokenizers.Encoding`` of each word-level input (special tokens
    added), from one ``encode_batch`` of a fast tokenizer's Rust backend.  The backend's own
    truncation and padding settings are switched off for the call and restored afterwards."""
    inputs = [list(r[0]) if n_seg == 1 else (list(r[0]), list(r[1])) for r in rows]
    trunc, pad = backend.truncation, backend.padding
    try:
        if trunc is not None:
            backend.no_truncation()
        if pad is not None:
            backend.no_padding()
        return backend.encode_batch(inputs, is_pretokenized=True, add_special_tokens=True)
    finally:
        if trunc is not None:
            backend.enable_truncation(**{k: v for k, v in trunc.items()
                                         if k in ("max_length", "stride", "strategy", "direction")})
        if pad is not None:
            backend.enable_padding(**{k: v for k, v in pad.items()
                                      if k in ("direction", "pad_id", "pad_type_id", "pad_token", "length",
                                               "pad_to_multiple_of")})


class _BackendBatch:
    """The result of ``tokenizer(..., is_split_into_words=True, padding=True, truncation=False,
    return_tensors="pt", return_special_tokens_mask=True, return_token_type_ids=True)`` for a fast
    tokenizer, computed by one ``encode_batch`` of its Rust backend (:func:`backend_encodings`:
    the same encodings, without the Python-side conversion that dominates the cost for short
    inputs), padded here the way the backend pads (pad id, pad type id, special-token mask 1,
    attention 0).  Checked against the tokenizer's own call in ``tests/test_zoo.py``."""

    def __init__(self, tokenizer, backend, rows, n_seg: int):
        encs = backend_encodings(backend, rows, n_seg)
        T = max(len(e.ids) for e in encs)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        pad_type = getattr(tokenizer, "pad_token_type_id", 0) or 0
        ids, types, special, att = [], [], [], []
        for e in encs:
            k = T - len(e.ids)
            ids.append(e.ids + [pad_id] * k)
            types.append(e.type_ids + [pad_type] * k)
            special.append(e.special_tokens_mask + [1] * k)
            att.append(e.attention_mask + [0] * k)
        self._data = {"input_ids": torch.tensor(ids, dtype=torch.long),
                      "special_tokens_mask": torch.tensor(special, dtype=torch.long),
                      "attention_mask": torch.tensor(att, dtype=torch.long)}
        if uses_token_types(tokenizer):
            self._data["token_type_ids"] = torch.tensor(types, dtype=torch.long)
        self._encs = encs

    def __getitem__(self, key):
        return self._data[key]

    def get(self, key, default=None):
        return self._data.get(key, default)

    def word_ids(self, i: int):
        return list(self._encs[i].word_ids) + [None] * (self._data["input_ids"].shape[1] - len(self._encs[i].ids))

    def sequence_ids(self, i: int):
        return list(self._encs[i].sequence_ids) + [None] * (self._data["input_ids"].shape[1] - len(self._encs[i].ids))


def _one_token_for_empty_rows(tokenizer, ids, att, tt, special, word_ids):
    """An input that encodes to no token at all (no words, and a tokenizer that adds no special
    tokens, e.g. GPT-2's) gets one special token, the tokenizer's bos (else eos, else pad) token,
    so the model still has a sequence to classify, as [CLS] [SEP] is for BERT."""
    filler = next((t for t in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
                   if t is not None), None)
    if filler is None:
        raise ValueError("an input with no words encodes to no token and the tokenizer has no bos/eos/pad token")
    if ids.shape[1] == 0:
        B = ids.shape[0]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else filler
        ids = torch.full((B, 1), int(pad), dtype=ids.dtype)
        att = torch.zeros((B, 1), dtype=att.dtype)
        tt = None if tt is None else torch.zeros((B, 1), dtype=tt.dtype)
        special = torch.ones((B, 1), dtype=torch.bool)
        word_ids = [[None] for _ in word_ids]
    empty = att.sum(1) == 0
    ids, att, special = ids.clone(), att.clone(), special.clone()
    ids[empty, 0] = int(filler)
    att[empty, 0] = 1
    special[empty, 0] = True
    return ids, att, tt, special, word_ids


def encode(tokenizer, batch_segments: list[Segments], max_length: int, device=None, memo: bool = True) -> Encoded:
    """Encode B inputs (1 or 2 segments each, all with the same count) into a padded batch.

    Encode once (:mod:`harness.models.pieces`): an input whose words (and template) the
    tokenizer has already encoded in this process is composed from those pieces; only the
    others are tokenized, in one call, and learned from.  ``memo=False``: tokenize everything."""
    if not batch_segments:
        raise ValueError("cannot encode an empty batch")
    n_seg = len(batch_segments[0])
    if any(len(s) != n_seg for s in batch_segments):
        raise ValueError("all inputs of a batch must have the same number of segments")
    if n_seg not in (1, 2):
        raise ValueError(f"inputs must have 1 or 2 segments, got {n_seg}")
    from harness.models.pieces import memo_for

    pm = memo_for(tokenizer) if memo else None
    if pm is None:
        return _to(_tokenize_batch(tokenizer, list(batch_segments), max_length, n_seg), device)
    rows = [pm.compose(segs, max_length) for segs in batch_segments]
    todo = [i for i, r in enumerate(rows) if r is None]
    fitted, truncated = list(batch_segments), [False] * len(batch_segments)
    pm.composed += len(rows) - len(todo)
    pm.tokenized += len(todo)
    if todo:
        enc = _tokenize_batch(tokenizer, [batch_segments[i] for i in todo], max_length, n_seg)
        for b, i in enumerate(todo):
            rows[i] = _learn_row(pm, enc, b)
            fitted[i], truncated[i] = enc.segments[b], enc.truncated[b]
    lens = np.fromiter((len(r[0]) for r in rows), dtype=np.int64, count=len(rows))
    T, total = int(lens.max()), int(lens.sum())
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    pad_type = getattr(tokenizer, "pad_token_type_id", 0) or 0
    real = np.arange(T)[None, :] < lens[:, None]  # right padding: each row's tokens are a prefix

    def padded(k: int, fill: int) -> torch.Tensor:
        out = np.full((len(rows), T), fill, dtype=np.int64)
        out[real] = np.fromiter(chain.from_iterable(r[k] for r in rows), dtype=np.int64, count=total)
        return torch.from_numpy(out)

    ids = padded(0, pad_id)
    att = torch.from_numpy(real.astype(np.int64))
    special = padded(2, 1).bool()
    tt = padded(1, pad_type) if uses_token_types(tokenizer) else None
    word_ids = [list(r[3]) + [None] * (T - len(r[0])) for r in rows]
    return _to(Encoded(input_ids=ids, attention_mask=att, token_type_ids=tt, special_tokens_mask=special,
                       word_ids=word_ids, segments=fitted, truncated=truncated), device)


def _to(enc: Encoded, device) -> Encoded:
    dev = device or torch.device("cpu")
    if dev.type == "cpu" and enc.input_ids.device.type == "cpu":
        return enc
    return Encoded(input_ids=enc.input_ids.to(dev), attention_mask=enc.attention_mask.to(dev),
                   token_type_ids=enc.token_type_ids.to(dev) if enc.token_type_ids is not None else None,
                   special_tokens_mask=enc.special_tokens_mask.to(dev), word_ids=enc.word_ids,
                   segments=enc.segments, truncated=enc.truncated)


def _learn_row(pm, enc: Encoded, b: int) -> tuple:
    """Row ``b`` of a tokenized batch as ``(ids, types, special, word ids)``, learned by the memo
    ``pm`` (an empty input's filler token teaches nothing)."""
    types_t = enc.token_type_ids
    L = int(enc.attention_mask[b].sum())
    ids = enc.input_ids[b, :L].tolist()
    types = types_t[b, :L].tolist() if types_t is not None else [0] * L
    special = enc.special_tokens_mask[b, :L].long().tolist()
    wids = enc.word_ids[b][:L]
    segs = enc.segments[b]
    offsets = [0]
    for sg in segs[:-1]:
        offsets.append(offsets[-1] + len(sg))
    seqs = [None if w is None else max(k for k, o in enumerate(offsets) if o <= w) for w in wids]
    local = [None if w is None else w - offsets[sq] for w, sq in zip(wids, seqs)]
    pm.learn(segs, ids, types, local, seqs)
    return ids, types, special, wids


def learn_pieces(tokenizer, inputs: Sequence[Segments]) -> None:
    """Teach the tokenizer's piece memo every word of ``inputs``, truncation aside: one tokenizer
    call per segment count, on the whole inputs (an over-long input's words past ``max_length``
    included, so that its deletions can be composed and then truncated by the policy)."""
    from harness.models.pieces import memo_for

    pm = memo_for(tokenizer)
    if pm is None:
        return
    by_n: dict[int, list[Segments]] = {}
    for segs in inputs:
        if any(len(s) for s in segs):
            by_n.setdefault(len(segs), []).append(segs)
    for n_seg, rows in by_n.items():
        enc = _tokenize_batch(tokenizer, rows, 2 ** 31, n_seg)
        for b in range(len(rows)):
            _learn_row(pm, enc, b)


def _tokenize_batch(tokenizer, batch_segments: list[Segments], max_length: int, n_seg: int) -> Encoded:
    """The tokenizer's own encoding of a batch, with the truncation policy (on the CPU)."""
    fitted, truncated = list(batch_segments), [False] * len(batch_segments)

    fast = _backend(tokenizer)

    def tokenize(rows):
        if fast is not None:
            return _BackendBatch(tokenizer, fast, rows, n_seg)
        args = [[list(s[k]) for s in rows] for k in range(n_seg)]
        return tokenizer(*args, is_split_into_words=True, padding=True, truncation=False, return_tensors="pt",
                         return_special_tokens_mask=True, return_token_type_ids=uses_token_types(tokenizer),
                         padding_side="right")

    # one tokenizer call in the common case; only a batch with an over-long input is tokenized again
    enc = tokenize(fitted)
    lengths = enc["attention_mask"].sum(1).tolist()
    if max(lengths) > max_length:
        for i, n in enumerate(lengths):
            if n > max_length:  # rare: refit only the over-long inputs, from this call's word alignment
                counts = [[0] * len(sg) for sg in fitted[i]]
                for w, sq in zip(enc.word_ids(i), enc.sequence_ids(i)):
                    if w is not None and sq is not None:
                        counts[sq][w] += 1
                fitted[i] = fit_from_counts(fitted[i], counts, int(n), max_length)
                truncated[i] = True
        enc = tokenize(fitted)
        still = [i for i, n in enumerate(enc["attention_mask"].sum(1).tolist()) if n > max_length]
        if still:  # a tokenizer whose per-word counts do not add up: the one-word-at-a-time definition
            for i in still:
                fitted[i], _ = _fit_one_word_at_a_time(tokenizer, fitted[i], max_length)
            enc = tokenize(fitted)
    word_ids: list[list[int | None]] = []
    for i, segs in enumerate(fitted):
        offsets = [0]
        for s in segs[:-1]:
            offsets.append(offsets[-1] + len(s))
        wids = enc.word_ids(i)
        seqs = enc.sequence_ids(i)
        row: list[int | None] = []
        for w, sq in zip(wids, seqs):
            row.append(None if w is None or sq is None else offsets[sq] + w)
        word_ids.append(row)
    ids, att, tt = enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids")
    special = enc["special_tokens_mask"].bool() | (att == 0)
    if (att.sum(1) == 0).any():  # an input with no words and no special tokens (GPT-2 adds none)
        ids, att, tt, special, word_ids = _one_token_for_empty_rows(tokenizer, ids, att, tt, special, word_ids)
    return Encoded(input_ids=ids, attention_mask=att, token_type_ids=tt, special_tokens_mask=special,
                   word_ids=word_ids, segments=fitted, truncated=truncated)
