"""Tiny offline fixtures shipped with the package: a word tokenizer, a tiny BERT, a tiny masked LM, tiny inputs.

Method authors use these to smoke-test a submission without any download::

    from harness.testing import tiny_bundle, tiny_batch
    bundle = tiny_bundle()
    attributions = MyExplainer().explain(bundle, tiny_batch(bundle))
"""

from __future__ import annotations

from functools import lru_cache

from harness.protocols import Segments

TINY_SENTENCES: list[Segments] = [
    (("the", "film", "was", "good", "positive"),),
    (("a", "dull", "and", "tedious", "plot", "negative"),),
    (("great", "acting"),),
    (("the", "story", "never", "finds", "its", "footing", "but", "the", "cast", "is", "warm", "positive"),),
    (("boring", "negative"),),
    (("an", "unseen", "word", "here"),),
]
TINY_PAIRS: list[Segments] = [
    (("a", "man", "plays", "guitar"), ("a", "person", "plays", "music")),
    (("the", "dog", "sleeps"), ("the", "dog", "runs", "fast")),
    (("two", "kids", "play", "outside", "in", "the", "park"), ("kids", "are", "indoors")),
]
_VOCAB_EXCLUDE = {"unseen"}  # exercises the [UNK] path


def tiny_vocab() -> list[str]:
    words = {w for segs in TINY_SENTENCES + TINY_PAIRS for s in segs for w in s}
    return sorted(words - _VOCAB_EXCLUDE)


@lru_cache(maxsize=4)
def _tiny_model_state(seed: int, num_labels: int):
    from harness.models.reference import ModelRecipe, build_word_tokenizer, tiny_bert

    recipe = ModelRecipe(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64, max_length=64, seed=seed)
    tok = build_word_tokenizer(tiny_vocab(), recipe.max_length)
    model = tiny_bert(len(tok), num_labels, recipe)
    model.eval()
    return tok, model.state_dict(), model.config


TINY_MLM_RECIPE = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       max_position_embeddings=64, max_length=64, epochs=150, batch_size=16, lr=1e-2,
                       dropout=0.0, seed=0)


@lru_cache(maxsize=1)
def tiny_mlm():
    """A tiny word-level masked LM over :func:`tiny_vocab`, trained for about a second on the
    tiny sentences and pairs (BERT masking, 150 epochs of full batches, single-threaded); built once per process.
    It restores frequent words of those inputs (e.g. "the" in "the film was good positive")."""
    from harness.models.mlm import MLMRecipe, train_tiny_mlm_in_memory

    return train_tiny_mlm_in_memory(TINY_SENTENCES + TINY_PAIRS, MLMRecipe(**TINY_MLM_RECIPE),
                                    vocab=tiny_vocab(), name="tiny-test-mlm")


#: extra text the tiny sub-word tokenizers are trained on: punctuation, accents, numbers
TINY_EXTRA_TEXTS = ["café , naïve 42 résumé !", "don't stop - 3.5 stars", "it's 100% great ; really ?"]


def tiny_texts() -> list[str]:
    return [" ".join(s) for segs in TINY_SENTENCES + TINY_PAIRS for s in segs] + TINY_EXTRA_TEXTS


@lru_cache(maxsize=32)
def _tiny_family_state(family: str, seed: int, num_labels: int):
    from harness.models.reference import ModelRecipe, tiny_family_model

    recipe = ModelRecipe(kind="tiny", family=family, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64, max_length=64, seed=seed,
                         tokenizer_vocab=150)
    tok, model = tiny_family_model(recipe, tiny_texts() * 5, num_labels)
    model.eval()
    return tok, model.state_dict(), model.config


def tiny_family_model(family: str | None = None, seed: int = 0, num_labels: int = 2):
    """(tokenizer, fresh untrained model) of a tiny random model: the word-level tiny BERT when
    ``family`` is None, else a model of that registered family (:mod:`harness.models.families`,
    hidden 16, 2 layers) with a tokenizer of the family's type trained in memory on the tiny
    sentences, pairs and :data:`TINY_EXTRA_TEXTS`."""
    import copy

    if family is None:
        from transformers import BertForSequenceClassification

        tok, state, config = _tiny_model_state(seed, num_labels)
        model = BertForSequenceClassification(config)
    else:
        from harness.models.families import get_family

        tok, state, config = _tiny_family_state(family, seed, num_labels)
        tok = copy.deepcopy(tok)
        model = get_family(family).build_classifier(config)
    model.load_state_dict(state)
    return tok, model.eval()


def tiny_bundle(seed: int = 0, num_labels: int = 2, sensitive: bool = False, mlm: bool = True,
                family: str | None = None):
    """A freshly built (untrained, seeded) tiny BERT bundle (or, with ``family``, a tiny model of that
    family: :func:`tiny_family_model`); a new model object per call.

    With ``mlm=True`` (default) the bundle carries the tiny masked LM (:func:`tiny_mlm`),
    counting into this bundle's counter, so IM, LIME_BERT and ``mlm`` removal can run.

    An untrained tiny BERT is nearly constant (p ~ 0.50 for every input, attributions ~1e-6),
    too flat for checks such as batch invariance to catch anything.  ``sensitive=True``
    scales every linear layer by 20 and the word embeddings by 10, so predictions and
    attributions depend strongly on the input (the conformance suite uses this).
    """
    import torch

    from harness.models.bundle import ModelBundle

    tok, model = tiny_family_model(family, seed, num_labels)
    if sensitive:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D":
                    module.weight.mul_(20.0)
            model.get_input_embeddings().weight.mul_(10.0)
    name = f"tiny-test-{family or 'bert'}-s{seed}" + ("-sensitive" if sensitive else "")
    bundle = ModelBundle(model, tok, name, num_labels, max_length=64)
    if mlm:
        from harness.models.mlm import attach_mlm

        attach_mlm(bundle, tiny_mlm())
    return bundle


def tiny_batch(bundle, pairs: bool = False, seed: int = 0):
    return bundle.make_batch(TINY_PAIRS if pairs else TINY_SENTENCES, seed=seed)
