"""The ROAR task's part of the leaderboard (registered with :mod:`harness.board.sections`): under
every board whose records carry ``tables["roar_curve"]``, the retrained accuracy per removal share
for ROAR and ROAR_BERT (explainers, the random-removal control and the unmodified retrain), and
the two rankings by accuracy drop beyond random, with every pair of explainers they order
differently (paper 003's bias: ROAR_BERT's masked-LM fills can put back what was removed)."""

from __future__ import annotations

from itertools import combinations

from harness.board.model import Lit, Paragraph, Section, Strong, Table, rich, text
from harness.board.sections import register_section

INTRO = ("ROAR / ROAR_BERT (paper 003 sec. 5.1): the top N% words of every training and test input deleted "
         "(ROAR) or replaced by the masked LM's top-1 fill (ROAR_BERT), the model retrained on the modified data "
         "and scored on the modified test set. Lower accuracy = the explainer found what the task needs; gain = "
         "accuracy drop beyond the random-removal control, mean over N.")


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _f(x) -> str:
    return f"{x:.3f}" if _num(x) else ""


def disagreements(gains: dict[str, tuple[float, float]]) -> tuple[float | None, list[tuple[str, str]]]:
    """Kendall tau-b between the ROAR and ROAR_BERT gains over explainers, and the pairs the two
    order oppositely (a tie in one counts as no disagreement)."""
    from scipy.stats import kendalltau

    names = sorted(gains)
    flips = [(a, b) for a, b in combinations(names, 2)
             if (gains[a][0] - gains[b][0]) * (gains[a][1] - gains[b][1]) < 0]
    tau = None
    if len(names) >= 2:
        t = kendalltau([gains[n][0] for n in names], [gains[n][1] for n in names]).statistic
        tau = None if t != t else float(t)
    return tau, flips


def curve_section(b) -> Section | None:
    recs = [r for _, r, _ in b.ranked if r.tables.get("roar_curve")]
    if not recs:
        return None
    first = recs[0].tables["roar_curve"]
    levels = sorted({int(x["share_percent"]) for x in first})
    kinds = [k for k in ("roar", "roar_bert") if any(x["kind"] == k for x in first)]

    def acc(rows, kind, n, key="accuracy"):
        row = next((x for x in rows if x.get("kind") == kind and x.get("share_percent") == n), None)
        return None if row is None else row.get(key)

    header = [(Lit("submission"),)] + [(Lit(f"{'ROAR' if k == 'roar' else 'ROAR_BERT'} {n}%"),)
                                       for k in kinds for n in levels] + [(Lit("gain ROAR"),), (Lit("gain ROAR_BERT"),)]
    body, gains = [], {}
    for r in recs:
        g = (r.scores.get("roar_gain"), r.scores.get("roar_bert_gain"))
        gv = tuple(x.value if x is not None else None for x in g)
        if all(_num(x) for x in gv):
            gains[r.submission.name] = gv
        body.append(((text(r.submission.name, 100),),
                     *[(Lit(_f(acc(r.tables["roar_curve"], k, n))),) for k in kinds for n in levels],
                     (Lit(_f(gv[0])),), (Lit(_f(gv[1])),)))
    body.append(((Lit("random removal (control)"),),
                 *[(Lit(_f(acc(first, k, n, "control_accuracy"))),) for k in kinds for n in levels], (Lit(""),), (Lit(""),)))
    unmod = first[0].get("unmodified_accuracy")
    table = Table(tuple(header), tuple(body), ("---",) + ("---:",) * (len(header) - 1))
    blocks = [Paragraph(rich(INTRO)), table,
              Paragraph(rich(f"Retrained on the unmodified data: accuracy {_f(unmod)} "
                             f"({first[0].get('n_models', 1)} model(s), {first[0].get('n_train', '?')} training and "
                             f"{first[0].get('n_test', '?')} test inputs)."))]
    tau, flips = disagreements(gains)
    if len(gains) >= 2:
        if flips:
            pairs = "; ".join(f"{a} vs {c}" for a, c in flips)
            blocks.append(Paragraph(rich(Strong((Lit("ROAR and ROAR_BERT disagree"),)),
                                         text(f" on {len(flips)} pair(s) (Kendall tau-b {_f(tau)}): {pairs}.", 4000))))
        else:
            blocks.append(Paragraph(rich(text(f"ROAR and ROAR_BERT order the explainers the same way "
                                              f"(Kendall tau-b {_f(tau)}).", 400))))
    return Section("roar.curve", "ROAR and ROAR_BERT", tuple(blocks), board=b.key)


@register_section
def sections(boards) -> list[Section]:
    return [s for s in (curve_section(b) for b in boards) if s is not None]


# -- glossary entries of the metrics this task computes in its own loop (docs/ROAR.md) ------------
from harness.board.glossary import describe  # noqa: E402

describe("roar_gain", "Accuracy drop beyond random removal under ROAR, mean over the removal shares: per test input, "
         "the control model's correctness minus that of the model retrained with the explainer's top N% words "
         "deleted.", "paper 003 sec. 5.1 (Hooker et al. 2019)")
describe("roar_bert_gain", "As roar_gain, with the removed words replaced by the masked LM's top-1 fill "
         "(ROAR_BERT).", "paper 003 sec. 5.1")
for _n in (10, 20, 30, 40, 50):
    describe(f"roar_acc_{_n}", f"Test accuracy of the model retrained with each input's top {_n}% words (by the "
             "explainer) deleted; lower = more faithful.", "paper 003 table 2 (ROAR)")
    describe(f"roar_bert_acc_{_n}", f"As roar_acc_{_n}, the words replaced by the masked LM's top-1 fill.",
             "paper 003 table 2 (ROAR_BERT)")
del _n
