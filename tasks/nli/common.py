"""What the NLI tasks (T2 e-SNLI plausibility, T3 MultiNLI faithfulness) share.

- Labels: ``entailment`` 0, ``neutral`` 1, ``contradiction`` 2 (the order of the hub's
  ``multi_nli`` and ``esnli`` datasets).
- Inputs are sentence pairs: segment 0 = premise words, segment 1 = hypothesis words
  (whitespace tokens); every word-level metric runs over the words of both segments,
  premise first.
- Reference-model recipes: each task declares its own accuracy bar (``min_dev_accuracy``),
  applied to whichever model preset is chosen unless the caller's recipe dict sets one.
"""

from __future__ import annotations

from typing import Any

from harness.models.reference import ModelRecipe, recipe_from

LABELS = ("entailment", "neutral", "contradiction")
LABEL_IDS = {name: i for i, name in enumerate(LABELS)}

NLI_TINY_BERT = dict(epochs=8, batch_size=64, lr=3e-3)
"""tiny-bert training for the generated NLI corpora (the 2-layer, 64-wide preset; more steps
than T1 because NLI needs cross-segment comparisons)."""


def label_id(value: Any) -> int | None:
    """0/1/2 from a label name or id; None for anything else (e.g. MultiNLI's ``-``)."""
    if isinstance(value, str):
        v = value.strip().lower()
        if v in LABEL_IDS:
            return LABEL_IDS[v]
        if v.lstrip("-").isdigit():
            value = int(v)
        else:
            return None
    if isinstance(value, (int,)) and 0 <= int(value) < 3:
        return int(value)
    return None


def nli_recipe(model: ModelRecipe | dict | str | None, min_dev_accuracy: float,
               tiny_defaults: dict | None = None) -> ModelRecipe:
    """The task's recipe: the chosen preset with the task's accuracy bar (and, for the default
    tiny-bert, the task's training schedule).  A recipe dict or object that sets
    ``min_dev_accuracy`` itself keeps it."""
    explicit = (isinstance(model, dict) and "min_dev_accuracy" in model) or isinstance(model, ModelRecipe)
    recipe = recipe_from(model)
    update: dict[str, Any] = {}
    if recipe.kind in ("tiny-bert", "tiny") and tiny_defaults and not isinstance(model, (dict, ModelRecipe)):
        update.update(tiny_defaults)
    if not explicit:
        update["min_dev_accuracy"] = float(min_dev_accuracy)
    return recipe.model_copy(update=update) if update else recipe


def split_words(text: str) -> tuple[str, ...]:
    """Whitespace tokens (the harness's words)."""
    return tuple(str(text).split())
