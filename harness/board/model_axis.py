"""The model axis (paper 001 sec. 3.6): the same task on several reference models.

For every task with boards on two or more models (``attriboard run --models A B C``), a page
section with:

- each explainer's main score per model, side by side (its rank on that model's board in
  parentheses);
- the Kendall rank correlation (tau-b, ties counted as ties; scipy's ``kendalltau``) between
  the explainer rankings of every pair of models, over the explainers scored on both, with
  its two-sided p-value: do explainer rankings hold across architectures and sizes?

Registered with :mod:`harness.board.sections` like a task's sections."""

from __future__ import annotations

from itertools import combinations

from harness.board.model import Heading, Lit, Paragraph, Section, Tab, Table, code, rich, text
from harness.board.sections import register_section

TAB = Tab("models", "Across models", "The same task on several reference models")

INTRO = ("Each explainer's main score on every reference model of the task (rank on that model's board in "
         "parentheses), then the Kendall tau-b between the explainer rankings of each pair of models, over "
         "the explainers scored on both (1: the same order, 0: unrelated, -1: reversed; p: two-sided test of "
         "no association).")


def cross_model(boards) -> dict[str, dict]:
    """task -> {"models": [model, ...], "scores": {model: {submission: (score, rank)}}, "main": metric,
    "higher_is_better": bool} for tasks on two or more models."""
    by_task: dict[str, list] = {}
    for b in boards:
        by_task.setdefault(b.task, []).append(b)
    out = {}
    for task, bs in sorted(by_task.items()):
        bs = [b for b in bs if b.ranked]
        if len({b.model for b in bs}) < 2:
            continue
        mains = {b.main_metric for b in bs}
        if len(mains) != 1:
            continue  # versions with different main metrics: not comparable side by side
        out[task] = {"models": sorted(b.model for b in bs), "main": bs[0].main_metric,
                     "higher_is_better": bs[0].higher_is_better,
                     "scores": {b.model: {r.submission.name: (r.scores[b.main_metric].value, rank)
                                          for rank, r, _ in b.ranked} for b in bs}}
    return out


def kendall_pairs(entry: dict) -> list[tuple[str, str, int, float, float]]:
    """(model a, model b, explainers in common, tau-b, p-value) for every pair of the task's models."""
    from scipy.stats import kendalltau

    out = []
    for a, b in combinations(entry["models"], 2):
        common = sorted(set(entry["scores"][a]) & set(entry["scores"][b]))
        if len(common) < 2:
            out.append((a, b, len(common), float("nan"), float("nan")))
            continue
        x = [entry["scores"][a][s][0] for s in common]
        y = [entry["scores"][b][s][0] for s in common]
        res = kendalltau(x, y, variant="b")
        out.append((a, b, len(common), float(res.statistic), float(res.pvalue)))
    return out


def _num(v: float, fmt: str = "{:.3f}") -> str:
    return "—" if v != v else fmt.format(v)


def task_section(task: str, entry: dict) -> Section:
    models = entry["models"]
    subs = sorted({s for m in models for s in entry["scores"][m]},
                  key=lambda s: min(entry["scores"][m][s][1] for m in models if s in entry["scores"][m]))
    header = ((Lit("submission"),),) + tuple((text(m, 80),) for m in models)
    body = []
    for s in subs:
        cells = [(text(s, 100),)]
        for m in models:
            got = entry["scores"][m].get(s)
            cells.append((Lit("—" if got is None else f"{got[0]:.3f} ({got[1]})"),))
        body.append(tuple(cells))
    scores = Table(header, tuple(body), ("---",) + ("---:",) * len(models))
    pairs = kendall_pairs(entry)
    taus = Table(((Lit("model A"),), (Lit("model B"),), (Lit("explainers"),), (Lit("Kendall tau-b"),), (Lit("p"),)),
                 tuple(((text(a, 80),), (text(b, 80),), (Lit(str(n)),), (Lit(_num(t)),), (Lit(_num(p, "{:.3g}")),))
                       for a, b, n, t, p in pairs), ("---", "---", "---:", "---:", "---:"))
    arrow = " ↑" if entry["higher_is_better"] else " ↓"
    blocks = (Heading(2, rich(text(task, 100), " across models")), Paragraph(rich(INTRO)),
              Paragraph(rich("Main metric: ", code(entry["main"], 100), arrow)), scores, taus)
    return Section(f"models.{task}", f"{task} across models", blocks, tab=TAB)


@register_section(order=5)
def sections(boards) -> list[Section]:
    return [task_section(t, e) for t, e in cross_model(boards).items()]
