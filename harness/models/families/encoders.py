"""Encoder families: BERT (and MiniLM, a BERT), DistilBERT, RoBERTa, XLM-R, DeBERTa-v2/v3,
ELECTRA, ALBERT, ModernBERT."""

from __future__ import annotations

from contextlib import contextmanager

from harness.models.families import Family, register


def _bert_like(size: dict, special: dict) -> dict:
    return dict(hidden_size=size["hidden_size"], num_hidden_layers=size["num_hidden_layers"],
                num_attention_heads=size["num_attention_heads"], intermediate_size=size["intermediate_size"],
                max_position_embeddings=size["max_position_embeddings"], pad_token_id=special.get("pad", 0))


def _roberta(size: dict, special: dict) -> dict:
    kw = _bert_like(size, special)
    # RoBERTa numbers positions from pad_token_id + 1
    kw["max_position_embeddings"] = size["max_position_embeddings"] + int(special.get("pad", 1)) + 1
    kw.update(bos_token_id=special.get("bos"), eos_token_id=special.get("eos"))
    return kw


def _distilbert(size: dict, special: dict) -> dict:
    return dict(dim=size["hidden_size"], n_layers=size["num_hidden_layers"], n_heads=size["num_attention_heads"],
                hidden_dim=size["intermediate_size"], max_position_embeddings=size["max_position_embeddings"],
                pad_token_id=special.get("pad", 0))


def _deberta_v3(size: dict, special: dict) -> dict:
    kw = _bert_like(size, special)
    kw.update(relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=32, max_relative_positions=-1,
              norm_rel_ebd="layer_norm", share_att_key=True, position_biased_input=False, type_vocab_size=0,
              pooler_hidden_size=size["hidden_size"])
    return kw


def _electra(size: dict, special: dict) -> dict:
    kw = _bert_like(size, special)
    kw["embedding_size"] = max(8, size["hidden_size"] // 2)
    return kw


def _albert(size: dict, special: dict) -> dict:
    kw = _bert_like(size, special)
    kw.update(embedding_size=max(8, size["hidden_size"] // 2), num_hidden_groups=1, inner_group_num=1,
              hidden_act="gelu", classifier_dropout_prob=0.1, bos_token_id=special.get("cls"),
              eos_token_id=special.get("sep"))
    return kw


def _modernbert(size: dict, special: dict) -> dict:
    kw = _bert_like(size, special)
    kw.update(global_attn_every_n_layers=2, local_attention=max(16, size["max_position_embeddings"] // 2),
              cls_token_id=special.get("cls"), sep_token_id=special.get("sep"), bos_token_id=special.get("cls"),
              eos_token_id=special.get("sep"), reference_compile=False, classifier_pooling="cls")
    return kw


def _deberta_normalised(config) -> bool:
    # DeBERTa-v3: no absolute positions added to the embeddings (position_biased_input=False) and
    # no token-type embeddings: LayerNorm(e) is all the network sees of a word embedding e
    return (not getattr(config, "position_biased_input", True) and int(getattr(config, "type_vocab_size", 0)) == 0
            and getattr(config, "embedding_size", config.hidden_size) == config.hidden_size)


@contextmanager
def _albert_unshared(model):
    """ALBERT runs one shared layer group for every layer; here each layer gets its own (frozen,
    equal) copy of the group, so no module is called twice in a forward pass."""
    import copy

    import torch

    encoder = model.get_submodule("albert.encoder")
    original = encoder.albert_layer_groups
    n_layers, n_groups = int(model.config.num_hidden_layers), int(model.config.num_hidden_groups)

    class Unrolled(torch.nn.ModuleList):
        def __init__(self):
            super().__init__([copy.deepcopy(original[i * n_groups // n_layers]) for i in range(n_layers)])
            self.calls = 0

        def __getitem__(self, idx):
            if isinstance(idx, slice):
                return super().__getitem__(idx)
            module = super().__getitem__(self.calls % n_layers)
            self.calls += 1
            return module

    unrolled = Unrolled()
    hook = encoder.register_forward_pre_hook(lambda *_: setattr(unrolled, "calls", 0))
    encoder.albert_layer_groups = unrolled
    try:
        yield
    finally:
        encoder.albert_layer_groups = original
        hook.remove()


BERT = register(Family(
    name="bert", model_types=("bert",), tokenizer_kind="wordpiece", template="bert", token_types=True,
    blocks_path="bert.encoder.layer", head=("classifier",), top_fc=("bert.pooler", "classifier"), fast_path=True,
    mlm_class="BertForMaskedLM", classifier_class="BertForSequenceClassification", config_class="BertConfig",
    config_kwargs=_bert_like))

DISTILBERT = register(Family(
    name="distilbert", model_types=("distilbert",), tokenizer_kind="wordpiece", template="bert", token_types=False,
    blocks_path="distilbert.transformer.layer", head=("classifier",), top_fc=("pre_classifier", "classifier"),
    mlm_class="DistilBertForMaskedLM", classifier_class="DistilBertForSequenceClassification",
    config_class="DistilBertConfig", config_kwargs=_distilbert))

ROBERTA = register(Family(
    name="roberta", model_types=("roberta",), tokenizer_kind="bpe", template="roberta", token_types=False,
    blocks_path="roberta.encoder.layer", head=("classifier.out_proj",), top_fc=("classifier.dense", "classifier.out_proj"),
    mlm_class="RobertaForMaskedLM", classifier_class="RobertaForSequenceClassification", config_class="RobertaConfig",
    config_kwargs=_roberta))

XLM_ROBERTA = register(Family(
    name="xlm-roberta", model_types=("xlm-roberta",), tokenizer_kind="unigram", template="roberta", token_types=False,
    blocks_path="roberta.encoder.layer", head=("classifier.out_proj",), top_fc=("classifier.dense", "classifier.out_proj"),
    mlm_class="XLMRobertaForMaskedLM", classifier_class="XLMRobertaForSequenceClassification",
    config_class="XLMRobertaConfig", config_kwargs=_roberta))

DEBERTA_V2 = register(Family(
    name="deberta-v2", model_types=("deberta-v2",), tokenizer_kind="unigram", template="bert", token_types=True,
    blocks_path="deberta.encoder.layer", head=("classifier",), top_fc=("pooler", "classifier"),
    mlm_class="DebertaV2ForMaskedLM", classifier_class="DebertaV2ForSequenceClassification",
    config_class="DebertaV2Config", config_kwargs=_deberta_v3, normalised_embeddings=_deberta_normalised))

ELECTRA = register(Family(
    name="electra", model_types=("electra",), tokenizer_kind="wordpiece", template="bert", token_types=True,
    blocks_path="electra.encoder.layer", head=("classifier.out_proj",), top_fc=("classifier.dense", "classifier.out_proj"),
    mlm_class="ElectraForMaskedLM", classifier_class="ElectraForSequenceClassification", config_class="ElectraConfig",
    config_kwargs=_electra))

ALBERT = register(Family(
    name="albert", model_types=("albert",), tokenizer_kind="unigram", template="bert", token_types=True,
    blocks_path="albert.encoder.albert_layer_groups", head=("classifier",), top_fc=("albert.pooler", "classifier"),
    blocks_note="ALBERT shares one set of block weights across its layers (num_hidden_groups=1): its one "
                "'block' is every layer, so cascading randomization has a single step",
    mlm_class="AlbertForMaskedLM", classifier_class="AlbertForSequenceClassification", config_class="AlbertConfig",
    config_kwargs=_albert, unshare=_albert_unshared))

MODERNBERT = register(Family(
    name="modernbert", model_types=("modernbert",), tokenizer_kind="bpe", template="bert", token_types=False,
    blocks_path="model.layers", head=("classifier",), top_fc=("head", "classifier"),
    mlm_class="ModernBertForMaskedLM", classifier_class="ModernBertForSequenceClassification",
    config_class="ModernBertConfig", config_kwargs=_modernbert,
    normalised_embeddings=lambda config: True))  # tok_embeddings -> LayerNorm; rotary positions
