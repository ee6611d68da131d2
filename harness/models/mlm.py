"""The masked language model of a run (for IM, LIME_BERT and the ``mlm`` removal operator).

:class:`WordMaskedLM` implements :class:`harness.protocols.MaskedLM` at the word level over a
Hugging Face ``*ForMaskedLM``: each masked word is replaced by ONE mask token (whatever
number of sub-word tokens it had), and the candidates for a fill are whole-word entries of
the masked LM's vocabulary, never special tokens, [UNK], ``[unused*]`` slots or ``##``
continuation pieces.  The returned probabilities are the masked LM's own softmax over its
full vocabulary (not renormalised over the allowed candidates).

Two recipes (:class:`MLMRecipe`):

- ``tiny`` (the offline default): a small ``BertForMaskedLM`` built from a config with a word
  tokenizer (:func:`harness.models.reference.build_word_tokenizer`) over the task's own training corpus,
  trained with the standard BERT objective (15% of word tokens chosen; of those 80% replaced
  by [MASK], 10% by a random word, 10% kept), cached on disk under
  ``cache_dir/"mlm"/<name>-<recipe hash>-<corpus hash>`` like the reference classifier.
- ``hf``: a hub checkpoint (``bert-base-uncased`` by default, as in paper 003), used as is.

Cost accounting: every sequence that goes through the masked LM is counted in the ``.mlm``
field of the :class:`~harness.models.bundle.CallCounter` the instance is bound to
(:meth:`WordMaskedLM.bind`; :func:`attach_mlm` binds it to a bundle's counter).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from harness.protocols import Segments

log = logging.getLogger(__name__)


class MLMRecipe(BaseModel):
    """How the masked LM of a run is obtained (hashed into the cache key and the record)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["tiny", "hf"] = "tiny"
    hf_name: str = "bert-base-uncased"
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    intermediate_size: int = 128
    max_position_embeddings: int = 128
    max_length: int = 128
    epochs: int = 8
    batch_size: int = 32
    lr: float = 5e-3
    weight_decay: float = 0.01
    mask_prob: float = 0.15
    dropout: float = 0.0
    max_steps: int = 1000
    """cap on optimizer steps (8 epochs of a 4,000-sentence corpus at batch 32 is 1,000 steps);
    keeps a larger corpus (GLUE SST-2's 8,000 rows, a 10k-word vocabulary) to ~20 s"""
    seed: int = 0
    revision: Optional[str] = None
    """``hf``: the pinned hub revision (``hf:<name>@<revision>``); None: what the hub serves."""

    def hash(self) -> str:
        """Unpinned recipes hash as before ``revision`` existed (their cache entries and records hold)."""
        exclude = {"revision"} if self.revision is None else set()
        return hashlib.sha256(self.model_dump_json(exclude=exclude).encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return self.hf_name.rstrip("/").split("/")[-1] if self.kind == "hf" else "tiny-mlm"


MLM_PRESETS: dict[str, dict] = {
    "tiny": {},
    "bert-base-uncased": {"kind": "hf", "hf_name": "bert-base-uncased"},
}


def mlm_recipe_from(value: "MLMRecipe | dict | str | None") -> MLMRecipe:
    """A recipe from a preset (``tiny``, ``bert-base-uncased``, ``hf:<name or path>``), a dict or a recipe."""
    if value is None:
        return MLMRecipe()
    if isinstance(value, MLMRecipe):
        return value
    if isinstance(value, dict):
        return MLMRecipe.model_validate(value)
    if value.startswith("hf:"):
        name, _, revision = value[3:].partition("@")
        return MLMRecipe(kind="hf", hf_name=name, revision=revision or None)
    if value not in MLM_PRESETS:
        import difflib

        close = difflib.get_close_matches(value, list(MLM_PRESETS), n=2)
        raise ValueError(f"unknown masked-LM preset {value!r}" + (f"; did you mean {close}?" if close else "")
                         + f" (presets: {', '.join(MLM_PRESETS)}, or hf:<name>)")
    return MLMRecipe(**MLM_PRESETS[value])


def _allowed_candidates(tokenizer) -> np.ndarray:
    """(V,) bool: vocabulary entries that may be proposed as a whole-word fill: entries that
    start a word under the tokenizer's sub-word policy (:func:`harness.models.tokenizers.subword_policy`:
    not a ``##`` continuation for WordPiece; ``Ġ``-initial for byte-level BPE; ``▁``-initial
    for SentencePiece), never special tokens, [UNK], ``[unused*]`` slots or blank entries."""
    from harness.models.tokenizers import subword_policy

    policy = subword_policy(tokenizer)
    vocab = tokenizer.get_vocab()
    size = max(len(tokenizer), max(vocab.values()) + 1)
    allowed = np.zeros(size, dtype=bool)
    special = set(tokenizer.all_special_ids)
    if tokenizer.unk_token_id is not None:
        special.add(int(tokenizer.unk_token_id))
    for tok, i in vocab.items():
        if i in special or not policy.starts_word(tok) or (tok.startswith("[") and tok.endswith("]")):
            continue
        if not policy.word(tok, tokenizer).strip():
            continue
        allowed[i] = True
    return allowed


def _candidate_words(tokenizer, n: int) -> list[str]:
    """The word each of the first ``n`` vocabulary entries spells (sub-word marker removed)."""
    from harness.models.tokenizers import subword_policy

    policy = subword_policy(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(n)))
    if policy.kind in ("wordpiece", "wordlevel"):
        return tokens
    return [policy.word(t, tokenizer) if t is not None else "" for t in tokens]


class WordMaskedLM:
    """Word-level fills from a Hugging Face masked LM (see the module docstring).

    ``top_fills(segments, positions, k)``: for input i, all words at ``positions[i]`` are
    masked at once (one [MASK] token each) and the masked LM is run once on that sequence;
    per position it returns the k most likely whole-word candidates with their
    probabilities, best first.  Inputs are grouped by token length (no padding inside a
    forward), so a fill does not depend on the other inputs of the call.  A position the
    masked LM cannot see (cut by its own truncation) gets ``[(original word, 1.0)]``.
    """

    def __init__(self, model, tokenizer, name: str, description: str, model_hash: str,
                 max_length: int = 128, batch_size: int = 256, counter=None, recipe_hash: str | None = None):
        import torch

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.description = description
        self.model_hash = model_hash
        self.recipe_hash = recipe_hash
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.counter = counter
        self._allowed = torch.as_tensor(_allowed_candidates(tokenizer))
        self._tokens = _candidate_words(tokenizer, len(self._allowed))

    @property
    def device(self):
        return next(self.model.parameters()).device

    def bind(self, counter) -> "WordMaskedLM":
        """A view of this masked LM (same weights) that counts its sequences into ``counter``."""
        view = copy.copy(self)
        view.counter = counter
        return view

    def to(self, device) -> "WordMaskedLM":
        self.model.to(device)
        return self

    def top_fills(self, segments: Sequence[Segments], positions: Sequence[Sequence[int]],
                  k: int) -> list[list[list[tuple[str, float]]]]:
        import torch

        if len(segments) != len(positions):
            raise ValueError(f"{len(segments)} inputs but {len(positions)} position lists")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        mask = self.tokenizer.mask_token
        out: list = [None] * len(segments)
        todo = []
        for i, (segs, pos) in enumerate(zip(segments, positions)):
            n = sum(len(s) for s in segs)
            pos = [int(p) for p in pos]
            bad = [p for p in pos if not 0 <= p < n]
            if bad:
                raise ValueError(f"input {i} has {n} words; positions {bad} are out of range")
            if not pos:
                out[i] = []
                continue
            words = [w for sgm in segs for w in sgm]
            for p in pos:
                words[p] = mask
            masked, j = [], 0
            for sgm in segs:
                masked.append(tuple(words[j:j + len(sgm)]))
                j += len(sgm)
            todo.append((i, tuple(masked), pos, segs))
        if not todo:
            return out
        # tokenize once, then group by (segment count, token length): no padding inside a forward
        groups: dict[tuple[int, int], list] = {}
        for nseg in sorted({len(t[1]) for t in todo}):
            items = [t for t in todo if len(t[1]) == nseg]
            for t, tokens in zip(items, self._tokenize(items)):
                groups.setdefault((nseg, len(tokens[0])), []).append((t, tokens))
        dev = self.device
        use_types = "token_type_ids" in _forward_args(self.model)
        with torch.inference_mode():
            for key in sorted(groups):
                items = groups[key]
                for start in range(0, len(items), self.batch_size):
                    part = items[start:start + self.batch_size]
                    ids = torch.tensor([tok[0] for _, tok in part], device=dev)
                    kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
                    if use_types and part[0][1][1] is not None:
                        kwargs["token_type_ids"] = torch.tensor([tok[1] for _, tok in part], device=dev)
                    logits = self.model(**kwargs).logits
                    if self.counter is not None:
                        self.counter.mlm += len(part)
                    self._collect([t for t, _ in part], [tok[2] for _, tok in part], logits, k, out)
        return out

    def _tokenize(self, items: list) -> list[tuple[list[int], list[int] | None, dict]]:
        """Per masked input (``(i, masked segments, positions, segments)``): token ids, token type
        ids and {masked word position: its [MASK] token index}, from one tokenizer call.  An input
        over ``max_length`` tokens goes through the harness's truncation policy."""
        from harness.models.encoding import _backend, backend_encodings, encode

        masked = [t[1] for t in items]
        n_seg = len(masked[0])
        backend = _backend(self.tokenizer)
        if backend is not None:
            encs = backend_encodings(backend, masked, n_seg)
            rows = [(e.ids, e.type_ids, e) for e in encs]
            alignment = lambda e: (e.word_ids, e.sequence_ids)  # noqa: E731  (only when needed)
        else:
            enc = self.tokenizer(*[[list(m[k]) for m in masked] for k in range(n_seg)], is_split_into_words=True,
                                 add_special_tokens=True, truncation=False, return_token_type_ids=True)
            types = enc.get("token_type_ids")
            rows = [(enc["input_ids"][i], None if types is None else types[i], i) for i in range(len(masked))]
            alignment = lambda i: (enc.word_ids(i), enc.sequence_ids(i))  # noqa: E731
        mask_id = self.tokenizer.mask_token_id
        out = []
        for (_, m, pos, _segs), (ids, type_ids, handle) in zip(items, rows):
            if len(ids) > self.max_length:
                e = encode(self.tokenizer, [m], self.max_length)
                ids = e.input_ids[0].tolist()
                type_ids = None if e.token_type_ids is None else e.token_type_ids[0].tolist()
                word_ids = e.word_ids[0]
            else:
                wanted = sorted(set(pos))
                where = [t for t, x in enumerate(ids) if x == mask_id]
                if len(where) == len(wanted):  # the usual case: one [MASK] per masked word, in order
                    out.append((ids, type_ids, dict(zip(wanted, where))))
                    continue
                offsets = [0]  # e.g. a literal "[MASK]" in the text: align through word ids
                for sgm in m[:-1]:
                    offsets.append(offsets[-1] + len(sgm))
                wids, seqs = alignment(handle)
                word_ids = [None if w is None or q is None else offsets[q] + w for w, q in zip(wids, seqs)]
            first: dict = {}
            for t, w in enumerate(word_ids):
                if w is not None and w not in first:
                    first[w] = t
            out.append((ids, type_ids, {p: first[p] for p in set(pos) if p in first}))
        return out

    def _collect(self, chunk, locate, logits, k, out) -> None:
        import torch

        allowed = self._allowed.to(logits.device)
        V = logits.shape[-1]
        if allowed.numel() < V:  # a model vocabulary padded beyond the tokenizer's
            allowed = torch.cat([allowed, allowed.new_zeros(V - allowed.numel())])
        allowed = allowed[:V]
        kk = min(k, int(allowed.sum()))
        # every masked position of the chunk in one log-softmax / top-k
        rows, cols, counts = [], [], []
        for b, loc in enumerate(locate):
            rows.extend([b] * len(loc))
            cols.extend(loc.values())
            counts.append(len(loc))
        results: list = []
        if rows:
            lp = torch.log_softmax(logits[rows, cols].double(), -1).masked_fill(~allowed, float("-inf"))
            vals, idx = torch.topk(lp, kk, dim=-1)
            probs, idx, tokens = torch.exp(vals).tolist(), idx.tolist(), self._tokens
            if kk == 1:
                results = [[(tokens[js[0]], ps[0])] for ps, js in zip(probs, idx)]
            else:
                results = [[(tokens[j], q) for q, j in zip(ps, js)] for ps, js in zip(probs, idx)]
        start = 0
        for b, (i, _masked, pos, segs) in enumerate(chunk):
            found = dict(zip(locate[b].keys(), results[start:start + counts[b]]))
            start += counts[b]
            if len(found) == len(set(pos)):
                out[i] = [found[p] for p in pos]
            else:  # a position cut by the masked LM's truncation has nothing to propose but itself
                words = [w for sgm in segs for w in sgm]
                out[i] = [found.get(p, [(words[p], 1.0)]) for p in pos]


def _forward_args(model) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):  # pragma: no cover
        return {"input_ids", "attention_mask", "token_type_ids"}


def attach_mlm(bundle, mlm) -> None:
    """Attach ``mlm`` to ``bundle`` (as ``bundle.mlm``), counting its sequences in ``bundle.counter``."""
    bundle.mlm = None if mlm is None else (mlm.bind(bundle.counter) if hasattr(mlm, "bind") else mlm)


# --- training the tiny masked LM --------------------------------------------------------------

def corpus_of(rows) -> list[Segments]:
    """The word sequences of training rows (``(segments, label)`` pairs or bare segments)."""
    out = []
    for r in rows:
        segs = r[0] if (isinstance(r, tuple) and len(r) == 2 and isinstance(r[1], (int, np.integer))) else r
        out.append(tuple(tuple(s) for s in segs))
    return out


def hash_corpus(corpus: Sequence[Segments]) -> str:
    h = hashlib.sha256()
    for segs in corpus:
        h.update(json.dumps([list(s) for s in segs]).encode())
    return h.hexdigest()[:16]


def tiny_masked_lm(vocab_size: int, recipe: MLMRecipe):
    import torch
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(
        vocab_size=vocab_size, hidden_size=recipe.hidden_size, num_hidden_layers=recipe.num_hidden_layers,
        num_attention_heads=recipe.num_attention_heads, intermediate_size=recipe.intermediate_size,
        max_position_embeddings=recipe.max_position_embeddings, pad_token_id=0,
        hidden_dropout_prob=recipe.dropout, attention_probs_dropout_prob=recipe.dropout,
    )
    torch.manual_seed(recipe.seed)
    return BertForMaskedLM(config)


def mask_tokens(input_ids, special_mask, mask_token_id: int, word_ids_range: tuple[int, int],
                mask_prob: float, generator):
    """BERT's masking: choose ``mask_prob`` of the non-special tokens (at least one per row
    when the row has any); 80% -> [MASK], 10% -> a random word, 10% unchanged.
    Returns (masked input ids, labels with -100 on unchosen positions)."""
    import torch

    candidates = ~special_mask
    chosen = (torch.rand(input_ids.shape, generator=generator) < mask_prob) & candidates
    # every row with words gets at least one prediction target
    none = ~chosen.any(1) & candidates.any(1)
    if none.any():
        scores = torch.rand(input_ids.shape, generator=generator).masked_fill(~candidates, -1.0)
        pick = scores.argmax(1)
        rows = torch.nonzero(none).flatten()
        chosen[rows, pick[rows]] = True
    labels = input_ids.masked_fill(~chosen, -100)
    ids = input_ids.clone()
    r = torch.rand(input_ids.shape, generator=generator)
    ids[chosen & (r < 0.8)] = mask_token_id
    rand_pos = chosen & (r >= 0.8) & (r < 0.9)
    lo, hi = word_ids_range
    ids[rand_pos] = torch.randint(lo, hi, (int(rand_pos.sum()),), generator=generator)
    return ids, labels


def train_masked_lm(model, tokenizer, corpus: Sequence[Segments], recipe: MLMRecipe, desc: str = "train masked LM") -> float:
    """Train ``model`` in place on ``corpus`` with BERT's masking (single-threaded); returns the seconds spent."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small gains nothing from threads, and shared cores punish them
    try:
        return _train_masked_lm(model, tokenizer, corpus, recipe, desc)
    finally:
        torch.set_num_threads(threads)


def _train_masked_lm(model, tokenizer, corpus, recipe: MLMRecipe, desc: str) -> float:
    import torch

    from harness.models.encoding import encode

    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps = recipe.epochs * sum((n + recipe.batch_size - 1) // recipe.batch_size
                                for n in np.unique([len(c) for c in corpus], return_counts=True)[1])
    steps = min(steps, recipe.max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / max(1, steps)))
    n_special = len(set(tokenizer.all_special_ids))
    word_range = (n_special, len(tokenizer))  # word tokenizers put the specials first
    if word_range[1] <= word_range[0]:
        word_range = (0, len(tokenizer))
    # encode once, sorted by length (little padding per batch); batches shuffled each epoch
    batches = []
    for nseg in sorted({len(c) for c in corpus}):
        order = sorted((i for i in range(len(corpus)) if len(corpus[i]) == nseg),
                       key=lambda i: sum(len(s) for s in corpus[i]))
        for start in range(0, len(order), recipe.batch_size):
            rows = [corpus[i] for i in order[start:start + recipe.batch_size]]
            batches.append(encode(tokenizer, rows, recipe.max_length))
    model.train()
    from harness.core.progress import Progress

    bar = Progress(steps, desc, log, unit="batches")
    done = 0
    for epoch in range(recipe.epochs):
        if done >= steps:
            break
        bar.set_status(f"epoch {epoch + 1}/{recipe.epochs} of {len(corpus)} sequences")
        for b in torch.randperm(len(batches), generator=gen).tolist():
            if done >= steps:
                break
            done += 1
            enc = batches[b]
            ids, labels = mask_tokens(enc.input_ids, enc.special_tokens_mask, tokenizer.mask_token_id,
                                      word_range, recipe.mask_prob, gen)
            kwargs = {"input_ids": ids, "attention_mask": enc.attention_mask}
            if enc.token_type_ids is not None:
                kwargs["token_type_ids"] = enc.token_type_ids
            # the prediction head only at the chosen positions (BertForMaskedLM would score every
            # position against the whole vocabulary: most of the work for a large vocabulary)
            chosen = labels != -100
            hidden = model.bert(**kwargs).last_hidden_state[chosen]
            loss = torch.nn.functional.cross_entropy(model.cls(hidden), labels[chosen])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
    bar.close()
    model.eval()
    return time.perf_counter() - t0


def build_task_mlm(kind: "MLMRecipe | dict | str | None", train_rows, cache_dir: Path | None,
                   name: str = "task", device=None, batch_size: int = 256) -> WordMaskedLM:
    """The masked LM of a task: ``tiny`` (trained on the words of ``train_rows``, cached under
    ``cache_dir/"mlm"``) or a hub checkpoint (``bert-base-uncased``, ``hf:<name>``)."""
    recipe = mlm_recipe_from(kind)
    if recipe.kind == "hf":
        mlm = _load_hf_mlm(recipe, batch_size)
    else:
        mlm = _build_tiny_mlm(recipe, corpus_of(train_rows), cache_dir, name, batch_size)
    if device is not None:
        mlm.to(device)
    return mlm


def _build_tiny_mlm(recipe: MLMRecipe, corpus: list[Segments], cache_dir: Path | None, name: str,
                    batch_size: int) -> WordMaskedLM:
    from transformers import AutoTokenizer, BertForMaskedLM

    from harness.models.reference import build_word_tokenizer, hash_files

    if not corpus:
        raise ValueError("the tiny masked LM needs a non-empty training corpus")
    corpus_hash = hash_corpus(corpus)
    key = f"{name}-{recipe.hash()}-{corpus_hash}"
    path = Path(cache_dir) / "mlm" / key if cache_dir is not None else None
    meta_file = path / "attriboard_mlm.json" if path is not None else None
    from contextlib import nullcontext

    from harness.core.locks import cache_lock

    with cache_lock(path, "masked LM") if path is not None else nullcontext():
        if meta_file is not None and meta_file.exists():
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = BertForMaskedLM.from_pretrained(path)
            meta = json.loads(meta_file.read_text())
            log.info("loaded cached masked LM %s", key)
        else:
            vocab = sorted({w.lower() for segs in corpus for s in segs for w in s})
            tokenizer = build_word_tokenizer(vocab, recipe.max_length)
            model = tiny_masked_lm(len(tokenizer), recipe)
            log.info("training masked LM %s: tiny BERT MLM (word vocab %d) on %d sequences", key, len(tokenizer), len(corpus))
            seconds = train_masked_lm(model, tokenizer, corpus, recipe, desc=f"training masked LM for {name}")
            meta = {"train_seconds": seconds, "recipe": recipe.model_dump(), "n_train": len(corpus),
                    "corpus_hash": corpus_hash, "vocab_size": len(tokenizer)}
            log.info("masked LM trained in %.1fs", seconds)
            if path is not None:
                path.mkdir(parents=True, exist_ok=True)
                model.save_pretrained(path)
                tokenizer.save_pretrained(path)
                meta_file.write_text(json.dumps(meta, indent=1, sort_keys=True))
    model.eval()
    if path is not None:
        model_hash = hash_files(path, "*.safetensors")
    else:
        model_hash = _state_hash(model)
    description = (f"tiny BERT masked LM (word vocab {len(tokenizer)}, {recipe.num_hidden_layers} layers, "
                   f"hidden {recipe.hidden_size}) trained on the task's {meta['n_train']} training sequences")
    return WordMaskedLM(model, tokenizer, recipe.label, description, model_hash, recipe.max_length, batch_size,
                        recipe_hash=recipe.hash())


def _state_hash(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _load_hf_mlm(recipe: MLMRecipe, batch_size: int) -> WordMaskedLM:
    from transformers import AutoModelForMaskedLM

    from harness.models.reference import load_tokenizer

    kwargs = {"revision": recipe.revision} if recipe.revision else {}
    tokenizer = load_tokenizer(recipe.hf_name, **kwargs)
    model = AutoModelForMaskedLM.from_pretrained(recipe.hf_name, **kwargs)
    model.eval()
    revision = recipe.revision or getattr(model.config, "_commit_hash", None)
    model_hash = hashlib.sha256(f"{recipe.hf_name}@{revision}".encode()).hexdigest()[:16] if revision else _state_hash(model)
    description = f"hf: {recipe.hf_name} (pre-trained masked LM, used as is" + (f", revision {revision})" if revision else ")")
    return WordMaskedLM(model, tokenizer, recipe.label, description, model_hash,
                        min(recipe.max_length, getattr(tokenizer, "model_max_length", 512) or 512), batch_size,
                        recipe_hash=recipe.hash())


def train_tiny_mlm_in_memory(corpus: Sequence[Segments], recipe: MLMRecipe, vocab: Sequence[str] | None = None,
                             name: str = "tiny-mlm") -> WordMaskedLM:
    """A tiny masked LM trained in memory (no disk cache); used by :mod:`harness.testing`."""
    from harness.models.reference import build_word_tokenizer

    corpus = corpus_of(corpus)
    words = sorted(set(vocab) if vocab is not None else {w.lower() for segs in corpus for s in segs for w in s})
    tokenizer = build_word_tokenizer(words, recipe.max_length)
    model = tiny_masked_lm(len(tokenizer), recipe)
    train_masked_lm(model, tokenizer, corpus, recipe, desc="train tiny test masked LM")
    description = f"tiny test masked LM (word vocab {len(tokenizer)}) trained on {len(corpus)} sequences"
    return WordMaskedLM(model, tokenizer, name, description, _state_hash(model), recipe.max_length,
                        recipe_hash=recipe.hash())
