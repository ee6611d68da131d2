"""The adversarial-explanations task's part of the leaderboard (registered with
:mod:`harness.board.sections`): under every board whose records carry
``tables["adversarial_budgets"]``, per explainer, objective and budget the mean Rank Change,
Top-k Sum Change and Probability Change."""

from __future__ import annotations

from harness.board.model import Lit, Paragraph, Section, Table, rich, text
from harness.board.sections import register_section

INTRO = ("Adversarial explanations (paper 001 sec. 2.3, 3.5): up to B words swapped for constrained synonyms that "
         "keep the prediction, chosen to push the original top-k words (k = 15% of the words) down: unconstrained "
         "(topk), with the probability kept close (topk_constrained), or at random (control). Rank change: share of "
         "the top-k ranks whose word changed; top-k sum change: normalised attribution the original top k lost; "
         "probability change: p(x) - p(x') for the predicted class. Lower rank and sum change = more robust.")


EMB_INTRO = ("Embedding-space attack: the input's word-embedding rows moved by at most eps = budget x the embedding "
             "table's std per coordinate, found by gradient descent against the plain-gradient map (white-box for "
             "gradient, transferred to every other explainer), each explainer then given a model whose embedding "
             "rows moved. Inputs moved: those where an iterate kept the class and improved the objective.")


def _f(x) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else ""


def budget_section(b) -> Section | None:
    recs = [r for _, r, _ in b.ranked if r.tables.get("adversarial_budgets")]
    if not recs:
        return None
    body = []
    for r in recs:
        for row in r.tables["adversarial_budgets"]:
            body.append(((text(r.submission.name, 100),), (text(str(row.get("objective", "")), 30),),
                         (Lit(str(row.get("budget", ""))),), (Lit(_f(row.get("rank_change_mean"))),),
                         (Lit(_f(row.get("topk_sum_change_mean"))),), (Lit(_f(row.get("prob_change_mean"))),),
                         (Lit(f"{row.get('inputs_reaching_budget', '')}/{row.get('n_inputs', '')}"),)))
    header = tuple((Lit(h),) for h in ("submission", "objective", "words swapped", "rank change",
                                        "top-k sum change", "probability change", "inputs reaching it"))
    table = Table(header, tuple(body), ("---", "---", "---:", "---:", "---:", "---:", "---:"))
    blocks = [Paragraph(rich(INTRO)), table]
    emb = []
    for r in recs:
        for row in r.tables.get("adversarial_embedding") or ():
            emb.append(((text(r.submission.name, 100),), (text(str(row.get("objective", "")), 30),),
                        (Lit(f"{row.get('budget', '')} ({_f(row.get('eps'))})"),), (Lit(_f(row.get("rank_change_mean"))),),
                        (Lit(_f(row.get("topk_sum_change_mean"))),), (Lit(_f(row.get("prob_change_mean"))),),
                        (Lit(f"{row.get('moved_inputs', '')}/{row.get('n_inputs', '')}"),)))
    if emb:
        blocks.append(Paragraph(rich(EMB_INTRO)))
        eh = tuple((Lit(h),) for h in ("submission", "objective", "budget (eps)", "rank change", "top-k sum change",
                                        "probability change", "inputs moved"))
        blocks.append(Table(eh, tuple(emb), ("---", "---", "---:", "---:", "---:", "---:", "---:")))
    return Section("adversarial.budgets", "Adversarial explanations per budget", tuple(blocks), board=b.key)


@register_section
def sections(boards) -> list[Section]:
    return [s for s in (budget_section(b) for b in boards) if s is not None]


# -- glossary entries of the metrics this task computes in its own loop (docs/ADVERSARIAL.md) -----
from harness.board.glossary import describe  # noqa: E402

for _sfx, _what in (("", "the unconstrained top-k attack"), ("_constrained", "the probability-constrained top-k attack")):
    describe(f"adv_rank_change{_sfx}", f"Share of the original map's top-k ranks (k = 15% of the words) whose word "
             f"differs after {_what} at the largest budget of swapped words; lower = more robust.",
             "paper 001 sec. 2.3 (Rank Change)")
    describe(f"adv_topk_sum_change{_sfx}", f"Attribution (L1-normalised maps) the original top-k words lose under "
             f"{_what}.", "paper 001 sec. 2.3 (Top-k Sum Change)")
    describe(f"adv_prob_change{_sfx}", f"p(x) - p(x') of the predicted class under {_what}: how far the attack "
             "moved the output (a validity check).", "paper 001 sec. 2.3 (Probability Change)")
for _sfx, _what in (("", "the unconstrained embedding-space attack"),
                    ("_constrained", "the probability-constrained embedding-space attack")):
    describe(f"adv_emb_rank_change{_sfx}", f"Rank Change under {_what} at its largest budget (input embedding rows "
             "moved within an infinity-norm ball, found against the plain-gradient map).", "paper 001 sec. 2.3, 3.5")
    describe(f"adv_emb_topk_sum_change{_sfx}", f"Top-k Sum Change under {_what}.", "paper 001 sec. 2.3")
    describe(f"adv_emb_prob_change{_sfx}", f"p(x) - p(x + delta) of the predicted class under {_what}.",
             "paper 001 sec. 2.3")
describe("adv_rank_change_random", "Rank Change under random valid swaps (the control).", "paper 001 sec. 2.3")
del _sfx, _what
