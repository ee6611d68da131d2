"""Code shared by several built-in submissions (a submission folder is loaded by file path,
so helpers used by more than one folder live here, not in cross-folder imports).

- :mod:`~harness.explainers.common`: batched model access (sorted by length), log-odds,
  baselines, frozen parameters, the [CLS]-only last layer.
- :mod:`~harness.explainers.loo`: leave-one-out with every removal operator, in probability or
  log-odds space (``leave_one_out``, ``loo_empty``, ``loo_unk``, ``loo_mask``, ``loo_pad``; the ``zero``
  operator is a parameter: on the tiny-bert reference model its maps equal ``loo_pad``'s, since
  that model's [PAD] embedding row is zero (padding_idx)).
- :mod:`~harness.explainers.lime_sampling`: LIME's text sampling, kernel and surrogate fit
  (``lime``, ``lime_bert``).
- :mod:`~harness.explainers.attention`: attention maps, average attention and rollout as pure
  functions of an attention tensor (``average_attention``, ``attention_rollout``, ``scaled_attention``).
- :mod:`~harness.explainers.marginalization`: Input Marginalization (``input_marginalization``,
  ``input_marginalization_renorm``).
- :mod:`~harness.explainers.gradients`: batched input gradients (``integrated_gradients``, ``smoothgrad``).
- :mod:`~harness.explainers.ensemble`: normalisation and the ensemble explainer (``ensemble_all``,
  ``ensemble_top3``).

The runner hashes this package into every run key (``harness.engine.runner.shared_code_hash``), so
editing it recomputes cached attributions.
"""
