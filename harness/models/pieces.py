"""Encode once: perturbed inputs built from the word pieces already seen, without the tokenizer.

Every removal metric, LOO, LIME/SHAP coalition, masked-LM fill and fragility candidate is a
word list made from words the run has already tokenized. A fast tokenizer encodes
pre-tokenized input (``is_split_into_words=True``) word by word: each word is normalised,
pre-tokenized and split into pieces on its own. The special tokens come from the tokenizer's
template. So the encoding of a perturbed word list is the template filled with the pieces of
its words.

:class:`PieceMemo` (one per tokenizer object) learns from every real tokenizer call:

- each word's piece ids, separately for a word that starts segment k and one that does not
  (byte-level BPE and SentencePiece tokenizers can treat a segment's first word differently);
- the segment template: special ids and token types around the segments.

It composes an input only when every word of it (in its position class) and its template are
known. Anything else goes through the tokenizer and is learned:

- a new word, e.g. a masked-LM fill never seen before;
- a row that would exceed ``max_length`` (the truncation policy then applies);
- a row that would encode to nothing.

Exactness is checked, not assumed:

- the memo switches itself off for a tokenizer if the tokenizer ever gives one word (in one
  position class) two different piece sequences, or one template two shapes;
- ``tests/test_encode_once.py`` compares composed batches with the tokenizer's own for
  WordPiece, byte-level BPE and Unigram (SentencePiece) tokenizers of every family, and the hub
  tokenizer classes, on deletions, replacements and pairs.

A tokenizer whose vocabulary size changes (tokens added) starts a fresh memo.
"""

from __future__ import annotations

import os
import weakref
from itertools import chain
from typing import Sequence

from harness.protocols import Segments

#: set ATTRIBOARD_ENCODE_MEMO=0 to tokenize every input (for comparisons)
ENABLED = os.environ.get("ATTRIBOARD_ENCODE_MEMO", "1") != "0"
#: words kept per tokenizer before the memo is cleared (bounds its memory)
MAX_WORDS = 200_000
#: inputs whose candidate layouts are kept per tokenizer (compose_kept_many)
MAX_LAYOUTS = 4096

_MEMOS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class PieceMemo:
    """Word pieces and templates of one tokenizer (see the module doc)."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.pieces: dict[tuple[str, int], tuple[int, ...]] = {}
        """(word, position class) -> piece ids; class 0: not first in its segment, 1 + k: first of segment k."""
        self.templates: dict[int, tuple] = {}
        """n_seg -> tuple of items: ``("s", id, type)`` a special token, ``("w", k, type)`` segment k's words."""
        self.disabled: str | None = None
        self.composed = 0
        self.tokenized = 0
        self.version = 0
        """Bumped whenever pieces or templates are added or cleared (the layouts below depend on them)."""
        self._layouts: dict = {}
        """segments -> their candidate tokens for :meth:`compose_kept_many` (valid for one ``version``)."""
        self._layouts_version = 0

    # -- learning from a real tokenizer call -------------------------------------------------
    def learn(self, row_segments: Segments, ids: Sequence[int], types: Sequence[int], wids: Sequence[int | None],
              seqs: Sequence[int | None]) -> None:
        """Learn from one real encoded row: ``ids``/``types`` of its L tokens, ``wids`` (word index
        within its segment, None for a special) and ``seqs`` (segment index, None for a special)."""
        if self.disabled:
            return
        n_seg = len(row_segments)
        by_word: dict[tuple[int, int], list[int]] = {}
        template: list[tuple] = []
        seg_type: dict[int, int] = {}
        for t, (i, ty, w, sq) in enumerate(zip(ids, types, wids, seqs)):
            if w is None or sq is None:
                template.append(("s", int(i), int(ty)))
                continue
            by_word.setdefault((sq, w), []).append(int(i))
            if seg_type.setdefault(sq, int(ty)) != int(ty):
                return self._disable(f"segment {sq} has tokens of two types")
            if not template or template[-1][:2] != ("w", sq):
                if any(x[:2] == ("w", sq) for x in template):  # a segment's words not contiguous
                    return self._disable("a segment's tokens are not contiguous")
                template.append(("w", sq, int(ty)))
        for k, seg in enumerate(row_segments):
            for j, word in enumerate(seg):
                key = (word, 0 if j else 1 + k)
                got = tuple(by_word.get((k, j), ()))
                old = self.pieces.get(key)
                if old is None:
                    if len(self.pieces) >= MAX_WORDS:
                        self.pieces.clear()
                    self.pieces[key] = got
                    self.version += 1
                elif old != got:
                    return self._disable(f"word {word!r} tokenized two ways: {list(old)} and {list(got)}")
        if sum(1 for x in template if x[0] == "w") == n_seg:  # every segment has tokens: the full template
            tpl = tuple(template)
            old = self.templates.get(n_seg)
            if old is None:
                self.templates[n_seg] = tpl
                self.version += 1
            elif old != tpl:
                return self._disable(f"two templates for {n_seg}-segment inputs")

    def _disable(self, why: str) -> None:
        self.disabled = why
        self.version += 1
        self.pieces.clear()
        self.templates.clear()

    # -- composing ---------------------------------------------------------------------------
    def compose(self, row_segments: Segments, max_length: int):
        """``(ids, types, special, word_ids)`` of one input from the memo (word ids counted over
        all segments, as :func:`harness.models.encoding.encode` gives them), or None when a word
        or the template is unknown, or the row would need truncation or be empty."""
        if self.disabled:
            return None
        tpl = self.templates.get(len(row_segments))
        if tpl is None:
            return None
        ids: list[int] = []
        types: list[int] = []
        special: list[int] = []
        wids: list[int | None] = []
        get = self.pieces.get
        base = 0
        bases = []
        for seg in row_segments:
            bases.append(base)
            base += len(seg)
        for item in tpl:
            if item[0] == "s":
                ids.append(item[1])
                types.append(item[2])
                special.append(1)
                wids.append(None)
                continue
            k, ty = item[1], item[2]
            seg = row_segments[k]
            if not seg:
                continue
            ps = [get((seg[0], 1 + k))]
            ps += [get((w, 0)) for w in seg[1:]]
            if None in ps:
                return None
            flat = list(chain.from_iterable(ps))
            n = len(flat)
            ids += flat
            types += [ty] * n
            special += [0] * n
            b = bases[k]
            wids += [b + j for j, p in enumerate(ps) for _ in p]
        if not ids or len(ids) > max_length:
            return None
        return ids, types, special, wids


    def compose_kept(self, segments: Segments, keeps, max_length: int, pad_id: int, pad_type: int):
        """The padded ``(ids, types, lengths)`` numpy arrays of ``segments`` with only the words
        flagged in each row of ``keeps`` (n, words) kept: what composing
        ``keep_words(segments, keep)`` row by row gives, built for all rows at once (no word lists).
        A single-segment row over ``max_length`` is truncated by the policy (its trailing kept words
        dropped until it fits), as :func:`harness.models.encoding.fit_segments` would.  None when a
        needed piece or the template is unknown, a row would be empty, or a pair is too long."""
        import numpy as np

        if self.disabled:
            return None
        keeps = np.asarray(keeps, dtype=bool)
        n = keeps.shape[0]
        starts, a = [], 0
        for seg in segments:
            starts.append(a)
            a += len(seg)
        first = np.zeros_like(keeps)  # the first kept word of each segment takes its first-of-segment pieces
        for seg, a in zip(segments, starts):
            if not seg:
                continue
            block = keeps[:, a:a + len(seg)]
            hit = block.any(1)
            first[np.flatnonzero(hit), a + block.argmax(1)[hit]] = True
        need_first = first.any(0)
        need_rest = (keeps & ~first).any(0)
        lay = self._current_layout(segments)
        if lay is None:
            return None
        tok, typ, word_a, variant_a, known_first, known_rest = lay[:6]
        if (need_first & ~known_first).any() or (need_rest & ~known_rest).any():
            return None  # a piece some row needs is unknown
        special = variant_a < 0
        sel = np.broadcast_to(special, (n, len(tok))).copy()
        wi = np.flatnonzero(~special)
        sel[:, wi] = keeps[:, word_a[wi]] & (first[:, word_a[wi]] == (variant_a[wi] == 1))
        lens = sel.sum(1)
        if n and lens.max() > max_length:
            if len(segments) != 1:  # pairs: the policy's longest-segment rule, left to the tokenizing path
                return None
            # the truncation policy on one segment: its trailing kept words go until the row fits, i.e.
            # a word stays iff the kept tokens up to its end (specials aside) fit into the budget
            budget = max_length - int(special.sum())
            words_sel = sel[:, wi]
            last = np.zeros(int(word_a.max()) + 1 if wi.size else 0, dtype=np.int64)
            last[word_a[wi]] = np.arange(wi.size)  # each word's last candidate token (tokens are in word order)
            end = np.cumsum(words_sel, axis=1)[:, last[word_a[wi]]]
            kept = words_sel & (end <= budget)
            over = lens > max_length
            if (kept[over].sum(1) == 0).any():  # even the first kept word does not fit: the policy raises
                return None
            sel[np.ix_(over, wi)] = kept[over]
            lens = sel.sum(1)
        if n == 0 or lens.min() == 0 or lens.max() > max_length:
            return None
        T = int(lens.max())
        real = np.arange(T)[None, :] < lens[:, None]
        ids = np.full((n, T), pad_id, dtype=np.int64)
        ids[real] = np.broadcast_to(np.asarray(tok, dtype=np.int64), sel.shape)[sel]
        types = np.full((n, T), pad_type, dtype=np.int64)
        types[real] = np.broadcast_to(np.asarray(typ, dtype=np.int64), sel.shape)[sel]
        self.composed += n
        return ids, types, lens

    def _current_layout(self, segments: Segments):
        """:meth:`_layout`, the cache first emptied when the memo changed since it was filled."""
        if self._layouts_version != self.version or len(self._layouts) > MAX_LAYOUTS:
            self._layouts.clear()
            self._layouts_version = self.version
        return self._layout(segments)

    def _layout(self, segments: Segments):
        """``(tok, typ, word, variant, known_first, known_rest, segment_start)`` of one input, cached per
        ``segments`` while the memo is unchanged: every candidate token of its rows in template
        order (specials: variant -1; each word's first-of-segment pieces: variant 1, then its
        other pieces: variant 0, where known), per word whether each variant is known, and per
        word the index of its segment's first word.  None when the template is unknown."""
        import numpy as np

        lay = self._layouts.get(segments)
        if lay is not None or segments in self._layouts:
            return lay
        tpl = self.templates.get(len(segments))
        if tpl is None:
            self._layouts[segments] = None
            return None
        get = self.pieces.get
        n_words = sum(len(x) for x in segments)
        known_first = np.zeros(n_words, dtype=bool)
        known_rest = np.zeros(n_words, dtype=bool)
        starts = [0]
        for seg in segments[:-1]:
            starts.append(starts[-1] + len(seg))
        tok, typ, word, variant = [], [], [], []
        for item in tpl:
            if item[0] == "s":
                tok.append(item[1])
                typ.append(item[2])
                word.append(0)
                variant.append(-1)
                continue
            k, ty = item[1], item[2]
            for j, w in enumerate(segments[k]):
                g = starts[k] + j
                for v, cls, known in ((1, 1 + k, known_first), (0, 0, known_rest)):
                    p = get((w, cls))
                    if p is None:
                        continue
                    known[g] = True
                    tok += p
                    typ += [ty] * len(p)
                    word += [g] * len(p)
                    variant += [v] * len(p)
        lens = [len(x) for x in segments]
        lay = (np.asarray(tok, dtype=np.int64), np.asarray(typ, dtype=np.int64), np.asarray(word, dtype=np.int64),
               np.asarray(variant, dtype=np.int64), known_first, known_rest,
               np.repeat(np.asarray(starts, dtype=np.int64), lens))
        self._layouts[segments] = lay
        return lay

    def compose_kept_many(self, items, max_length: int, pad_id: int, pad_type: int) -> list:
        """:meth:`compose_kept` of many inputs at once: ``items`` is a list of ``(segments, keeps)``;
        the result has one ``(ids, types, lengths)`` or None per item, exactly what
        :meth:`compose_kept` gives for it.  Only the piece lookups run per input; the selection
        of every row's tokens is one set of numpy operations over all rows (short inputs: the
        per-call cost of :meth:`compose_kept` would exceed the model's time).  An input with a
        row over ``max_length`` is handed to :meth:`compose_kept` (its truncation policy)."""
        import numpy as np

        G = len(items)
        out: list = [None] * G
        if self.disabled or not G:
            return out
        keeps = [np.asarray(k, dtype=bool) for _, k in items]
        ns = np.asarray([k.shape[0] for k in keeps], dtype=np.int64)
        Ws = [k.shape[1] for k in keeps]
        N, W = int(ns.sum()), max(Ws)
        if N == 0 or W == 0:
            return [self.compose_kept(s, k, max_length, pad_id, pad_type) for (s, _), k in zip(items, keeps)]
        layouts = [self._current_layout(segs) for segs, _ in items]
        row0 = np.concatenate([[0], np.cumsum(ns)])
        grp = np.repeat(np.arange(G), ns)
        K = np.zeros((N, W), dtype=bool)
        segstart = np.zeros((G, W), dtype=np.int64)  # each word's segment's first word (per input)
        known_first = np.zeros((G, W), dtype=bool)
        known_rest = np.zeros((G, W), dtype=bool)
        for g, (k, lay) in enumerate(zip(keeps, layouts)):
            K[row0[g]:row0[g + 1], :Ws[g]] = k
            if lay is not None:
                known_first[g, :Ws[g]] = lay[4]
                known_rest[g, :Ws[g]] = lay[5]
                segstart[g, :Ws[g]] = lay[6]
        before = np.cumsum(K, 1) - K  # kept words before each word (row-wide)
        first = K & (before == np.take_along_axis(before, segstart[grp], 1))  # no kept word before it in its segment
        has = ns > 0
        need_first = np.zeros((G, W), dtype=bool)
        need_rest = np.zeros((G, W), dtype=bool)
        if has.any():
            need_first[has] = np.logical_or.reduceat(first, row0[:-1][has], axis=0)
            need_rest[has] = np.logical_or.reduceat(K & ~first, row0[:-1][has], axis=0)
        # an input is composable when its template and every piece its rows need are known
        ok = np.asarray([lay is not None for lay in layouts]) & has
        ok &= ~((need_first & ~known_first) | (need_rest & ~known_rest)).any(1)
        C = max((len(layouts[g][0]) for g in np.flatnonzero(ok).tolist()), default=0)
        if C == 0:
            return out
        TOK = np.full((G, C), pad_id, dtype=np.int64)
        TYP = np.full((G, C), pad_type, dtype=np.int64)
        WORD = np.zeros((G, C), dtype=np.int64)
        VAR = np.full((G, C), -2, dtype=np.int64)  # -2: no candidate (padding, or an input left out)
        for g in np.flatnonzero(ok).tolist():
            tok, typ, word, variant = layouts[g][:4]
            m = tok.size
            TOK[g, :m], TYP[g, :m], WORD[g, :m], VAR[g, :m] = tok, typ, word, variant
        var = VAR[grp]
        wi = WORD[grp]
        sel = (var == -1) | ((var >= 0) & np.take_along_axis(K, wi, 1)
                             & (np.take_along_axis(first, wi, 1) == (var == 1)))
        lens = sel.sum(1)
        lo = np.zeros(G, dtype=np.int64)
        hi = np.zeros(G, dtype=np.int64)
        if has.any():
            starts = row0[:-1][has]  # (strictly increasing: empty inputs left out)
            hi[has] = np.maximum.reduceat(lens, starts)
            lo[has] = np.minimum.reduceat(lens, starts)
        good = ok & (lo > 0) & (hi <= max_length)
        long_ = ok & (hi > max_length)
        sel &= good[grp][:, None]
        lens = np.where(good[grp], lens, 0)
        T = int(lens.max())
        if T:
            real = np.arange(T)[None, :] < lens[:, None]
            ids = np.full((N, T), pad_id, dtype=np.int64)
            ids[real] = TOK[grp][sel]
            types = np.full((N, T), pad_type, dtype=np.int64)
            types[real] = TYP[grp][sel]
            for g in np.flatnonzero(good).tolist():
                a, b = row0[g], row0[g + 1]
                out[g] = (ids[a:b, :hi[g]], types[a:b, :hi[g]], lens[a:b])
                self.composed += int(b - a)
        for g in np.flatnonzero(long_).tolist():  # the truncation policy, input by input
            out[g] = self.compose_kept(items[g][0], keeps[g], max_length, pad_id, pad_type)
        return out

    def missing_for_kept(self, segments: Segments, keeps) -> list:
        """Inputs whose tokenization would teach the pieces :meth:`compose_kept` lacks for these
        rows: the whole input, and each segment started at a word that some row keeps first."""
        import numpy as np

        keeps = np.asarray(keeps, dtype=bool)
        out = []
        if any((w, 0 if j else 1 + k) not in self.pieces for k, seg in enumerate(segments)
               for j, w in enumerate(seg)) or len(segments) not in self.templates:
            out.append(segments)
        a = 0
        for k, seg in enumerate(segments):
            if seg:
                block = keeps[:, a:a + len(seg)]
                hit = block.any(1)
                for j in np.unique(block.argmax(1)[hit]).tolist():
                    if j and (seg[j], 1 + k) not in self.pieces:
                        out.append(segments[:k] + (seg[j:],) + segments[k + 1:])
            a += len(seg)
        return out


def memo_for(tokenizer) -> PieceMemo | None:
    """The tokenizer's memo (None when encode-once is off or the tokenizer cannot be keyed)."""
    if not ENABLED:
        return None
    try:
        size = len(tokenizer)
        memo = _MEMOS.get(tokenizer)
        if memo is None or memo.vocab_size != size:
            memo = PieceMemo(size)
            _MEMOS[tokenizer] = memo
        return memo
    except TypeError:  # not weak-referenceable
        return None
