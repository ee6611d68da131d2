"""The model-family matrix (in the style of captum's ``test_config.py``): every registered family
(tiny random model from a config, tokenizer of the family's type trained in memory) x every
built-in explainer x the conformance suite; word alignment against the tokenizer's own call;
IG against captum's ``LayerIntegratedGradients``; attention access; randomization of exactly
the intended blocks; decoder pooling under padding.

Adding a family: one module in ``harness/models/families`` plus its row in :data:`FAMILIES`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.models.families import family_of, get_family, load_all
from harness.testing import TINY_PAIRS, TINY_SENTENCES, tiny_bundle, tiny_family_model

#: family -> (tokenizer type, first token of a single-sentence input or None, decoder)
FAMILIES = {
    "bert": ("wordpiece", "[CLS]", False),
    "distilbert": ("wordpiece", "[CLS]", False),
    "roberta": ("bpe", "<s>", False),
    "xlm-roberta": ("unigram", "<s>", False),
    "deberta-v2": ("unigram", "[CLS]", False),
    "electra": ("wordpiece", "[CLS]", False),
    "albert": ("unigram", "[CLS]", False),
    "modernbert": ("bpe", "[CLS]", False),
    "gpt2": ("bpe", None, True),
    "llama": ("unigram", "<s>", True),
}

#: text with punctuation, accents, numbers and the planted / rationale-style words
ALIGN_ROWS = [
    (tuple("café , naïve 42 résumé !".split()),),
    (tuple("don't stop - 3.5 stars".split()),),
    (tuple("the film was good positive".split()),),
    (tuple("it's 100% great ; really ?".split()),),
]
ALIGN_PAIRS = [(tuple("a man plays guitar".split()), tuple("a person plays music , loudly".split())),
               (tuple("two kids play outside".split()), tuple("kids are indoors".split()))]


def test_the_matrix_covers_every_registered_family():
    assert set(FAMILIES) == set(load_all()), "every registered family needs its row in FAMILIES"


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    return request.param


def _own_call(tokenizer, rows):
    n_seg = len(rows[0])
    args = [[list(r[k]) for r in rows] for k in range(n_seg)]
    return tokenizer(*args, is_split_into_words=True, padding=True, truncation=False, return_tensors="pt",
                     padding_side="right")


def test_word_alignment_equals_the_tokenizer_on_every_family(family):
    from harness.models.encoding import encode
    from harness.models.tokenizers import subword_policy

    kind, first, _ = FAMILIES[family]
    tok, model = tiny_family_model(family)
    assert subword_policy(tok).kind == kind
    assert family_of(model).name == family
    for rows in (ALIGN_ROWS, ALIGN_PAIRS):
        enc, own = encode(tok, rows, 64), _own_call(tok, rows)
        assert torch.equal(enc.input_ids, own["input_ids"])
        assert torch.equal(enc.attention_mask, own["attention_mask"])
        for i, r in enumerate(rows):
            words = [w for s in r for w in s]
            if first is not None:
                assert tok.convert_ids_to_tokens(int(enc.input_ids[i, 0])) == first
            # each word's tokens, in order, spell the (normalised) word; every word has tokens
            for j, w in enumerate(words):
                toks = [int(enc.input_ids[i, t]) for t, x in enumerate(enc.word_ids[i]) if x == j]
                assert toks, (family, w)
                spelled = tok.decode(toks).strip().replace(" ", "")
                norm = tok.backend_tokenizer.normalizer
                assert spelled == (norm.normalize_str(w) if norm is not None else w), (family, w, spelled)


#: the families' own hub tokenizer classes
HUB_TOKENIZERS = ["BertTokenizerFast", "RobertaTokenizerFast", "GPT2TokenizerFast", "DebertaV2TokenizerFast",
                  "XLMRobertaTokenizerFast", "AlbertTokenizerFast", "LlamaTokenizerFast"]


def hub_tokenizer(cls_name: str, tmp_path):
    """A tokenizer trained in memory, wrapped in the hub class ``cls_name`` (byte-level BPE
    without ``add_prefix_space``, as a hub checkpoint ships it), saved and reloaded through
    :func:`harness.models.reference.load_tokenizer`."""
    import transformers

    from harness.models.reference import load_tokenizer
    from harness.models.tokenizers import train_tokenizer
    from harness.testing import tiny_texts

    kind = {"BertTokenizerFast": "wordpiece", "RobertaTokenizerFast": "bpe", "GPT2TokenizerFast": "bpe"}.get(
        cls_name, "unigram")
    template = {"BertTokenizerFast": "bert", "RobertaTokenizerFast": "roberta", "GPT2TokenizerFast": "gpt2",
                "LlamaTokenizerFast": "llama", "XLMRobertaTokenizerFast": "roberta"}.get(cls_name, "bert")
    base = train_tokenizer(kind, tiny_texts() * 5, template, 150)
    specials = {k: getattr(base, k) for k in ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token",
                                                "bos_token", "eos_token") if getattr(base, k, None)}
    extra = {"add_prefix_space": False} if kind == "bpe" else {}
    tok = getattr(transformers, cls_name)(tokenizer_object=base.backend_tokenizer, **specials, **extra)
    tok.save_pretrained(tmp_path / "tok")
    return load_tokenizer(tmp_path / "tok")


@pytest.mark.parametrize("cls_name", HUB_TOKENIZERS)
def test_alignment_with_the_hub_tokenizer_classes(cls_name, tmp_path):
    """The families' own tokenizer classes (as a hub checkpoint loads them), saved and reloaded
    through :func:`harness.models.reference.load_tokenizer`: the harness's encoding equals the
    tokenizer's own call, and every word keeps its word-start marker."""
    from harness.models.encoding import encode
    from harness.models.tokenizers import subword_policy

    loaded = hub_tokenizer(cls_name, tmp_path)
    policy = subword_policy(loaded)
    for rows in (ALIGN_ROWS, ALIGN_PAIRS):
        enc, own = encode(loaded, rows, 64), _own_call(loaded, rows)
        assert torch.equal(enc.input_ids, own["input_ids"])
        for i, r in enumerate(rows):
            firsts = {}
            for t, w in enumerate(enc.word_ids[i]):
                if w is not None and w not in firsts:
                    firsts[w] = loaded.convert_ids_to_tokens(int(enc.input_ids[i, t]))
            assert len(firsts) == sum(len(s) for s in r)
            if policy.kind in ("bpe", "unigram"):
                assert all(t.startswith(policy.marker) for t in firsts.values()), (cls_name, firsts)


def _builtin_names():
    from harness.core.submission import discover

    return list(discover())


@pytest.mark.parametrize("name", _builtin_names())
def test_every_builtin_explainer_passes_the_conformance_suite_on_every_family(name, family):
    from harness.core.submission import discover
    from harness.engine.validation import validate

    report = validate(discover().get(name), family=family)
    assert report.passed, report.render()
    # only these are declared not applicable, each for its stated reason
    expected = NOT_APPLICABLE.get((name, family))
    assert (report.not_applicable is None) == (expected is None), (report.not_applicable, expected)
    if expected:
        assert expected in report.not_applicable


#: (explainer, family) -> part of the reason it is not defined there
NOT_APPLICABLE = {
    **{("loo_mask", f): "has no mask token" for f in ("gpt2", "llama")},
    **{(e, f): "identically zero" for e in ("gradient_x_input", "ensemble_all") for f in ("deberta-v2", "modernbert")},
}


def _lig_reference(bundle, batch, baseline_ids):
    from captum.attr import LayerIntegratedGradients

    def forward(input_ids, attention_mask, token_type_ids=None):
        return bundle.proba(input_ids, attention_mask, token_type_ids)

    lig = LayerIntegratedGradients(forward, bundle.model.get_input_embeddings())
    extra = (batch.attention_mask,) + ((batch.token_type_ids,) if batch.token_type_ids is not None else ())
    attr = lig.attribute(batch.input_ids, baselines=baseline_ids, target=batch.targets, n_steps=50,
                         additional_forward_args=extra, internal_batch_size=None)
    return attr.sum(-1).detach().double().numpy()


def test_integrated_gradients_equal_captum_on_every_family(family):
    from harness.explainers.common import pad_baseline
    from harness.explainers.gradients import integrated_gradients

    bundle = tiny_bundle(sensitive=True, family=family, mlm=False)
    bundle.model.double()
    batch = bundle.make_batch(TINY_SENTENCES[:4])
    baseline = pad_baseline(batch, bundle.pad_token_id)
    ours, _gap = integrated_gradients(bundle, batch, baseline, n_steps=50)
    ref = _lig_reference(bundle, batch, baseline)
    real = batch.attention_mask.bool().numpy()
    assert np.abs(ours[real]).max() > 1e-8, "degenerate: all attributions zero"
    np.testing.assert_allclose(ours[real], ref[real], atol=1e-6, rtol=0)


def test_attention_explainers_work_on_every_family(family):
    from harness.explainers.attention import forward_with_attentions

    bundle = tiny_bundle(family=family, mlm=False)
    impl = bundle.model.config._attn_implementation
    batch = bundle.make_batch(TINY_SENTENCES[:3])
    _proba, atts = forward_with_attentions(bundle, batch)
    T = batch.input_ids.shape[1]
    assert len(atts) == bundle.model.config.num_hidden_layers and all(a.shape[-2:] == (T, T) for a in atts)
    real = batch.attention_mask.bool()
    rows = atts[0].sum(-1)  # each real query row is a distribution
    assert torch.allclose(rows[:, 0][real], torch.ones_like(rows[:, 0][real]), atol=1e-5)
    assert bundle.model.config._attn_implementation == impl, "the attention implementation was not put back"


def test_attention_refused_clearly_for_a_family_without_it():
    from dataclasses import replace

    from harness.explainers.attention import forward_with_attentions

    bundle = tiny_bundle(mlm=False)
    no_attention = replace(get_family("bert"), attention=False, attention_note="test family")
    with pytest.raises(NotImplementedError, match="attention explainers are not available for bert models"):
        with no_attention.attentions(bundle.model):
            pass
    forward_with_attentions(bundle, bundle.make_batch(TINY_SENTENCES[:1]))  # the real adapter works


def test_randomization_changes_exactly_the_intended_blocks_on_every_family(family):
    from tasks.sanity.randomize import head_modules, randomized, top_fc_modules, transformer_blocks

    _tok, model = tiny_family_model(family)
    blocks = transformer_blocks(model)
    assert blocks and all(model.get_submodule(b) is not None for b in blocks)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for names in ([blocks[-1]], head_modules(model), top_fc_modules(model)):
        with randomized(model, names, seed=3) as written:
            after = model.state_dict()
            changed = {k for k in before if not torch.equal(before[k], after[k])}
            prefixes = tuple(n + "." for n in names)
            assert changed and all(k.startswith(prefixes) for k in changed), (names, sorted(changed)[:5])
            # every parameter under the modules was written (a layer type the scheme does not know is refused)
            under = {k for k, _ in model.named_parameters() if k.startswith(prefixes)}
            assert set(written) == under
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_decoder_pooling_is_right_under_padding_and_with_embeddings(family):
    bundle = tiny_bundle(sensitive=True, family=family, mlm=False)
    batch = bundle.make_batch(TINY_SENTENCES)
    with torch.no_grad():
        padded = bundle.logits(batch.input_ids, batch.attention_mask)
        via_embeds = bundle.logits(inputs_embeds=bundle.embeddings(batch.input_ids), attention_mask=batch.attention_mask)
        for i in range(len(batch)):
            L = int(batch.attention_mask[i].sum())
            alone = bundle.logits(batch.input_ids[i:i + 1, :L], batch.attention_mask[i:i + 1, :L])
            torch.testing.assert_close(padded[i:i + 1], alone, atol=1e-5, rtol=1e-5)
            # left padding: the same logits (pooled at the last real token, positions from the mask)
            pad = batch.input_ids.shape[1] - L
            left_ids = torch.cat([batch.input_ids.new_full((1, pad), bundle.pad_token_id), batch.input_ids[i:i + 1, :L]], 1)
            left_mask = torch.cat([torch.zeros(1, pad, dtype=torch.long), torch.ones(1, L, dtype=torch.long)], 1)
            torch.testing.assert_close(bundle.logits(left_ids, left_mask), alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded, via_embeds, atol=1e-6, rtol=1e-6)
    assert len({round(float(x), 4) for x in padded[:, 0]}) > 1, "degenerate: every input has the same logits"


def test_a_family_mlm_with_subword_vocabulary_proposes_whole_words():
    """A RoBERTa masked LM (byte-level BPE) and a SentencePiece one: fills are whole words, without
    the word-start marker, never continuation pieces or special tokens."""
    import transformers

    from harness.models.mlm import WordMaskedLM
    from harness.models.tokenizers import subword_policy, train_tokenizer
    from harness.testing import tiny_texts

    for kind, template, cfg_cls, mlm_cls in (("bpe", "roberta", "RobertaConfig", "RobertaForMaskedLM"),
                                             ("unigram", "bert", "DebertaV2Config", "DebertaV2ForMaskedLM")):
        tok = train_tokenizer(kind, tiny_texts() * 5, template, 150)
        cfg = getattr(transformers, cfg_cls)(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=32, max_position_embeddings=70,
                                             pad_token_id=tok.pad_token_id)
        torch.manual_seed(0)
        model = getattr(transformers, mlm_cls)(cfg)
        mlm = WordMaskedLM(model, tok, "t", "t", "h", max_length=64)
        policy = subword_policy(tok)
        fills = mlm.top_fills([TINY_SENTENCES[0], TINY_PAIRS[0]], [[1, 3], [0, 5]], k=20)
        vocab_words = {policy.word(t, tok) for t in tok.get_vocab() if policy.starts_word(t)}
        for per_input in fills:
            for cands in per_input:
                assert len(cands) == 20
                for word, p in cands:
                    assert word and not word.startswith(policy.marker) and word in vocab_words, (kind, word)
                    assert word not in tok.all_special_tokens and 0 < p <= 1


def test_a_sandboxed_worker_explains_the_unusual_families():
    """The worker receives a model of the families with harness-side changes (the decoders' pooled
    forward) or unusual modules (ModernBERT, DeBERTa) pickled, and explains it exactly as the
    harness process does.  (Each family's model classes start their own fork server, ~5 s each;
    every family ran sandboxed on every task in the session notes' check.)"""
    from harness.core.submission import discover
    from harness.engine.validation import _maps
    from harness.sandbox.isolation import open_explainer

    sub = discover().get("integrated_gradients")
    for family in ("gpt2", "llama", "modernbert", "deberta-v2"):
        bundle = tiny_bundle(sensitive=True, family=family, mlm=False)
        batch = bundle.make_batch(TINY_SENTENCES[:3])
        here = _maps(sub.instantiate(), bundle, batch)
        with open_explainer(sub, bundle=bundle) as ex:
            there = _maps(ex, bundle, batch)
        for a, b in zip(there, here):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9, err_msg=family)
        assert max(np.abs(m).max() for m in here) > 0, family


def test_the_fused_fast_path_is_bert_only(family):
    """BERT's adapter declares the fused kernels as its fast path (kept exact against the plain
    model in tests/test_zoo.py); every other family runs the generic path (checked above)."""
    from harness.explainers.common import fused_layers, supports_cls_only, supports_shifted_embeddings

    _tok, model = tiny_family_model(family)
    assert get_family(family).fast_path == (family == "bert")
    assert supports_cls_only(model) == supports_shifted_embeddings(model) == (family == "bert")
    with fused_layers(model) as on:
        assert on == (family == "bert")
