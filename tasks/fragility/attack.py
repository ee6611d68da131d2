"""The ExplainFooler search (paper 000 Algorithm 1), run by the harness level by level.

For one input x with n words, original map I0 and target class y (the model's prediction):

1. ``P`` = the words ranked by leave-one-out importance: ``p(y | x) - p(y | x without
   word i)`` (the word deleted), largest first, ties by position.
2. ``S`` = x.  While fewer than ``floor(max_ratio * n)`` words are changed and ``P`` is not
   exhausted: take ``w = P[0]``; build every candidate that swaps w in ``S`` for one of its
   k substitutes and passes the constraints (:mod:`tasks.fragility.constraints`) and
   keeps the prediction y.  If there is none, drop w and go on with the next word (no
   level is spent).  Otherwise explain all of them, keep the one that maximises the
   objective against I0 (the first one on ties, in substitute rank order) as the level-m
   candidate, and make it the new ``S``; drop w.
3. ``random`` objective: a uniformly random valid candidate per level (seeded per input).

**Levels chain**: the best candidate at level m is the starting point of level m + 1.
Algorithm 1 as printed never updates S inside the loop, but then every candidate would
differ from x in one word only and the "m words perturbed" levels could not exist; the
paper's Figure 2 chains the selected sentence ("A sometimes exasperating film" is
perturbed next), and its TextAttack base (greedy word-importance search) does the same.
Each objective runs its own trajectory; they share level 1 (same S = x).

Speed: all the trajectories of all inputs advance in lock-step, so the candidates of one
level of *every* input and objective are explained in one batched explainer call
(split only above ``max_explain_batch`` candidates); explanations are cached by
(input, target) within a run, so the shared level 1 is explained once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from harness.engine.task import ExplainerCallError  # the engine tells explain failures from attack failures
from harness.explain_utils import keep_words
from tasks.fragility.constraints import AttackState, Candidate
from tasks.fragility.metrics import OBJECTIVES
from harness.core.outputs import check_attributions, check_extras, word_maps
from harness.protocols import Segments

ALL_OBJECTIVES = ("l2", "delta_lom", "random", "topk", "topk_constrained")
#: objectives that weigh the candidate's target-class probability (their candidates' probabilities
#: are computed in one batched call before the choice): the adversarial-explanations task's
PROBA_OBJECTIVES = ("topk_constrained",)


def split_segments(words: Sequence[str], lengths: Sequence[int]) -> Segments:
    out, k = [], 0
    for n in lengths:
        out.append(tuple(words[k:k + n]))
        k += n
    return tuple(out)




class Explanations:
    """Word-level maps of (segments, target) pairs from one explainer, batched and cached.

    Every explainer call gets an :class:`~harness.protocols.ExplainBatch` from
    ``bundle.make_batch`` (inputs + target classes + seed, nothing else); outputs are
    validated with :func:`harness.core.outputs.check_attributions` and merged into words with
    the harness rule (``aggregation``, absmax by default).
    """

    def __init__(self, explainer, bundle, seed: int, aggregation: str = "absmax",
                 max_batch: int | None = 512, on_call: Callable[[Any], None] | None = None):
        self.explainer, self.bundle, self.seed, self.aggregation = explainer, bundle, seed, aggregation
        self.max_batch = max_batch
        self.on_call = on_call
        self.cache: dict[tuple[Segments, int], np.ndarray] = {}
        self.n_calls = 0
        self.n_explained = 0
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.forward = 0
        self.backward = 0
        self.batch_sizes: list[int] = []
        self.extras: dict[str, list[float]] = {}

    def get(self, items: Sequence[tuple[Segments, int]]) -> list[np.ndarray]:
        import torch

        todo = list(dict.fromkeys(it for it in items if it not in self.cache))
        step = self.max_batch or len(todo) or 1
        for start in range(0, len(todo), step):
            chunk = todo[start:start + step]
            batch = self.bundle.make_batch([s for s, _ in chunk], [t for _, t in chunk], seed=self.seed)
            if self.on_call is not None:
                self.on_call(batch)
            torch.manual_seed(self.seed)
            before = self.bundle.counter.snapshot()
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                attr = self.explainer.explain(self.bundle, batch)
            except Exception as e:
                raise ExplainerCallError(f"{type(e).__name__}: {e}") from e
            self.seconds += time.perf_counter() - t0
            self.cpu_seconds += time.process_time() - c0
            after = self.bundle.counter.snapshot()
            self.forward += after[0] - before[0]
            self.backward += after[1] - before[1]
            self.bundle.model.eval()
            raw = check_attributions(attr, batch)
            for k, v in check_extras(attr, batch).items():
                self.extras.setdefault(k, []).extend(v.tolist())
            maps = word_maps(attr, raw, batch, self.aggregation)
            for (segs, tgt), bsegs, m in zip(chunk, batch.segments, maps):
                if tuple(bsegs) != tuple(segs):
                    raise ValueError("the fragility attack needs untruncated inputs; an input exceeds "
                                     f"max_length={self.bundle.max_length} tokens")
                self.cache[(segs, tgt)] = np.asarray(m, dtype=np.float64)
            self.n_calls += 1
            self.n_explained += len(chunk)
            self.batch_sizes.append(len(chunk))
        return [self.cache[it] for it in items]


@dataclass
class Level:
    """The selected candidate with ``m`` words changed."""

    m: int
    words: tuple[str, ...]
    index: int
    new_word: str
    map: np.ndarray
    proba: float
    objective_value: float
    n_valid: int


@dataclass
class Trajectory:
    example: int
    objective: str
    state: AttackState
    order: list[int]
    max_m: int
    rng: np.random.Generator | None = None
    ptr: int = 0
    levels: list[Level] = field(default_factory=list)
    done: bool = False


@dataclass
class ExampleAttack:
    """Everything the metrics need about one input."""

    words: tuple[str, ...]
    lengths: tuple[int, ...]
    target: int
    original_map: np.ndarray
    original_proba: float
    loo_order: list[int]
    levels: dict[str, list[Level]]
    candidate_texts: list[tuple[str, ...]] = field(default_factory=list)


@dataclass
class AttackStats:
    rejected: dict[str, int] = field(default_factory=lambda: {
        "not_modifiable": 0, "word_embedding": 0, "part_of_speech": 0, "label": 0, "sentence_encoder": 0})
    n_proposed: int = 0
    n_valid: int = 0
    words_without_candidates: int = 0
    label_checks: int = 0
    attack_forward: int = 0
    seconds_constraints: float = 0.0


def _objective(name: str, i0, m, params: dict, p0: float | None = None, p1: float | None = None) -> float:
    if name in OBJECTIVES:
        return OBJECTIVES[name](i0, m, params)
    from tasks.adversarial.measures import objective

    return objective(name, i0, m, params, p0, p1)


class ExplainFooler:
    """Runs Algorithm 1 for a set of inputs under several objectives."""

    def __init__(self, backend, bundle, explanations: Explanations, *,
                 objectives: Sequence[str] = ALL_OBJECTIVES, max_ratio: float = 0.5, seed: int = 0,
                 objective_params: dict | None = None, max_levels: int | None = None):
        bad = [o for o in objectives if o not in ALL_OBJECTIVES]
        if bad:
            raise ValueError(f"unknown objectives {bad}; choose from {ALL_OBJECTIVES}")
        if not 0 < max_ratio <= 0.5:
            raise ValueError(f"max_ratio must be in (0, 0.5], got {max_ratio}")
        self.backend, self.bundle, self.explanations = backend, bundle, explanations
        self.objectives, self.max_ratio, self.seed = tuple(objectives), max_ratio, seed
        self.objective_params = dict(objective_params or {})
        self.max_levels = max_levels  # at most this many words changed (None: only max_ratio bounds it)
        self.stats = AttackStats()

    # -- model helpers ---------------------------------------------------------------
    def _proba(self, segments: Sequence[Segments], targets: Sequence[int]) -> np.ndarray:
        if not segments:
            return np.zeros(0)
        before = self.bundle.counter.forward
        p = self.bundle.proba_of_segments(list(segments))
        self.stats.attack_forward += self.bundle.counter.forward - before
        return p[np.arange(len(segments)), np.asarray(targets)]

    def _predictions(self, segments: Sequence[Segments]) -> np.ndarray:
        before = self.bundle.counter.forward
        p = self.bundle.proba_of_segments(list(segments))
        self.stats.attack_forward += self.bundle.counter.forward - before
        return p

    def loo_order(self, words: Sequence[str], lengths: Sequence[int], target: int) -> tuple[list[int], float]:
        orders, probas = self.loo_orders([(tuple(words), tuple(lengths), target)])
        return orders[0], probas[0]

    def loo_orders(self, items: Sequence[tuple[tuple[str, ...], tuple[int, ...], int]]):
        """Leave-one-out ranking (word deleted; target-class probability drop), one batched call."""
        segs, tg, spans = [], [], []
        for words, lengths, target in items:
            base = split_segments(words, lengths)
            start = len(segs)
            segs.append(base)
            tg.append(target)
            for i in range(len(words)):
                keep = [j != i for j in range(len(words))]
                segs.append(keep_words(base, keep))
                tg.append(target)
            spans.append((start, len(words)))
        p = self._proba(segs, tg)
        orders, probas = [], []
        for start, n in spans:
            p0 = p[start]
            drop = p0 - p[start + 1:start + 1 + n]
            orders.append(sorted(range(n), key=lambda i: (-drop[i], i)))
            probas.append(float(p0))
        return orders, probas

    # -- the search ----------------------------------------------------------------------
    def run(self, inputs: Sequence[Segments], targets: Sequence[int], example_seeds: Sequence[int]) -> list[ExampleAttack]:
        items = []
        for segs, t in zip(inputs, targets):
            words = tuple(w for s in segs for w in s)
            items.append((words, tuple(len(s) for s in segs), int(t)))
        orders, probas = self.loo_orders(items)
        originals = self.explanations.get([(split_segments(w, l), t) for w, l, t in items])
        results, trajs, starts = [], [], []
        for e, ((words, lengths, target), order, p0, i0) in enumerate(zip(items, orders, probas, originals)):
            results.append(ExampleAttack(words, lengths, target, i0, p0, order, {o: [] for o in self.objectives}))
            start = self.backend.start(words)
            starts.append(start)
            max_m = int(np.floor(self.max_ratio * len(words)))
            if self.max_levels is not None:
                max_m = min(max_m, int(self.max_levels))
            for o in self.objectives:
                rng = np.random.default_rng([int(example_seeds[e]) % (2 ** 32), 7919]) if o == "random" else None
                trajs.append(Trajectory(e, o, start, list(order), max_m, rng, done=max_m < 1))
        while True:
            active = [t for t in trajs if not t.done]
            if not active:
                break
            valid = self._next_valid(active, items, starts, results)
            requests, plan = [], []
            for t, cands in valid:
                if t.objective == "random":
                    pick = int(t.rng.integers(len(cands)))
                    chosen = [cands[pick]]
                else:
                    chosen = cands
                lengths, target = items[t.example][1], items[t.example][2]
                requests.extend((split_segments(c.words, lengths), target) for c in chosen)
                plan.append((t, cands, chosen))
            maps = self.explanations.get(requests)
            # the candidates' probabilities, where an objective weighs them (one batched call)
            need = [(t, c) for t, _, chosen in plan if t.objective in PROBA_OBJECTIVES for c in chosen]
            cand_p = iter(self._proba([split_segments(c.words, items[t.example][1]) for t, c in need],
                                      [items[t.example][2] for t, c in need]).tolist())
            k = 0
            probas_needed = []
            for t, cands, chosen in plan:
                ms = maps[k:k + len(chosen)]
                k += len(chosen)
                i0 = results[t.example].original_map
                known = None  # the selected candidate's probability, when the objective already has it
                if t.objective == "random":
                    best, value = 0, float("nan")
                else:
                    if t.objective in PROBA_OBJECTIVES:
                        p0 = results[t.example].original_proba
                        ps = [next(cand_p) for _ in ms]
                        values = [_objective(t.objective, i0, m, self.objective_params, p0, q)
                                  for m, q in zip(ms, ps)]
                    else:
                        values = [_objective(t.objective, i0, m, self.objective_params) for m in ms]
                    best = int(np.argmax(values))
                    value = float(values[best])
                    known = ps[best] if t.objective in PROBA_OBJECTIVES else None
                c = chosen[best]
                probas_needed.append((t, c, ms[best], value, len(cands), known))
            # confidence of the other selected candidates, one batched call
            todo = [(t, c) for t, c, *_, known in probas_needed if known is None]
            pro = iter(self._proba([split_segments(c.words, items[t.example][1]) for t, c in todo],
                                   [items[t.example][2] for t, _ in todo]).tolist())
            for t, c, m, value, n_valid, known in probas_needed:
                p = known if known is not None else next(pro)
                t.levels.append(Level(len(t.levels) + 1, c.words, c.index, c.new_word, m, float(p), value, n_valid))
                t.state = self.backend.advance(t.state, c)
                t.ptr += 1
                if len(t.levels) >= t.max_m:
                    t.done = True
        for t in trajs:
            results[t.example].levels[t.objective] = t.levels
        return results

    def _next_valid(self, active: list[Trajectory], items, starts, results) -> list[tuple[Trajectory, list[Candidate]]]:
        """For every active trajectory, the valid candidates of its next word that has any
        (words without a valid candidate are dropped from P); exhausted ones are marked done."""
        out = []
        pending = active
        t0 = time.perf_counter()
        while pending:
            groups = []
            for t in pending:
                cands: list[Candidate] = []
                while t.ptr < len(t.order):
                    i = t.order[t.ptr]
                    cands, rej = self.backend.lexical(t.state, i, starts[t.example])
                    for key, v in rej.items():
                        self.stats.rejected[key] += v
                    if cands:
                        break
                    self.stats.words_without_candidates += 1
                    t.ptr += 1
                if t.ptr >= len(t.order):
                    t.done = True
                    continue
                self.stats.n_proposed += len(cands)
                groups.append([t, cands])
            # part of speech
            for g in groups:
                kept = self.backend.pos_filter(starts[g[0].example], g[1])
                self.stats.rejected["part_of_speech"] += len(g[1]) - len(kept)
                g[1] = kept
            # the model's label must not change (one batched call over all groups)
            flat = [(g, c) for g in groups for c in g[1]]
            if flat:
                pred = self._predictions([split_segments(c.words, items[g[0].example][1]) for g, c in flat]).argmax(-1)
                self.stats.label_checks += len(flat)
                keep_ids = {id(c) for (g, c), y in zip(flat, pred) if int(y) == items[g[0].example][2]}
                for g in groups:
                    kept = [c for c in g[1] if id(c) in keep_ids]
                    self.stats.rejected["label"] += len(g[1]) - len(kept)
                    g[1] = kept
            # sentence encoder: encode every candidate of every group in one batch first
            enc = getattr(self.backend, "encoder", None)
            if enc is not None:
                texts = [" ".join(starts[g[0].example].words) for g in groups if g[1]]
                texts += [" ".join(c.words) for g in groups for c in g[1]]
                enc.encode(texts)
            nxt = []
            for t, cands in groups:
                kept = self.backend.sentence_filter(starts[t.example], cands)
                self.stats.rejected["sentence_encoder"] += len(cands) - len(kept)
                if kept:
                    self.stats.n_valid += len(kept)
                    results[t.example].candidate_texts.extend(c.words for c in kept)
                    out.append((t, kept))
                else:
                    self.stats.words_without_candidates += 1
                    t.ptr += 1
                    nxt.append(t)
            pending = nxt
        self.stats.seconds_constraints += time.perf_counter() - t0
        return out
