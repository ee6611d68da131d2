"""A deterministic, generated movie-review sentiment corpus (the embedded default for T1).

No copied data: sentences are composed from a small grammar of clauses about films,
each with a sentiment (0 negative, 1 positive).  Lengths roughly follow SST-2 dev
(about 5 to 35 words).  The same seed always yields the same corpus.
"""

from __future__ import annotations

import random

SUBJECTS = [
    "the film", "the movie", "the plot", "the acting", "the script", "the director",
    "the cast", "the story", "the soundtrack", "the camera work", "the dialogue",
    "the ending", "the lead actor", "the lead actress", "the supporting cast",
    "the screenplay", "the editing", "the pacing", "the villain", "the hero",
    "this sequel", "this comedy", "this thriller", "this drama", "the documentary",
    "the animation", "the score", "the premise", "the final act", "the opening scene",
]
COPULAS = ["is", "was", "feels", "seems", "remains", "turns out to be", "comes across as"]
INTENSIFIERS = ["", "", "very", "truly", "rather", "remarkably", "oddly", "quite",
                "utterly", "surprisingly", "almost", "genuinely"]
ADJ = {
    1: ["brilliant", "moving", "charming", "funny", "gripping", "beautiful", "clever",
        "delightful", "touching", "smart", "engaging", "fresh", "powerful", "warm",
        "witty", "stunning", "heartfelt", "tender", "thrilling", "memorable"],
    0: ["dull", "boring", "clumsy", "tedious", "flat", "predictable", "messy", "bland",
        "shallow", "lifeless", "awkward", "forgettable", "tiresome", "silly", "hollow",
        "pointless", "sluggish", "stale", "grating", "muddled"],
}
VERB_PHRASES = {
    1: ["kept me on the edge of my seat", "made me laugh out loud", "earns every minute",
        "rewards patient viewers", "never loses its nerve", "left the whole audience smiling",
        "deserves a wide audience", "lingers long after the credits"],
    0: ["drags on far too long", "never finds its footing", "wastes a talented cast",
        "left me checking my watch", "falls apart in the second half",
        "forgets what it wants to say", "made the evening feel endless",
        "squanders a promising idea"],
}
CONNECTORS = ["and", "but", "while", "although", "because", "even though", "yet", "so"]
OPENERS = ["", "", "", "honestly ,", "in the end ,", "for what it is worth ,",
           "from start to finish ,", "at times ,", "sadly ,", "thankfully ,"]
TAILS = ["", "", "", ".", ".", ". ", "!", "..."]


def _clause(rng: random.Random, sentiment: int) -> str:
    subj = rng.choice(SUBJECTS)
    if rng.random() < 0.6:
        inten = rng.choice(INTENSIFIERS)
        adj = rng.choice(ADJ[sentiment])
        parts = [subj, rng.choice(COPULAS), inten, adj]
        if rng.random() < 0.3:
            parts += ["and", rng.choice(ADJ[sentiment])]
    else:
        parts = [subj, rng.choice(VERB_PHRASES[sentiment])]
    return " ".join(p for p in parts if p)


def generate_sentence(rng: random.Random) -> tuple[str, int]:
    """One review sentence and its (original) sentiment label."""
    sentiment = rng.randint(0, 1)
    n_clauses = rng.choice([1, 1, 2, 2, 2, 3, 3, 4])
    clauses = []
    for k in range(n_clauses):
        # later clauses sometimes contrast with the overall sentiment
        s = sentiment if k == 0 or rng.random() < 0.7 else 1 - sentiment
        clauses.append(_clause(rng, s))
    text = clauses[0]
    for c in clauses[1:]:
        text += f" {rng.choice(CONNECTORS)} {c}"
    opener = rng.choice(OPENERS)
    tail = rng.choice(TAILS).strip()
    text = " ".join(p for p in (opener, text, tail) if p)
    return text, sentiment


def generate_corpus(n: int, seed: int = 0) -> list[tuple[str, int]]:
    """``n`` (sentence, sentiment) pairs, deterministic in ``seed``."""
    rng = random.Random(seed)
    return [generate_sentence(rng) for _ in range(n)]


def corpus_vocabulary() -> set[str]:
    words: set[str] = set()
    for group in (SUBJECTS, COPULAS, INTENSIFIERS, CONNECTORS, OPENERS, TAILS):
        for phrase in group:
            words.update(phrase.split())
    for d in (ADJ, VERB_PHRASES):
        for phrases in d.values():
            for phrase in phrases:
                words.update(phrase.split())
    return words
