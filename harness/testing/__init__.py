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


def tiny_bundle(seed: int = 0, num_labels: int = 2, sensitive: bool = False, mlm: bool = True):
    """A freshly built (untrained, seeded) tiny BERT bundle; a new model object per call.

    With ``mlm=True`` (default) the bundle carries the tiny masked LM (:func:`tiny_mlm`),
    counting into this bundle's counter, so IM, LIME_BERT and ``mlm`` removal can run.

    An untrained tiny BERT is nearly constant (p ~ 0.50 for every input, attributions ~1e-6),
    too flat for checks such as batch invariance to catch anything.  ``sensitive=True``
    scales every linear layer by 20 and the word embeddings by 10, so predictions and
    attributions depend strongly on the input (the conformance suite uses this).
    """
    import torch
    from transformers import BertForSequenceClassification

    from harness.models.bundle import ModelBundle

    tok, state, config = _tiny_model_state(seed, num_labels)
    model = BertForSequenceClassification(config)
    model.load_state_dict(state)
    if sensitive:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.Linear):
                    module.weight.mul_(20.0)
            model.get_input_embeddings().weight.mul_(10.0)
    name = f"tiny-test-bert-s{seed}" + ("-sensitive" if sensitive else "")
    bundle = ModelBundle(model, tok, name, num_labels, max_length=64)
    if mlm:
        from harness.models.mlm import attach_mlm

        attach_mlm(bundle, tiny_mlm())
    return bundle


def tiny_batch(bundle, pairs: bool = False, seed: int = 0):
    return bundle.make_batch(TINY_PAIRS if pairs else TINY_SENTENCES, seed=seed)
