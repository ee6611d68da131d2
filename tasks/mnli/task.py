"""T3 MultiNLI faithfulness (paper 001 sec. 2.2.3.2, 3.2.1; paper 004 sec. 3.5; paper 003 sec. 3.3).

No ground truth: words are removed in the order the attribution map gives and the model's
probability of its predicted class is watched (:mod:`harness.metrics.removal`):
comprehensiveness and sufficiency (AOPC over 1/5/10/20/50%), their normalised versions
(paper 004 eq. 9-12), Deletion AUC and Insertion AUC (first 20% of the words).  The removal
operator (``delete`` by default) is a task parameter, recorded with every score.  With
``bias_metrics`` (default) the task also reports ``deletion_bert_auc`` (Deletion with the
masked LM's top-1 fill, removal ``mlm``; needs the run's masked LM), for the T5 bias matrix
(:mod:`tasks.sanity.bias`, docs/SANITY.md).
Main metric: ``norm_comprehensiveness`` (higher is better).

Inputs are sentence pairs (premise, hypothesis); metrics run over the words of both.

Two registered tasks:

- ``mnli_faithfulness``: the embedded default, on a generated NLI corpus
  (:mod:`tasks.nli.corpus`, ``mnli`` style, offline, deterministic); reference model
  tiny-bert, refused below 90% dev accuracy.
- ``multinli``: real MultiNLI.  ``data_dir=`` a local folder, else the hub
  (``datasets.load_dataset("multi_nli")``: ``train``, ``validation_matched`` /
  ``validation_mismatched``).  ``split="matched"`` (default) or ``"mismatched"`` picks the
  evaluated dev set.  A local folder may hold, for the evaluated split, any of:
  ``multinli_1.0_dev_<split>.jsonl`` (official JSONL: ``sentence1``, ``sentence2``,
  ``gold_label``), ``multinli_1.0_dev_<split>.txt`` or ``dev_<split>.tsv`` (official / GLUE
  TSV with the same named columns), or the three-file format ``s1.test``, ``s2.test``,
  ``labels.test`` (PTB-tokenised; in the folder itself or in
  ``MNLI<Split>HardWithHardTest/``, the layout of the MNLI-hard subsets).  Training rows
  come from ``multinli_1.0_train.jsonl`` / ``multinli_1.0_train.txt`` / ``train.tsv`` when
  present; otherwise from the *other* split's dev file (e.g. MNLI-hard mismatched trains
  the model evaluated on MNLI-hard matched): a pipeline exercise, not MultiNLI numbers.
  Rows whose ``gold_label`` is ``-`` (no annotator consensus) are skipped.

Accuracy bars of the real task (``min_dev_accuracy``, overridable): tiny-bert 0.30, minilm
0.60, hub checkpoints 0.70.  Offline, tiny-bert trained from scratch on MNLI-hard mismatched
(4,530 rows) scores 0.338 on MNLI-hard matched (majority class 0.354): it learns nothing
from so little (and adversarially filtered) data, so its bar only catches a broken pipeline
and its scores are not MultiNLI numbers.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from harness.models.reference import ModelRecipe, recipe_from
from harness.protocols import Example
from harness.metrics.removal import DEFAULT_BINS, DEFAULT_CURVE_FRACTION, REMOVAL_METRICS, removal_metric_params
from tasks.sanity.bias import DELETION_BERT, deletion_metric_params
from harness.engine.task import DatasetRef, PreparedTask, Task, TaskSpec, hash_prepared, register_task
from tasks.nli.common import LABELS, NLI_TINY_BERT, label_id, nli_recipe, split_words
from tasks.nli.corpus import generate_nli_corpus

log = logging.getLogger(__name__)

VERSION = "1.1"  # 1.1: deletion_bert_auc (removal mlm) beside deletion_auc (T5 bias matrix)
MAIN_METRIC = "norm_comprehensiveness"
GENERATED_BAR = 0.90
REAL_BARS = {"tiny-bert": 0.30, "tiny": 0.30, "minilm": 0.60, "hf": 0.70, "checkpoint": 0.70}
SPLITS = ("matched", "mismatched")


@dataclass(frozen=True)
class NLIRow:
    id: str
    premise: tuple[str, ...]
    hypothesis: tuple[str, ...]
    label: int

    @property
    def segments(self):
        return (self.premise, self.hypothesis)


def _row(rid: str, premise: str, hypothesis: str, label) -> NLIRow | None:
    y = label_id(label)
    if y is None:
        return None
    p, h = split_words(premise), split_words(hypothesis)
    if not p or not h:
        return None
    return NLIRow(rid, p, h, y)


def read_multinli_jsonl(path: Path) -> list[NLIRow]:
    """Official MultiNLI JSONL (``sentence1``, ``sentence2``, ``gold_label``; ``-`` rows skipped)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"MultiNLI JSONL file not found: {path}")
    rows, skipped = [], 0
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                r = _row(str(rec.get("pairID", lineno)), rec["sentence1"], rec["sentence2"], rec["gold_label"])
            except (json.JSONDecodeError, KeyError) as e:
                raise ValueError(f"{path}:{lineno}: not a MultiNLI JSONL record ({type(e).__name__}: {e})") from e
            if r is None:
                skipped += 1
            else:
                rows.append(r)
    log.info("%s: %d rows, %d skipped (no gold label)", path, len(rows), skipped)
    return rows


def read_multinli_tsv(path: Path) -> list[NLIRow]:
    """Official MultiNLI ``.txt`` or GLUE ``.tsv`` (tab-separated, header with ``sentence1``,
    ``sentence2``, ``gold_label``; no quoting)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"MultiNLI TSV file not found: {path}")
    csv.field_size_limit(min(sys.maxsize, 2 ** 31 - 1))
    rows, skipped = [], 0
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        need = ("sentence1", "sentence2", "gold_label")
        missing = [c for c in need if c not in header]
        if missing:
            raise ValueError(f"{path}: header lacks {missing} (got {header[:12]!r})")
        col = {c: header.index(c) for c in need + tuple(c for c in ("pairID",) if c in header)}
        for lineno, rec in enumerate(reader, start=2):
            if len(rec) <= max(col.values()):
                raise ValueError(f"{path}:{lineno}: expected at least {max(col.values()) + 1} fields, got {len(rec)}")
            rid = rec[col["pairID"]] if "pairID" in col else str(lineno)
            r = _row(rid, rec[col["sentence1"]], rec[col["sentence2"]], rec[col["gold_label"]])
            if r is None:
                skipped += 1
            else:
                rows.append(r)
    log.info("%s: %d rows, %d skipped (no gold label)", path, len(rows), skipped)
    return rows


def read_nli_line_files(folder: Path, split: str = "test") -> list[NLIRow]:
    """Three parallel line files ``s1.<split>`` (premises), ``s2.<split>`` (hypotheses) and
    ``labels.<split>`` (label names), as in the MNLI-hard subsets (already PTB-tokenised)."""
    folder = Path(folder)
    files = [folder / f"{stem}.{split}" for stem in ("s1", "s2", "labels")]
    for f in files:
        if not f.exists():
            raise FileNotFoundError(f"NLI line file not found: {f}")
    lines = [f.read_text(encoding="utf-8").splitlines() for f in files]
    if len({len(x) for x in lines}) != 1:
        raise ValueError(f"{folder}: s1/s2/labels.{split} have different line counts {[len(x) for x in lines]}")
    rows = []
    for i, (p, h, y) in enumerate(zip(*lines)):
        r = _row(f"{folder.name}-{i}", p, h, y)
        if r is None:
            raise ValueError(f"{files[2]}:{i + 1}: unknown label {y!r} or empty sentence")
        rows.append(r)
    return rows


def rows_from_hub_records(records: Iterable[dict]) -> list[NLIRow]:
    """Rows from hub records (``premise``, ``hypothesis``, ``label`` 0/1/2; -1 skipped)."""
    out = []
    for i, rec in enumerate(records):
        r = _row(str(rec.get("pairID", i)), rec["premise"], rec["hypothesis"], rec["label"])
        if r is not None:
            out.append(r)
    return out


def load_multinli_hub(split: str, revision: str | None = None) -> dict[str, list[NLIRow]]:
    """MultiNLI ``train`` and ``validation_<split>`` from the Hugging Face hub (needs network)."""
    import datasets

    ds = datasets.load_dataset("multi_nli", revision=revision)
    return {"train": rows_from_hub_records(ds["train"]), "held": rows_from_hub_records(ds[f"validation_{split}"])}


def find_multinli_split(data_dir: Path, split: str) -> Path | None:
    """The local file (or line-file folder) of a MultiNLI dev split, or None."""
    d = Path(data_dir)
    for name in (f"multinli_1.0_dev_{split}.jsonl", f"multinli_1.0_dev_{split}.txt", f"dev_{split}.tsv"):
        if (d / name).exists():
            return d / name
    sub = d / f"MNLI{split.capitalize()}HardWithHardTest"
    if (sub / "s1.test").exists():
        return sub
    return None


def read_multinli_any(path: Path) -> list[NLIRow]:
    path = Path(path)
    if path.is_dir():
        return read_nli_line_files(path)
    if path.suffix == ".jsonl":
        return read_multinli_jsonl(path)
    return read_multinli_tsv(path)


def load_multinli_local(data_dir: Path, split: str) -> dict[str, list[NLIRow]]:
    d = Path(data_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"MultiNLI data folder not found: {d}")
    held = find_multinli_split(d, split)
    if held is None and split == "matched" and (d / "s1.test").exists():
        held = d  # a bare three-file folder
    if held is None:
        raise FileNotFoundError(
            f"{d}: no MultiNLI {split} dev file (looked for multinli_1.0_dev_{split}.jsonl/.txt, "
            f"dev_{split}.tsv, MNLI{split.capitalize()}HardWithHardTest/s1.test, s1.test)")
    train_file = next((d / n for n in ("multinli_1.0_train.jsonl", "multinli_1.0_train.txt", "train.tsv")
                       if (d / n).exists()), None)
    if train_file is None:
        other = find_multinli_split(d, SPLITS[1 - SPLITS.index(split)])
        if other is None:
            raise FileNotFoundError(f"{d}: no training file (multinli_1.0_train.jsonl/.txt, train.tsv) "
                                    f"and no other dev split to train on")
        log.warning("MultiNLI: no training file in %s; training the reference model on %s", d, other)
        train_file = other
    return {"train": read_multinli_any(train_file), "held": read_multinli_any(held),
            "files": [str(train_file), str(held)]}


class MNLIFaithfulness(Task):
    label_names = LABELS

    def __init__(self, source: str = "generated", data_dir: str | None = None, split: str = "matched",
                 n_train: int | None = None, n_dev: int | None = None, n_eval: int = 200,
                 corpus_seed: int = 11, sample_seed: int = 0, operator: str = "delete",
                 bins: Sequence[float] = DEFAULT_BINS, curve_fraction: float = DEFAULT_CURVE_FRACTION,
                 revision: str | None = None, min_dev_accuracy: float | None = None,
                 model: ModelRecipe | dict | str | None = None, bias_metrics: bool = True,
                 name: str = "mnli_faithfulness"):
        if split not in SPLITS:
            raise ValueError(f"split must be 'matched' or 'mismatched', got {split!r}")
        metric_params = removal_metric_params(operator, bins, curve_fraction)  # validates
        if bias_metrics:  # T5 bias matrix: Deletion_BERT beside Deletion (needs the run's masked LM)
            metric_params[DELETION_BERT] = deletion_metric_params(curve_fraction)[DELETION_BERT]
        generated = source == "generated"
        if generated:
            dataset = DatasetRef(source="generated", id="attriboard/nli_corpus", split="mnli-style",
                                 revision=f"seed={corpus_seed}")
            n_train, n_dev = n_train or 3000, n_dev or 500
            bar = GENERATED_BAR if min_dev_accuracy is None else min_dev_accuracy
            recipe = nli_recipe(model, bar, NLI_TINY_BERT)
        else:
            if data_dir:
                dataset = DatasetRef(source="local", id="multi_nli", path=str(Path(data_dir).resolve()),
                                     split=f"train+dev_{split}")
            else:
                dataset = DatasetRef(source="hub", id="multi_nli", revision=revision,
                                     split=f"train+validation_{split}")
            n_train, n_dev = n_train or 20000, n_dev or 500
            kind = recipe_from(model).kind
            bar = REAL_BARS[kind] if min_dev_accuracy is None else min_dev_accuracy
            recipe = nli_recipe(model, bar, NLI_TINY_BERT)
        self.source, self.data_dir, self.split = source, data_dir, split
        self.load_report: dict[str, int | str] = {}
        self.spec = TaskSpec(
            name=name, version=VERSION,
            description="MultiNLI-style faithfulness: remove words in attribution order and watch the "
                        "target-class probability (comprehensiveness/sufficiency AOPC, normalised versions, "
                        "Deletion/Insertion AUC); no ground truth.",
            dataset=dataset, fields=("premise", "hypothesis"), num_labels=3, model=recipe,
            metrics=REMOVAL_METRICS + ((DELETION_BERT,) if bias_metrics else ()), metric_params=metric_params,
            main_metric=MAIN_METRIC, n_eval=n_eval,
            params=dict(n_train=n_train, n_dev=n_dev, corpus_seed=corpus_seed, sample_seed=sample_seed,
                        split=split, operator=operator, bins=list(bins), curve_fraction=curve_fraction,
                        min_dev_accuracy=bar),
        )

    def _rows(self) -> tuple[list[NLIRow], list[NLIRow]]:
        p = self.spec.params
        if self.source == "generated":
            n = p["n_train"] + p["n_dev"] + self.spec.n_eval
            pairs = generate_nli_corpus(n, seed=p["corpus_seed"], style="mnli")
            rows = [NLIRow(f"gen-{i}", q.premise, q.hypothesis, q.label) for i, q in enumerate(pairs)]
            return rows[: p["n_train"]], rows[p["n_train"]:]
        if self.data_dir:
            got = load_multinli_local(Path(self.data_dir), self.split)
            self.load_report["files"] = ", ".join(got["files"])
        else:
            got = load_multinli_hub(self.split, self.spec.dataset.revision)
        rng = np.random.default_rng(p["sample_seed"])
        train = got["train"]
        if len(train) > p["n_train"]:
            train = [train[i] for i in sorted(rng.permutation(len(train))[: p["n_train"]])]
        held = [got["held"][i] for i in rng.permutation(len(got["held"]))]
        return train, held

    def prepare(self) -> PreparedTask:
        p = self.spec.params
        train, held = self._rows()
        n_dev = p["n_dev"]
        if len(held) < n_dev + 1:
            raise ValueError(f"not enough held-out rows ({len(held)}) for n_dev={n_dev} plus evaluation")
        dev, evals = held[:n_dev], held[n_dev:n_dev + self.spec.n_eval]
        self.load_report.update(n_train=len(train), n_dev=len(dev), n_eval=len(evals))
        train_rows = [(r.segments, r.label) for r in train]
        dev_rows = [(r.segments, r.label) for r in dev]
        examples = [Example(id=f"{self.spec.name}-{r.id}", segments=r.segments) for r in evals]
        gold = [r.label for r in evals]  # the gold label: no metric of this task reads it
        return PreparedTask(train_rows, dev_rows, examples, gold,
                            hash_prepared(train_rows, dev_rows, examples, gold))


@register_task("mnli_faithfulness")
def mnli_faithfulness(**overrides) -> MNLIFaithfulness:
    """Embedded default: generated NLI corpus (MultiNLI-style pairs), offline."""
    return MNLIFaithfulness(source="generated", name="mnli_faithfulness", **overrides)


@register_task("multinli")
def multinli(**overrides) -> MNLIFaithfulness:
    """Real MultiNLI: ``data_dir=`` a local folder (JSONL / TSV / MNLI-hard line files), else the hub."""
    return MNLIFaithfulness(source="multinli", name="multinli", **overrides)
