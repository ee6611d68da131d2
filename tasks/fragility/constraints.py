"""The constraints of the ExplainFooler attack (paper 000 sec. 3.3), in two backends that
share one set of semantics.

Every candidate swaps exactly one word of the current text for one of its substitutes and
must pass, in this order (cheap first):

1. **repeat modification**: the word was not modified before;
2. **stop-word modification**: the original word is not a stop word (case-insensitive);
   tokens that are not plain words (punctuation, numbers) are never swapped either;
3. **word-embedding distance**: cosine(original word, substitute) >= ``min_word_cos``
   in the substitute resource's embedding (a word without a vector fails);
4. **part of speech**: the substitute's universal POS tag in the candidate equals the
   original word's tag in the original text (spaCy; reported as skipped without it);
5. **label** (checked by the attack, not here): the model still predicts the original
   label;
6. **sentence encoder**: cosine(MiniLM(original text), MiniLM(candidate)) >=
   ``min_sentence_cos`` (reported as skipped without the encoder).

Constraints 3, 4 and 6 compare against the *original* text (TextAttack's
``compare_against_original=True``).

Backends:

- :class:`HarnessBackend`: the project's own implementation (no TextAttack needed).
- :class:`TextAttackBackend`: TextAttack's ``WordSwapEmbedding`` (over a locally built
  ``WordEmbedding`` with ``nn_matrix``), ``RepeatModification``, ``StopwordModification``
  (explicit stop words) and ``WordEmbeddingDistance``; POS and sentence-encoder checks as
  TextAttack ``Constraint`` subclasses that call the same shared functions as the harness
  backend (TextAttack's own ``PartOfSpeech`` needs NLTK/flair/stanza downloads and its
  ``UniversalSentenceEncoder`` needs TF-Hub: neither works offline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from tasks.fragility.resources import MiniLMEncoder, SpacyTagger, SubstituteSet, is_swappable_token


@dataclass(frozen=True)
class ConstraintConfig:
    min_word_cos: float = 0.5
    """Word-embedding cosine floor: TextFooler's / TextAttack's ``WordEmbeddingDistance(min_cos_sim=0.5)``,
    the recipe paper 000 builds on (the paper gives no other value)."""
    min_sentence_cos: float = 0.5
    """Sentence-encoder cosine floor (paper 000 sec. 4.3: 0.5)."""
    allow_verb_noun_swap: bool = False
    """The paper asks for the same part of speech; TextAttack's recipe default would allow NOUN<->VERB."""


@dataclass(frozen=True)
class AttackState:
    """The current text of one trajectory: its words, the indices modified so far, and a
    backend handle (TextAttack's ``AttackedText`` carrying ``modified_indices``)."""

    words: tuple[str, ...]
    modified: frozenset[int] = frozenset()
    handle: Any = None


@dataclass(frozen=True)
class Candidate:
    words: tuple[str, ...]
    index: int
    new_word: str
    handle: Any = field(default=None, compare=False)


# --- shared semantics --------------------------------------------------------------------


def recover_word_case(word: str, reference: str) -> str:
    """Give ``word`` the case pattern of ``reference`` (lower, UPPER, Capitalised), as TextAttack does."""
    if reference.islower():
        return word.lower()
    if reference.isupper() and len(reference) > 1:
        return word.upper()
    if reference[:1].isupper() and reference[1:].islower():
        return word.capitalize()
    return word


def is_stopword(word: str, stopwords: frozenset[str]) -> bool:
    return word.lower() in stopwords


def modifiable_indices(state: AttackState, stopwords: frozenset[str]) -> set[int]:
    """Pre-transformation constraints 1-2: not modified yet, a plain word, not a stop word."""
    return {i for i, w in enumerate(state.words)
            if i not in state.modified and is_swappable_token(w) and not is_stopword(w, stopwords)}


def word_cos_ok(subs: SubstituteSet, original: str, new: str, floor: float) -> bool:
    c = subs.cos(original, new)
    return c is not None and c >= floor


def same_pos(tag_a: str, tag_b: str, allow_verb_noun_swap: bool) -> bool:
    return tag_a == tag_b or (allow_verb_noun_swap and {tag_a, tag_b} <= {"NOUN", "VERB"})


def pos_mask(tagger: SpacyTagger, reference: Sequence[str], candidates: Sequence[Candidate],
             allow_verb_noun_swap: bool) -> list[bool]:
    tags = tagger.tags([tuple(reference)] + [c.words for c in candidates])
    ref = tags[0]
    return [len(t) == len(c.words) and same_pos(ref[c.index], t[c.index], allow_verb_noun_swap)
            for c, t in zip(candidates, tags[1:])]


def text_of(words: Sequence[str]) -> str:
    return " ".join(words)


def sentence_mask(encoder: MiniLMEncoder, reference: Sequence[str], candidates: Sequence[Candidate],
                  floor: float) -> tuple[list[bool], np.ndarray]:
    sims = encoder.similarity(text_of(reference), [text_of(c.words) for c in candidates])
    return [bool(s >= floor) for s in sims], sims


# --- the harness backend -------------------------------------------------------------------


class HarnessBackend:
    """The project's own implementation of the constraints."""

    name = "harness"

    def __init__(self, subs: SubstituteSet, stopwords: frozenset[str], config: ConstraintConfig,
                 tagger: SpacyTagger | None, encoder: MiniLMEncoder | None):
        self.subs, self.stopwords, self.config = subs, frozenset(w.lower() for w in stopwords), config
        self.tagger, self.encoder = tagger, encoder

    def start(self, words: Sequence[str]) -> AttackState:
        return AttackState(tuple(words))

    def lexical(self, state: AttackState, i: int, original: AttackState) -> tuple[list[Candidate], dict]:
        """Constraints 1-3 for swaps of word ``i``; returns candidates and rejection counts."""
        stats = {"not_modifiable": 0, "word_embedding": 0}
        if i not in modifiable_indices(state, self.stopwords):
            stats["not_modifiable"] = 1
            return [], stats
        word = state.words[i]
        out = []
        for s in self.subs.substitutes(word):
            new = recover_word_case(s, word)
            if new == word:
                continue
            if not word_cos_ok(self.subs, original.words[i], new, self.config.min_word_cos):
                stats["word_embedding"] += 1
                continue
            words = state.words[:i] + (new,) + state.words[i + 1:]
            out.append(Candidate(words, i, new))
        return out, stats

    def pos_filter(self, original: AttackState, candidates: list[Candidate]) -> list[Candidate]:
        if self.tagger is None or not candidates:
            return candidates
        mask = pos_mask(self.tagger, original.words, candidates, self.config.allow_verb_noun_swap)
        return [c for c, ok in zip(candidates, mask) if ok]

    def sentence_filter(self, original: AttackState, candidates: list[Candidate]) -> list[Candidate]:
        if self.encoder is None or not candidates:
            return candidates
        mask, _ = sentence_mask(self.encoder, original.words, candidates, self.config.min_sentence_cos)
        return [c for c, ok in zip(candidates, mask) if ok]

    def advance(self, state: AttackState, cand: Candidate) -> AttackState:
        return AttackState(cand.words, state.modified | {cand.index})

    def describe(self) -> str:
        return "harness (the project's own constraint implementation)"


# --- the TextAttack backend -----------------------------------------------------------------


def textattack_index_map(words: Sequence[str]) -> dict[int, int]:
    """Our word index -> TextAttack ``AttackedText.words`` index, for swappable words.

    ``AttackedText`` splits a text into words with its own rule (punctuation dropped, a
    token may split); a whitespace word that is one plain word maps to one TextAttack word.
    """
    from textattack.shared.utils import words_from_text

    out, j = {}, 0
    for i, w in enumerate(words):
        parts = words_from_text(w)
        if is_swappable_token(w) and parts == [w]:
            out[i] = j
        j += len(parts)
    return out


class TextAttackBackend(HarnessBackend):
    """TextAttack's transformation and constraints inside the harness's per-level search."""

    name = "textattack"

    def __init__(self, subs: SubstituteSet, stopwords: frozenset[str], config: ConstraintConfig,
                 tagger: SpacyTagger | None, encoder: MiniLMEncoder | None, textattack_version: str = ""):
        super().__init__(subs, stopwords, config, tagger, encoder)
        from textattack.constraints import Constraint
        from textattack.constraints.pre_transformation import RepeatModification, StopwordModification
        from textattack.constraints.semantics import WordEmbeddingDistance
        from textattack.constraints.semantics.sentence_encoders import SentenceEncoder
        from textattack.transformations import WordSwapEmbedding

        self.version = textattack_version
        self.embedding = subs.to_textattack()
        self.transformation = WordSwapEmbedding(max_candidates=subs.k, embedding=self.embedding)
        # TextAttack compares stop words case-sensitively: give it every case variant
        variants = set()
        for w in self.stopwords:
            variants.update({w, w.capitalize(), w.upper()})
        self.pre = [RepeatModification(), StopwordModification(stopwords=variants)]
        self.word_embedding = WordEmbeddingDistance(embedding=self.embedding, min_cos_sim=config.min_word_cos,
                                                    include_unknown_words=False, cased=False)
        backend = self

        class SpacyPartOfSpeech(Constraint):
            """Same universal POS tag (spaCy) at the swapped word; shared with the harness backend."""

            def __init__(self):
                super().__init__(compare_against_original=True)

            def _check_constraint_many(self, transformed_texts, reference_text):
                ref_words = tuple(reference_text.text.split())
                cands = [backend._as_candidate(t) for t in transformed_texts]
                mask = pos_mask(backend.tagger, ref_words, cands, backend.config.allow_verb_noun_swap)
                return [t for t, ok in zip(transformed_texts, mask) if ok]

            def _check_constraint(self, transformed_text, reference_text):
                return bool(self._check_constraint_many([transformed_text], reference_text))

        class MiniLMSentenceEncoder(SentenceEncoder):
            """TextAttack's sentence-encoder constraint with the MiniLM encoder; whole texts,
            cosine, against the original (no windowing: TextAttack turns window_size=None
            into an infinite window that re-joins words without punctuation)."""

            def __init__(self):
                super().__init__(threshold=backend.config.min_sentence_cos, metric="cosine",
                                 compare_against_original=True, window_size=None)

            def encode(self, sentences):
                return backend.encoder.encode(list(sentences))

            def _score_list(self, starting_text, transformed_texts):
                import torch

                if not transformed_texts:
                    return torch.tensor([])
                sims = backend.encoder.similarity(starting_text.text, [t.text for t in transformed_texts])
                return torch.tensor(sims)

        self.pos_constraint = SpacyPartOfSpeech() if tagger is not None else None
        self.sentence_constraint = MiniLMSentenceEncoder() if encoder is not None else None
        self._maps: dict[tuple[str, ...], dict[int, int]] = {}

    def _index_map(self, words: tuple[str, ...]) -> dict[int, int]:
        if words not in self._maps:
            self._maps[words] = textattack_index_map(words)
        return self._maps[words]

    def _as_candidate(self, t) -> Candidate:
        """Our view of a transformed ``AttackedText``: its whitespace words and the swapped index
        (checked to be a one-word swap of the text it was generated from)."""
        ref_words = tuple(t.attack_attrs["previous_attacked_text"].text.split())
        words = tuple(t.text.split())
        (j,) = t.attack_attrs["newly_modified_indices"]
        inv = {v: k for k, v in self._index_map(ref_words).items()}
        i = inv.get(j)
        diff = [k for k, (a, b) in enumerate(zip(ref_words, words)) if a != b]
        if i is None or len(words) != len(ref_words) or any(k != i for k in diff):
            raise ValueError(f"TextAttack's swap is not a one-word swap of a plain word: {ref_words!r} -> {words!r}")
        return Candidate(words, i, words[i], handle=t)

    def start(self, words: Sequence[str]) -> AttackState:
        from textattack.shared import AttackedText

        if any(not w or any(ch.isspace() for ch in w) for w in words):
            raise ValueError("words must be non-empty and contain no whitespace")
        return AttackState(tuple(words), frozenset(), AttackedText(text_of(words)))

    def lexical(self, state: AttackState, i: int, original: AttackState) -> tuple[list[Candidate], dict]:
        stats = {"not_modifiable": 0, "word_embedding": 0}
        j = self._index_map(original.words).get(i)
        if j is None:
            stats["not_modifiable"] = 1
            return [], stats
        allowed = self.transformation(state.handle, pre_transformation_constraints=self.pre,
                                      indices_to_modify=[j], return_indices=True)
        if j not in allowed:  # RepeatModification / StopwordModification
            stats["not_modifiable"] = 1
            return [], stats
        transformed = self.transformation(state.handle, pre_transformation_constraints=self.pre,
                                          indices_to_modify=[j])
        if not transformed:
            return [], stats
        kept = self.word_embedding.call_many(transformed, original.handle)
        stats["word_embedding"] = len(transformed) - len(kept)
        kept_ids = {id(t) for t in kept}
        out = []
        for t in transformed:  # keep TextAttack's neighbour order
            if id(t) in kept_ids:
                c = self._as_candidate(t)
                out.append(Candidate(c.words, i, c.new_word, handle=t))
        return out, stats

    def pos_filter(self, original: AttackState, candidates: list[Candidate]) -> list[Candidate]:
        if self.pos_constraint is None or not candidates:
            return candidates
        kept = {id(t) for t in self.pos_constraint.call_many([c.handle for c in candidates], original.handle)}
        return [c for c in candidates if id(c.handle) in kept]

    def sentence_filter(self, original: AttackState, candidates: list[Candidate]) -> list[Candidate]:
        if self.sentence_constraint is None or not candidates:
            return candidates
        kept = {id(t) for t in self.sentence_constraint.call_many([c.handle for c in candidates], original.handle)}
        return [c for c in candidates if id(c.handle) in kept]

    def advance(self, state: AttackState, cand: Candidate) -> AttackState:
        # the candidate's AttackedText carries TextAttack's own modified_indices history
        return AttackState(cand.words, state.modified | {cand.index}, cand.handle)

    def describe(self) -> str:
        return (f"textattack {self.version}: WordSwapEmbedding(max_candidates={self.subs.k}) over a local "
                f"WordEmbedding(nn_matrix), RepeatModification, StopwordModification(stopwords=explicit), "
                f"WordEmbeddingDistance(min_cos_sim={self.config.min_word_cos}), SentenceEncoder subclass "
                f"(MiniLM), Constraint subclass (spaCy POS); search: the harness's per-level loop")
