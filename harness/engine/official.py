"""Official runs: a maintainer-held secret that explainers cannot know in advance.

With a secret (``attriboard run --secret-seed-file FILE`` or ``$ATTRIBOARD_SECRET_SEED``):

- tasks that support it (``use_secret``; T1 ``planted_sst``) draw their planted words (and
  distractors) from :func:`secret_vocabulary`, thousands of pseudo-words that the secret
  itself generates, instead of the public default, so no explainer can special-case
  "positive"/"negative" nor recompute the candidates from the code;
- ``--hidden-subset N`` evaluates N examples drawn with the secret from the task's pool;
- every data hash that could be brute-forced back to the secret words is keyed with the
  secret (HMAC), and records carry only :func:`commitment` (a SHA-256 of the secret) and flags.

The secret itself is never written anywhere.  Use a high-entropy one, e.g.
``python -c "import secrets; print(secrets.token_hex(32))" > secret.txt``, and a new one per
official round (see docs/SECURITY.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
from pathlib import Path

SECRET_ENV = "ATTRIBOARD_SECRET_SEED"
MIN_SECRET_CHARS = 16


class SecretError(ValueError):
    """The secret is missing, unreadable or too weak."""


def load_secret(path: str | os.PathLike | None = None) -> str | None:
    """The secret from ``path`` (first line) or ``$ATTRIBOARD_SECRET_SEED``; None when neither."""
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise SecretError(f"cannot read the secret seed file {path}: {e}") from None
    else:
        text = os.environ.get(SECRET_ENV, "").strip()
        if not text:
            return None
    if len(text) < MIN_SECRET_CHARS:
        raise SecretError(f"the secret must have at least {MIN_SECRET_CHARS} characters (a short one can be "
                          "guessed from its commitment); make one with "
                          "python -c \"import secrets; print(secrets.token_hex(32))\"")
    return text


def commitment(secret: str) -> str:
    """What records store instead of the secret: sha256("attriboard-secret-v1:" + secret)."""
    return hashlib.sha256(b"attriboard-secret-v1:" + secret.encode()).hexdigest()


def derived_seed(secret: str, purpose: str) -> int:
    """A 64-bit seed for ``purpose`` (e.g. ``"planted_sst/vocabulary"``), unpredictable without the secret."""
    return int.from_bytes(hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()[:8], "little")


#: Syllable alphabet of :func:`secret_vocabulary`: a word is three onset+vowel syllables and a
#: coda (22 * 5 per syllable, 8 codas: about 10.6 million words, all at least 6 letters).
_ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "dr", "gl", "kr", "pl", "st", "tr")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "", "n", "r", "s", "l", "k")
#: Never secret words, whatever the corpus: the public planted words, common English stop
#: words, and common English words the syllable alphabet can spell.  A task also passes its
#: corpus words as ``exclude`` (the filter that matters: no secret word occurs in the data).
COMMON_WORDS = frozenset("""
    positive negative a an the and or but not no of to in on at by for with from as is are was
    were be been it this that these those he she they we you i me my our your his her their
    banana potato tomato domino kimono salami safari bikini pajama general natural several
    mineral liberal federal funeral numeral decimal minimal nominal
""".split())


def pseudo_word(secret: str, purpose: str, index: int) -> str:
    """Word ``index`` of ``purpose``: pronounceable letters drawn from HMAC-SHA256(secret,
    purpose/index), unpredictable without the secret."""
    d = hmac.new(secret.encode(), f"{purpose}/{index}".encode(), hashlib.sha256).digest()
    syllables = [_ONSETS[d[2 * k] % len(_ONSETS)] + _VOWELS[d[2 * k + 1] % len(_VOWELS)] for k in range(3)]
    return "".join(syllables) + _CODAS[d[6] % len(_CODAS)]


def secret_vocabulary(secret: str, n: int = 4096, exclude=(), purpose: str = "vocabulary") -> list[str]:
    """``n`` distinct pseudo-words generated with the secret (:func:`pseudo_word` for index 0, 1, ...),
    skipping any word in ``exclude`` (a task passes its corpus words) or :data:`COMMON_WORDS`.

    No list of candidates exists in the code: without the secret the vocabulary, and so the
    planted words a task draws from it, cannot be recomputed.  Deterministic in its arguments."""
    skip = {w.lower() for w in exclude} | COMMON_WORDS
    words: dict[str, None] = {}
    index = 0
    while len(words) < n:
        w = pseudo_word(secret, purpose, index)
        index += 1
        if w not in skip:
            words.setdefault(w)
        if index > 100 * n + 1000:
            raise ValueError(f"could not generate {n} secret words (too many excluded)")
    return list(words)


def keyed_hash(secret: str, value: str) -> str:
    """A 16-hex-digit hash of ``value`` keyed with the secret (for data hashes)."""
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()[:16]


def hidden_subset(data, secret: str, task_name: str, n: int):
    """``data`` (a :class:`~harness.engine.task.PreparedTask`) restricted to ``n`` examples drawn with the
    secret, in their original order; the data hash is keyed with the secret."""
    import numpy as np

    pool = len(data.examples)
    if not 0 < n <= pool:
        raise ValueError(f"hidden subset of {n} examples requested from a pool of {pool}")
    rng = np.random.default_rng(derived_seed(secret, f"{task_name}/subset"))
    keep = sorted(rng.choice(pool, size=n, replace=False).tolist())
    return dataclasses.replace(data, examples=[data.examples[i] for i in keep], gold=[data.gold[i] for i in keep],
                               data_hash=keyed_hash(secret, f"{data.data_hash}:subset:{keep}"))
