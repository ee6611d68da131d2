"""The FACADE task's part of the leaderboard (registered with :mod:`harness.board.sections`):
under every board whose records carry ``tables["facade_summary"]``, per explainer and facade
variant the P@1 and attribution mass on the facade's targets (merged vs original model), the
rank correlation with the original map and whether the explainer was fooled; then the merged
models' check (largest probability difference, same predicted class)."""

from __future__ import annotations

from harness.board.model import Lit, Paragraph, Section, Strong, Table, rich, text
from harness.board.sections import register_section

INTRO = ("FACADE (paper 002): the reference model merged with a facade whose input gradients point at the "
         "stop words (stop) or the first word (first) while its predictions stay the same. P@1: share of inputs "
         "whose top word is a facade target; mass: share of |attribution| on the targets; rho: Spearman "
         "correlation with the same explainer's map on the original model. Fooled: P@1 rises by at least the "
         "task's margin. Diagnostic board: an explainer that ignores the model is never fooled.")


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _f(x, nd: int = 3) -> str:
    return f"{x:.{nd}f}" if _num(x) else ""


def summary_section(b) -> Section | None:
    rows = [r for _, r, _ in b.ranked if r.tables.get("facade_summary")]
    if not rows:
        return None
    body, fooled, models = [], [], None
    for r in rows:
        for s in r.tables["facade_summary"]:
            is_fooled = s.get("fooled") is True
            if is_fooled:
                fooled.append(f"{r.submission.name} ({s.get('variant', '?')})")
            body.append(((text(r.submission.name, 100),), (text(str(s.get("variant", "")), 20),),
                         (Lit(_f(s.get("p_at_1"))),), (Lit(_f(s.get("p_at_1_original"))),),
                         (Lit(_f(s.get("mass"))),), (Lit(_f(s.get("mass_original"))),), (Lit(_f(s.get("rho"))),),
                         (Strong((Lit("fooled"),)),) if is_fooled else (Lit("no"),)))
        models = models or r.tables.get("facade_models")
    header = tuple((Lit(h),) for h in ("submission", "variant", "P@1 merged", "P@1 original", "mass merged",
                                        "mass original", "rho", "fooled"))
    blocks = [Paragraph(rich(INTRO)), Table(header, tuple(body), ("---", "---") + ("---:",) * 5 + ("---",))]
    verdict = ("Fooled: " + ", ".join(fooled) + ".") if fooled else "No explainer was fooled."
    blocks.append(Paragraph(rich(text(verdict, 4000))))
    if models:
        mrows = tuple(((text(str(m.get("variant", "")), 20),), (text(str(m.get("target", "")), 40),),
                       (Lit(f"{m['max_prob_diff']:.2g}" if _num(m.get("max_prob_diff")) else ""),),
                       (Lit(_f(m.get("same_class_share"))),), (Lit(_f(m.get("gradient_p_at_1"))),),
                       (Lit(str(m.get("marked_tokens", ""))),)) for m in models)
        mh = tuple((Lit(h),) for h in ("variant", "targets", "largest probability difference", "same class",
                                        "plain-gradient P@1", "marked tokens"))
        blocks.append(Table(mh, mrows, ("---", "---", "---:", "---:", "---:", "---:")))
    return Section("facade.summary", "FACADE: which explainers are fooled", tuple(blocks), board=b.key)


@register_section
def sections(boards) -> list[Section]:
    return [s for s in (summary_section(b) for b in boards) if s is not None]


# -- glossary entries of the metrics this task computes in its own loop (docs/FACADE.md) ---------
from harness.board.glossary import describe  # noqa: E402

describe("facade_rho", "Mean over the facade variants (stop words, first word) of the Spearman correlation between "
         "the explainer's |attribution| on the merged model and on the original model; 1 = unaffected.",
         "paper 002 (FACADE) sec. 4")
for _v, _what in (("stop", "a stop word"), ("first", "the first word")):
    describe(f"facade_{_v}_p_at_1", f"Share of inputs whose top-ranked word on the {_v}-word facade model is "
             f"{_what} (ties: share of targets among the tied words).", "paper 002 sec. 4.1, P@1")
    describe(f"facade_{_v}_p_at_1_original", f"P@1 for {_what} on the original model (the base rate).",
             "paper 002 sec. 4.1")
    describe(f"facade_{_v}_mass", f"Share of the input's |attribution| on {_what} on the facade model, mean over "
             "inputs.", "paper 002 sec. 4.1, mean attribution")
    describe(f"facade_{_v}_mass_original", f"Share of |attribution| on {_what} on the original model.",
             "paper 002 sec. 4.1")
    describe(f"facade_{_v}_rho", f"Spearman correlation between the maps on the {_v} facade model and on the "
             "original model.", "paper 002 sec. 4")
del _v, _what
