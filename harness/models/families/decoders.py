"""Decoder classifiers: GPT-2 and Llama-style ``*ForSequenceClassification`` (pooled at the
last real token, see :meth:`harness.models.families.Family.prepare`)."""

from __future__ import annotations

from harness.models.families import Family, register


def _gpt2(size: dict, special: dict) -> dict:
    return dict(n_embd=size["hidden_size"], n_layer=size["num_hidden_layers"], n_head=size["num_attention_heads"],
                n_inner=size["intermediate_size"], n_positions=size["max_position_embeddings"],
                pad_token_id=special.get("pad"), bos_token_id=special.get("eos"), eos_token_id=special.get("eos"))


def _llama(size: dict, special: dict) -> dict:
    return dict(hidden_size=size["hidden_size"], num_hidden_layers=size["num_hidden_layers"],
                num_attention_heads=size["num_attention_heads"], num_key_value_heads=size["num_attention_heads"],
                intermediate_size=size["intermediate_size"], max_position_embeddings=size["max_position_embeddings"],
                pad_token_id=special.get("pad"), bos_token_id=special.get("bos"), eos_token_id=special.get("eos"))


GPT2 = register(Family(
    name="gpt2", model_types=("gpt2",), tokenizer_kind="bpe", template="gpt2", token_types=False,
    blocks_path="transformer.h", head=("score",), top_fc=("score",), decoder=True,
    classifier_class="GPT2ForSequenceClassification", config_class="GPT2Config", config_kwargs=_gpt2))

LLAMA = register(Family(
    name="llama", model_types=("llama",), tokenizer_kind="unigram", template="llama", token_types=False,
    blocks_path="model.layers", head=("score",), top_fc=("score",), decoder=True,
    classifier_class="LlamaForSequenceClassification", config_class="LlamaConfig", config_kwargs=_llama))
