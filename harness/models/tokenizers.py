"""Tokenizers: training one in memory for a tiny model of any family, and reading a tokenizer's
sub-word policy (which vocabulary entries start a word, and the word they spell).

Three tokenizer types, as the families' published checkpoints use them:

- ``wordpiece`` (BERT, DistilBERT, ELECTRA): continuation pieces carry a prefix (``##``);
- ``bpe``, byte-level BPE (RoBERTa, GPT-2, ModernBERT): a word-initial piece carries the
  byte-level space marker ``Ġ``; the harness always encodes with ``add_prefix_space`` so every
  word of pre-tokenized input gets it (:func:`harness.models.reference.load_tokenizer`);
- ``unigram``, SentencePiece-style (ALBERT, DeBERTa-v2/v3, XLM-R, Llama): a word-initial piece
  carries the metaspace marker ``▁``.

A word-level tokenizer (the embedded default's ``tiny-bert``) has one token per word.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Sequence

TEMPLATES = {
    # specials (pad, unk, cls/bos, sep/eos, mask) and post-processor templates
    "bert": dict(pad="[PAD]", unk="[UNK]", cls="[CLS]", sep="[SEP]", mask="[MASK]",
                 single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", types=True),
    "roberta": dict(pad="<pad>", unk="<unk>", cls="<s>", sep="</s>", mask="<mask>",
                    single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", types=False),
    "llama": dict(pad="<pad>", unk="<unk>", cls="<s>", sep="</s>", mask=None,
                  single="<s> $A", pair="<s> $A <s> $B:1", types=False),
    "gpt2": dict(pad="<|endoftext|>", unk="<|endoftext|>", cls=None, sep="<|endoftext|>", mask=None,
                 single="$A", pair="$A <|endoftext|> $B:1", types=False),
}


def train_tokenizer(kind: str, texts: Iterable[str], template: str, vocab_size: int = 400,
                    token_types: bool | None = None, model_max_length: int = 128):
    """A ``PreTrainedTokenizerFast`` of type ``kind`` (``wordpiece`` / ``bpe`` / ``unigram``)
    trained in memory on ``texts`` with the family's special-token ``template``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if template not in TEMPLATES:
        raise ValueError(f"unknown tokenizer template {template!r} (templates: {', '.join(TEMPLATES)})")
    t = TEMPLATES[template]
    specials = list(dict.fromkeys(x for x in (t["pad"], t["unk"], t["cls"], t["sep"], t["mask"]) if x))
    texts = list(texts)
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=t["unk"]))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    elif kind == "bpe":
        vocab_size = max(vocab_size, 256 + len(specials) + 64)  # the 256 byte symbols, then merges
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    elif kind == "unigram":
        normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        pre = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tok = Tokenizer(_unigram_model(texts, normalizer, pre, vocab_size, specials, t["unk"]))
        tok.normalizer = normalizer
        tok.pre_tokenizer = pre
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        trainer = None
    else:
        raise ValueError(f"unknown tokenizer type {kind!r} (wordpiece, bpe, unigram)")
    if trainer is not None:
        tok.train_from_iterator(texts, trainer)
    ids = {s: tok.token_to_id(s) for s in specials}
    used = [s for s in specials if s in t["single"] or s in t["pair"]]
    tok.post_processor = processors.TemplateProcessing(single=t["single"], pair=t["pair"],
                                                       special_tokens=[(s, ids[s]) for s in used])
    types = t["types"] if token_types is None else token_types
    kwargs = {k + "_token": t[v] for k, v in (("pad", "pad"), ("unk", "unk"), ("mask", "mask")) if t[v]}
    if t["cls"]:
        kwargs.update(cls_token=t["cls"], bos_token=t["cls"])
    if t["sep"]:
        kwargs.update(sep_token=t["sep"], eos_token=t["sep"])
    if kind == "bpe":  # PreTrainedTokenizerFast would otherwise reset the pre-tokenizer to add none
        kwargs["add_prefix_space"] = True
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=model_max_length, padding_side="right",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"] if types else ["input_ids", "attention_mask"],
        **kwargs)


def _unigram_model(texts, normalizer, pre, vocab_size: int, specials: list[str], unk: str):
    """A SentencePiece-style Unigram model from corpus counts: the most frequent word-initial
    pieces (``▁word``), their frequent 4-character stems and 3-character endings (so longer
    or unseen words split into sub-words), and every character (alone and ``▁``-initial) as
    the fallback, each scored by its log relative frequency.  (The ``tokenizers`` Unigram
    trainer prunes a small corpus down to characters: 43 pieces for a 200-piece request.)"""
    import math
    from collections import Counter

    from tokenizers import models

    words: Counter = Counter()
    for text in texts:
        for piece, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)):
            words[piece] += 1
    chars: Counter = Counter()
    subs: Counter = Counter()
    for w, n in words.items():
        for c in w.lstrip("▁"):
            chars[c] += n
        body = w[1:] if w.startswith("▁") else w
        if len(body) > 5:
            subs["▁" + body[:4]] += n
            subs[body[-3:]] += n
    total = float(sum(words.values()) + sum(chars.values()) + sum(subs.values()))
    budget = max(0, vocab_size - len(specials) - 2 * len(chars) - 1)
    pieces: dict[str, float] = {}
    for w, n in words.most_common(budget // 2 + budget % 2):
        pieces[w] = math.log(n / total)
    for w, n in subs.most_common(budget // 2):
        pieces.setdefault(w, math.log(n / total) - 1.0)
    floor = math.log(1.0 / total) - 5.0
    pieces.setdefault("▁", floor)
    for c in sorted(chars):
        pieces.setdefault(c, floor)
        pieces.setdefault("▁" + c, floor - 1.0)
    vocab = [(s, 0.0) for s in specials] + sorted(pieces.items(), key=lambda kv: (-kv[1], kv[0]))
    return models.Unigram(vocab, unk_id=specials.index(unk), byte_fallback=False)


def special_ids(tokenizer) -> dict:
    """pad / bos / eos / cls / sep / mask token ids of a tokenizer (None where absent)."""
    return {k: getattr(tokenizer, f"{k}_token_id", None) for k in ("pad", "bos", "eos", "cls", "sep", "mask")}


@dataclass(frozen=True)
class SubwordPolicy:
    """How a tokenizer marks words: ``kind`` is ``wordlevel``, ``wordpiece`` (continuation
    ``prefix``), ``bpe`` (word-start marker ``Ġ``) or ``unigram`` (word-start marker ``▁``)."""

    kind: str
    marker: str = ""

    def starts_word(self, token: str) -> bool:
        """Whether the vocabulary entry ``token`` can begin a word."""
        if self.kind == "wordpiece":
            return not token.startswith(self.marker)
        if self.kind in ("bpe", "unigram"):
            return token.startswith(self.marker) and len(token) > len(self.marker)
        return True

    def word(self, token: str, tokenizer=None) -> str:
        """The text a word-initial entry spells (marker removed, bytes decoded)."""
        if self.kind in ("bpe", "unigram"):
            if tokenizer is not None:
                return tokenizer.convert_tokens_to_string([token]).strip()
            return token[len(self.marker):]
        return token


def subword_policy(tokenizer) -> SubwordPolicy:
    """The :class:`SubwordPolicy` of a fast tokenizer, read from its backend's model and
    pre-tokenizer (a slow tokenizer is assumed WordPiece with ``##``)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return SubwordPolicy("wordpiece", "##")
    state = json.loads(backend.to_str())
    model = state.get("model", {}) or {}
    mtype = model.get("type")
    pre = json.dumps(state.get("pre_tokenizer") or {})
    if mtype == "WordPiece":
        return SubwordPolicy("wordpiece", model.get("continuing_subword_prefix") or "##")
    if mtype == "WordLevel":
        return SubwordPolicy("wordlevel")
    if '"ByteLevel"' in pre:
        return SubwordPolicy("bpe", "Ġ")
    if '"Metaspace"' in pre or mtype == "Unigram":
        return SubwordPolicy("unigram", "▁")
    if mtype == "BPE" and model.get("continuing_subword_prefix"):
        return SubwordPolicy("wordpiece", model["continuing_subword_prefix"])
    raise ValueError(f"cannot tell how the {type(tokenizer).__name__} tokenizer (model {mtype}) marks words")


def texts_of(rows: Sequence) -> list[str]:
    """The whitespace-joined text of every segment of word-level rows (``Segments`` or
    ``(Segments, label)``), for training a tokenizer."""
    out = []
    for r in rows:
        segs = r[0] if r and isinstance(r[0], tuple) and r[0] and isinstance(r[0][0], tuple) else r
        out.extend(" ".join(s) for s in segs)
    return out
