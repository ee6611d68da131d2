"""T4 fragility under ExplainFooler (paper 000): word-swap attacks on explanations.

For each input the attack (:mod:`tasks.fragility.attack`, Algorithm 1) swaps words for
synonyms, in leave-one-out order, one more word per level, keeping the model's prediction
and the constraints of :mod:`tasks.fragility.constraints`; at every level it keeps the
candidate whose explanation differs most from the original one (L2 or Delta-LOM), or a
random valid one (baseline).  Metrics (:mod:`tasks.fragility.summary`): clipped Spearman
correlation and top-50% intersection between the original and perturbed word-level maps,
per perturbation-ratio bucket; main metric ``fragility_rank_corr`` (higher = more robust).

Two registered tasks:

- ``fragility`` (embedded default, offline): the generated review corpus of
  :mod:`tasks.planted_sst.corpus` with its *original* sentiment labels; substitutes from the
  project's synonym table (:mod:`tasks.fragility.corpus_synonyms`); the training and dev
  rows are augmented with those synonyms so that every substitute is in the tiny-bert
  vocabulary.  Scored inputs: the first ``n_eval`` (16) held-out sentences of 10-16 words
  (10 words or more, so that one swap already falls in the 0-10% bucket; at most 16 and
  16 inputs so that the four fast baselines fit in about four minutes).
- ``fragility_sst2``: GLUE SST-2 (``data_dir`` with ``train.tsv``/``dev.tsv``, else the
  hub), lower-cased (paper 000 sec. 4.4); substitutes from counter-fitted vectors
  (``counter_fitted_path`` / ``counter_fitted_url``) or PPDB pairs (``synonyms_dir``,
  e.g. ``../shared/data/synonyms``).

See docs/FRAGILITY.md for the resources, defaults and deviations.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from pathlib import Path
from typing import Any, Sequence

from harness.models.reference import ModelRecipe, recipe_from
from harness.protocols import Example
from harness.engine.task import (Evaluation, Task, DatasetRef, PreparedTask, TaskSpec, hash_prepared,
                          register_task)

log = logging.getLogger(__name__)

VERSION = "1.0"
METRICS = ("fragility_rank_corr", "fragility_top50", "rank_corr_l2", "rank_corr_delta_lom", "rank_corr_random",
           "top50_l2", "top50_delta_lom", "top50_random")


def augment_words(words: Sequence[str], table: dict, rng: random.Random, p: float) -> tuple[str, ...]:
    """Replace each word that has table synonyms by a random one with probability ``p``."""
    return tuple(rng.choice(table[w]) if w in table and rng.random() < p else w for w in words)


def polarity_antonyms() -> list[tuple[str, str]]:
    """Opposite-polarity adjective pairs of the generated corpus (and their table synonyms):
    the antonym constraints for counter-fitting the embedded default's embedding."""
    from tasks.fragility.corpus_synonyms import CORPUS_SYNONYMS
    from tasks.planted_sst.corpus import ADJ

    pos = set(ADJ[1]) | {s for a in ADJ[1] for s in CORPUS_SYNONYMS.get(a, ())}
    neg = set(ADJ[0]) | {s for a in ADJ[0] for s in CORPUS_SYNONYMS.get(a, ())}
    return [(a, b) for a in sorted(pos - neg) for b in sorted(neg - pos)]


def _environment() -> dict[str, bool]:
    """Optional resources present (part of the spec, so a changed environment re-runs)."""
    from tasks.fragility.resources import MiniLMEncoder, SpacyTagger, package_installed

    return {"textattack": package_installed("textattack"), "spacy_model": SpacyTagger.available()[0],
            "minilm": MiniLMEncoder.available()[0]}


class FragilityTask(Task):
    #: The attack re-explains hundreds of candidates per input, so by default the grid runs
    #: these baselines only (``attriboard run --all-submissions`` runs every submission).
    default_submissions = ("random", "gradient", "gradient_x_input", "integrated_gradients", "lime")
    #: GLUE SST-2's order (and the generated sentiment corpus's)
    label_names = ("negative", "positive")

    def __init__(self, source: str = "generated", data_dir: str | None = None, n_train: int = 4000,
                 n_dev: int = 500, n_eval: int = 16, corpus_seed: int = 7, augment_seed: int = 11,
                 augment_share: float = 0.5, augment_word_p: float = 0.5, min_words: int = 10,
                 max_words: int = 16, model: ModelRecipe | dict | str | None = None,
                 min_dev_accuracy: float | None = None, k: int = 50, min_word_cos: float = 0.5,
                 min_sentence_cos: float = 0.5, allow_verb_noun_swap: bool = False, max_ratio: float = 0.5,
                 objectives: Sequence[str] = ("l2", "delta_lom", "random"), backend: str = "auto",
                 substitutes: str = "auto", counter_fitted_path: str | None = None,
                 counter_fitted_url: str | None = None, synonyms_dir: str | None = None,
                 stopwords_path: str | None = None, embedder: str = "auto", pos: str = "auto",
                 sentence_encoder: str = "auto", perplexity_lm: str | None = None,
                 aggregation: str = "absmax", max_explain_batch: int = 512, l2_normalize: bool = True,
                 lom_signed: bool = False, name: str = "fragility"):
        for key, val, allowed in (("backend", backend, ("auto", "textattack", "harness")),
                                  ("substitutes", substitutes, ("auto", "corpus", "ppdb", "counter-fitted")),
                                  ("embedder", embedder, ("auto", "minilm-word", "minilm-input", "model-input")),
                                  ("pos", pos, ("auto", "on", "off")),
                                  ("sentence_encoder", sentence_encoder, ("auto", "on", "off"))):
            if val not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {val!r}")
        if source not in ("generated", "glue"):
            raise ValueError(f"source must be 'generated' or 'glue', got {source!r}")
        if not 3 <= min_words <= max_words:
            raise ValueError(f"need 3 <= min_words <= max_words, got {min_words}, {max_words}")
        if substitutes == "auto":
            if counter_fitted_path or counter_fitted_url:
                substitutes = "counter-fitted"
            else:
                substitutes = "corpus" if source == "generated" else "ppdb"
        if substitutes == "counter-fitted" and not (counter_fitted_path or counter_fitted_url):
            raise ValueError("substitutes='counter-fitted' needs counter_fitted_path or counter_fitted_url")
        if substitutes == "ppdb" and not synonyms_dir:
            raise ValueError("substitutes='ppdb' needs synonyms_dir (a folder with ppdb_synonyms.txt, "
                             "e.g. ../shared/data/synonyms) or give counter_fitted_path/counter_fitted_url")
        recipe = recipe_from(model)
        bar = min_dev_accuracy if min_dev_accuracy is not None else (0.9 if source == "generated" else 0.75)
        if not (isinstance(model, dict) and "min_dev_accuracy" in model):
            recipe = recipe.model_copy(update={"min_dev_accuracy": bar})
        if source == "generated":
            dataset = DatasetRef(source="generated", id="attriboard/sentiment_corpus", split="all",
                                 revision=f"seed={corpus_seed}")
        elif data_dir:
            dataset = DatasetRef(source="local", id="glue/sst2", path=str(Path(data_dir).resolve()), split="train+dev")
        else:
            from tasks.planted_sst.task import GLUE_REVISION

            dataset = DatasetRef(source="hub", id="glue/sst2", revision=GLUE_REVISION, split="train+validation")
        self.source, self.data_dir = source, data_dir
        self.spec = TaskSpec(
            name=name, version=VERSION,
            description="ExplainFooler fragility: synonym swaps that keep the prediction; rank correlation "
                        "between original and perturbed word-level maps per perturbation bucket.",
            dataset=dataset, fields=("sentence",), num_labels=2, model=recipe,
            metrics=METRICS, main_metric="fragility_rank_corr", n_eval=n_eval,
            params=dict(
                n_train=n_train, n_dev=n_dev, corpus_seed=corpus_seed, augment_seed=augment_seed,
                augment_share=augment_share, augment_word_p=augment_word_p, min_words=min_words,
                max_words=max_words, k=k, min_word_cos=min_word_cos, min_sentence_cos=min_sentence_cos,
                allow_verb_noun_swap=allow_verb_noun_swap, max_ratio=max_ratio, objectives=list(objectives),
                backend=backend, substitutes=substitutes, counter_fitted_path=counter_fitted_path,
                counter_fitted_url=counter_fitted_url, synonyms_dir=synonyms_dir,
                stopwords_path=stopwords_path, embedder=embedder, pos=pos, sentence_encoder=sentence_encoder,
                perplexity_lm=perplexity_lm, aggregation=aggregation, max_explain_batch=max_explain_batch,
                l2_normalize=l2_normalize, lom_signed=lom_signed, environment=_environment(),
            ),
        )
        self._resources: dict[int, dict[str, Any]] = {}

    # -- data -----------------------------------------------------------------------------
    def prepare(self) -> PreparedTask:
        p = self.spec.params
        n_eval = self.spec.n_eval
        if self.source == "generated":
            from tasks.fragility.corpus_synonyms import CORPUS_SYNONYMS
            from tasks.planted_sst.corpus import generate_corpus

            pool = max(600, 12 * n_eval)
            corpus = generate_corpus(p["n_train"] + p["n_dev"] + pool, seed=p["corpus_seed"])
            rng = random.Random(p["augment_seed"])

            def rows(part):
                out = []
                for text, label in part:
                    words = tuple(text.split())
                    if rng.random() < p["augment_share"]:
                        words = augment_words(words, CORPUS_SYNONYMS, rng, p["augment_word_p"])
                    out.append(((words,), int(label)))
                return out

            train = rows(corpus[: p["n_train"]])
            dev = rows(corpus[p["n_train"]: p["n_train"] + p["n_dev"]])
            held = corpus[p["n_train"] + p["n_dev"]:]
        else:
            from tasks.planted_sst.task import load_glue_sst2_hub, read_glue_tsv

            if self.data_dir:
                d = Path(self.data_dir)
                tr, dv = read_glue_tsv(d / "train.tsv"), read_glue_tsv(d / "dev.tsv")
            else:
                splits = load_glue_sst2_hub(self.spec.dataset.revision)
                tr, dv = splits["train"], splits["validation"]
            import numpy as np

            idx = sorted(np.random.default_rng(p["corpus_seed"]).permutation(len(tr))[: p["n_train"]])
            train = [((tuple(tr[i][0].lower().split()),), int(tr[i][1])) for i in idx if tr[i][0].split()]
            dev = [((tuple(t.lower().split()),), int(y)) for t, y in dv if t.split()]
            held = [(t.lower(), y) for t, y in dv]
        evals = [tuple(t.split()) for t, _ in held if p["min_words"] <= len(t.split()) <= p["max_words"]][:n_eval]
        if len(evals) < n_eval:
            raise ValueError(f"only {len(evals)} held-out sentences of {p['min_words']}-{p['max_words']} words "
                             f"for n_eval={n_eval}")
        examples = [Example(id=f"{self.spec.name}-{i}", segments=(w,)) for i, w in enumerate(evals)]
        gold = [None] * len(examples)
        return PreparedTask(train, dev, examples, gold, hash_prepared(train, dev, examples, gold))

    # -- resources (built once per reference model, reused by every explainer) -------------
    def resources(self, bundle, examples: Sequence[Example]) -> dict[str, Any]:
        key = id(bundle.model)
        if key in self._resources:
            return self._resources[key]
        from tasks.fragility import resources as R
        from tasks.fragility.constraints import ConstraintConfig, HarnessBackend, TextAttackBackend

        p = self.spec.params
        t0 = time.perf_counter()
        report = R.ResourceReport()
        # stop words
        if p["stopwords_path"]:
            stopwords = R.load_stopwords(p["stopwords_path"])
            report.add(R.Availability("stopwords", "used", str(p["stopwords_path"]), f"{len(stopwords)} words"))
        else:
            stopwords = R.ENGLISH_STOPWORDS
            report.add(R.Availability("stopwords", "used", "attriboard English list (tasks.fragility.resources)",
                                      f"{len(stopwords)} function words"))
        # sentence encoder (also the default word embedder)
        encoder = None
        ok, why = R.MiniLMEncoder.available()
        if p["sentence_encoder"] != "off" and ok:
            encoder = R.MiniLMEncoder()
            report.add(R.Availability("sentence_encoder", "used", R.MiniLMEncoder.name,
                                      f"cosine to the original text >= {p['min_sentence_cos']}"))
        elif p["sentence_encoder"] == "on" and not ok:
            raise RuntimeError(f"sentence_encoder='on' but the MiniLM encoder is unavailable: {why}")
        else:
            report.add(R.Availability("sentence_encoder", "skipped", "",
                                      "turned off (sentence_encoder='off')" if p["sentence_encoder"] == "off" else why))
        # substitutes
        known = R.known_to_tokenizer(bundle.tokenizer)
        queries = {w.lower() for e in examples for w in e.words
                   if R.is_swappable_token(w) and w.lower() not in stopwords}
        if p["substitutes"] == "counter-fitted":
            path = p["counter_fitted_path"] or str(R.download_word_vectors(p["counter_fitted_url"]))
            vectors = R.load_word_vectors(path)
            resource = R.SubstituteResource.from_vectors(vectors)
        else:
            emb_name = p["embedder"]
            if emb_name == "auto":
                emb_name = "minilm-word" if ok else "model-input"
            if emb_name.startswith("minilm"):
                enc = encoder or R.MiniLMEncoder()
                embed = enc.word_vectors if emb_name == "minilm-word" else enc.input_vectors
            else:
                embed = R.model_input_vectors(bundle)
            if p["substitutes"] == "corpus":
                from tasks.fragility.corpus_synonyms import CORPUS_SYNONYMS

                table, antonyms, label = CORPUS_SYNONYMS, polarity_antonyms(), "attriboard corpus table"
            else:
                d = Path(p["synonyms_dir"])
                table = R.load_synonym_pairs(d)
                antonyms = R.load_antonym_pairs(d)
                label = f"PPDB pairs ({d})"
            resource = R.SubstituteResource.from_synonyms(table, embed, emb_name, label, antonyms=antonyms)
        subs = resource.restrict(queries, k=p["k"], known=known)
        n_with = len(subs.neighbours)
        report.add(R.Availability("substitutes", "used", subs.name,
                                  f"{resource.description}; k={p['k']}; {n_with} of {len(queries)} content words "
                                  f"of the inputs have substitutes; {subs.n_dropped_unknown} substitutes dropped "
                                  f"as unknown to the model's tokenizer"))
        report.add(R.Availability("word_embedding", "used", subs.vectors.source,
                                  f"cosine(original, substitute) >= {p['min_word_cos']}"))
        # part of speech
        tagger = None
        pos_ok, pos_why = R.SpacyTagger.available()
        if p["pos"] != "off" and pos_ok:
            tagger = R.SpacyTagger()
            report.add(R.Availability("part_of_speech", "used", tagger.name,
                                      "same universal POS tag" + (" (NOUN<->VERB allowed)" if p["allow_verb_noun_swap"] else "")))
        elif p["pos"] == "on" and not pos_ok:
            raise RuntimeError(f"pos='on' but spaCy is unavailable: {pos_why}")
        else:
            report.add(R.Availability("part_of_speech", "skipped", "", "turned off (pos='off')" if p["pos"] == "off" else pos_why))
        # perplexity
        lm, lm_why = R.CausalLMPerplexity.load(p["perplexity_lm"])
        report.add(R.Availability("perplexity", "used" if lm else "unavailable", p["perplexity_lm"] or "", lm_why))
        # backend
        config = ConstraintConfig(p["min_word_cos"], p["min_sentence_cos"], p["allow_verb_noun_swap"])
        backend = None
        if p["backend"] in ("auto", "textattack"):
            ta, info = R.import_textattack()
            if ta is not None:
                backend = TextAttackBackend(subs, stopwords, config, tagger, encoder, textattack_version=info)
            elif p["backend"] == "textattack":
                raise RuntimeError(f"backend='textattack' but {info}")
            else:
                report.add(R.Availability("textattack", "unavailable", "", info))
        if backend is None:
            backend = HarnessBackend(subs, stopwords, config, tagger, encoder)
        report.add(R.Availability("backend", "used", backend.name, backend.describe()))
        report.add(R.Availability("search", "used", "harness per-level search (Algorithm 1)",
                                  "TextAttack's search loop keeps only improving swaps and returns the final "
                                  "text; ExplainFooler needs the best candidate of every level"))
        res = {"backend": backend, "subs": subs, "report": report, "lm": lm, "encoder": encoder,
               "tagger": tagger, "seconds": time.perf_counter() - t0}
        self._resources[key] = res
        log.info("fragility resources ready in %.1fs: %s", res["seconds"], backend.describe())
        return res

    # -- evaluation ----------------------------------------------------------------------
    failure_stage = "attack"

    def evaluate(self, run) -> Evaluation:
        """The task's own loop: the attack calls the explainer on perturbed inputs."""
        return self.explain_and_score(run.explainer(), run.bundle, run.examples, run.targets, run.seed)

    def run_attack(self, explainer, bundle, examples: Sequence[Example], targets: Sequence[int], seed: int,
                   objective_params: dict, on_explain_call=None, max_levels: int | None = None):
        """The search over this task's resources: ``(resources, explanations, attack, results)``
        (also the adversarial-explanations task's, with its own objectives)."""
        from tasks.fragility.attack import Explanations, ExplainFooler

        p = self.spec.params
        res = self.resources(bundle, examples)
        explanations = Explanations(explainer, bundle, seed, p["aggregation"], p["max_explain_batch"],
                                    on_call=on_explain_call)
        attack = ExplainFooler(res["backend"], bundle, explanations, objectives=p["objectives"],
                               max_ratio=p["max_ratio"], seed=seed, objective_params=objective_params,
                               max_levels=max_levels)
        ex_seeds = [int.from_bytes(hashlib.sha256(f"{seed}:{e.id}".encode()).digest()[:4], "little") for e in examples]
        results = attack.run([e.segments for e in examples], list(targets), ex_seeds)
        return res, explanations, attack, results

    def explain_and_score(self, explainer, bundle, examples: Sequence[Example], targets: Sequence[int],
                          seed: int, on_explain_call=None) -> Evaluation:
        from tasks.fragility.summary import perplexity_rows, summarise

        p = self.spec.params
        t0 = time.perf_counter()
        res, explanations, attack, results = self.run_attack(
            explainer, bundle, examples, targets, seed,
            {"l2_normalize": p["l2_normalize"], "lom_signed": p["lom_signed"]}, on_explain_call)
        ppl = perplexity_rows(res["lm"], results, p["objectives"]) if res["lm"] is not None else None
        st = attack.stats
        extra = {
            "backend_textattack": float(res["backend"].name == "textattack"),
            "pos_constraint_used": float(res["tagger"] is not None),
            "sentence_encoder_used": float(res["encoder"] is not None),
            "perplexity_available": float(res["lm"] is not None),
            "explainer_calls": explanations.n_calls, "explained_inputs": explanations.n_explained,
            "explainer_seconds": explanations.seconds, "explainer_forward_passes": explanations.forward,
            "explainer_backward_passes": explanations.backward,
            "max_explainer_batch": max(explanations.batch_sizes or [0]),
            "attack_forward_passes": st.attack_forward, "constraint_seconds": st.seconds_constraints,
            "candidates_proposed": st.n_proposed, "candidates_valid": st.n_valid,
            "words_without_candidates": st.words_without_candidates,
            **{f"rejected_{k}": v for k, v in st.rejected.items()},
            "resource_seconds": res["seconds"], "evaluate_seconds": time.perf_counter() - t0,
        }
        for k, v in explanations.extras.items():
            extra[f"{k}_mean"] = float(sum(v) / len(v)) if v else 0.0
        per_example, higher, family, tables, details = summarise(
            results, [e.id for e in examples], p["objectives"], resources=res["report"].table(),
            perplexity=ppl, extra_details=extra)
        return Evaluation(per_example=per_example, higher_is_better=higher, family=family,
                          tables=tables, details=details, aggregation=p["aggregation"])


@register_task("fragility")
def fragility(**overrides) -> FragilityTask:
    """Embedded default: the generated corpus (original labels), the project's synonym table."""
    return FragilityTask(source="generated", name="fragility", **overrides)


@register_task("fragility_sst2")
def fragility_sst2(**overrides) -> FragilityTask:
    """GLUE SST-2: ``data_dir=`` a local GLUE folder (else the hub); ``synonyms_dir=`` PPDB
    pairs or ``counter_fitted_path=`` counter-fitted vectors."""
    overrides.setdefault("n_train", 8000)
    return FragilityTask(source="glue", name="fragility_sst2", **overrides)
