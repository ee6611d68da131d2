"""Re-initialising parts of a Hugging Face sequence classifier in place, and restoring it exactly.

- :func:`transformer_blocks`: the model's transformer blocks, bottom (next to the embeddings)
  to top, as the model family's adapter names them (:mod:`harness.models.families`: e.g.
  ``bert.encoder.layer.*``, ``distilbert.transformer.layer.*``, ``transformer.h.*``,
  ``model.layers.*``; ALBERT's one shared layer group).
- :func:`head_modules`: the classification layer (paper 003 sec. 5.3 randomizes "the last
  classification layer": ``classifier``, ``classifier.out_proj``, ``score``).
- :func:`top_fc_modules`: every fully connected layer on top of the encoder (pooler dense,
  ``pre_classifier``, ``classifier``): paper 004's "#Untrained" model.
- :func:`randomized`: a context manager that re-initialises the named modules with the
  model family's initialisation scheme (:meth:`harness.models.families.Family.init_std`; for
  every registered family: ``Linear`` / ``Conv1D`` / ``Embedding`` weights
  ~ N(0, ``config.initializer_range``), biases 0, norm weights 1 and biases 0), drawn
  from a ``torch.Generator`` seeded per module from (``seed``, module name) (so the same seed gives
  the same weights, and a block's weights do not depend on what else is randomized), and
  on exit loads the saved state back and checks, by a checksum of every parameter and buffer,
  that the model is bit-for-bit the original (raises otherwise).
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch


def state_checksum(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer (name, dtype, shape, bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if t.numel() else b"")
    return h.hexdigest()


def transformer_blocks(model: torch.nn.Module) -> list[str]:
    """Module names of the transformer blocks, bottom to top (the model family's adapter,
    :meth:`harness.models.families.Family.blocks`)."""
    from harness.models.families import family_of

    return family_of(model).blocks(model)


def head_modules(model: torch.nn.Module) -> list[str]:
    """The classification layer (:attr:`harness.models.families.Family.head`)."""
    from harness.models.families import family_of

    names = family_of(model).head_modules(model)
    if not names:
        raise ValueError(f"{type(model).__name__}: no classification layer to re-initialise")
    return names


def top_fc_modules(model: torch.nn.Module) -> list[str]:
    """Every fully connected layer above the encoder (:attr:`harness.models.families.Family.top_fc`)."""
    from harness.models.families import family_of

    return family_of(model).top_fc_modules(model)


def module_seed(seed: int, name: str) -> int:
    """The generator seed of one module: depends on (seed, module name) only, so a block gets the
    same random weights whichever other modules are randomized with it (cascading steps nest)."""
    return int.from_bytes(hashlib.sha256(f"{int(seed)}:{name}".encode()).digest()[:8], "little") % (2 ** 63)


def _init_std(model) -> float:
    from harness.models.families import UnknownFamilyError, family_of

    try:
        return family_of(model).init_std(model)
    except UnknownFamilyError:
        return float(getattr(getattr(model, "config", None), "initializer_range", 0.02))


def _is_norm(mod) -> bool:
    """LayerNorm, or a family's own norm layer (RMSNorm, ModernBERT's LayerNorm without bias)."""
    return isinstance(mod, torch.nn.LayerNorm) or (type(mod).__name__.endswith(("RMSNorm", "LayerNorm"))
                                                   and isinstance(getattr(mod, "weight", None), torch.nn.Parameter))


@torch.no_grad()
def reinitialize(model: torch.nn.Module, names: Sequence[str], seed: int) -> list[str]:
    """Re-initialise the named modules in place (see the module docstring); returns the names
    of the parameters written.  Every parameter under the modules must be covered by a known
    layer type (Linear, Embedding, LayerNorm), else ``ValueError``."""
    std = _init_std(model)
    written: list[str] = []
    for name in names:
        gen = torch.Generator(device="cpu").manual_seed(module_seed(seed, name))
        root = model.get_submodule(name)
        covered = set()
        for sub_name, mod in root.named_modules():
            full = f"{name}.{sub_name}" if sub_name else name
            if isinstance(mod, (torch.nn.Linear, torch.nn.Embedding)) or type(mod).__name__ == "Conv1D":
                w = torch.randn(mod.weight.shape, generator=gen, dtype=torch.float32) * std
                mod.weight.copy_(w.to(mod.weight.dtype))
                covered.add(f"{full}.weight")
                if isinstance(mod, torch.nn.Embedding) and mod.padding_idx is not None:
                    mod.weight[mod.padding_idx].zero_()
                if getattr(mod, "bias", None) is not None:
                    mod.bias.zero_()
                    covered.add(f"{full}.bias")
            elif _is_norm(mod):
                if getattr(mod, "weight", None) is not None:
                    mod.weight.fill_(1.0)
                    covered.add(f"{full}.weight")
                if getattr(mod, "bias", None) is not None:
                    mod.bias.zero_()
                    covered.add(f"{full}.bias")
        params = {f"{name}.{p}" for p, _ in root.named_parameters()}
        missing = params - covered
        if missing:
            raise ValueError(f"cannot re-initialise {sorted(missing)[:4]}: unknown layer type")
        written += sorted(params)
    return written


@contextmanager
def randomized(model: torch.nn.Module, names: Sequence[str], seed: int) -> Iterator[list[str]]:
    """Within the block the named modules are re-initialised (seeded); afterwards the model is
    restored exactly (checked by checksum).  Yields the re-initialised parameter names."""
    before = state_checksum(model)
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    was_training = model.training
    try:
        yield reinitialize(model, names, seed)
    finally:
        model.load_state_dict(saved)
        model.train(was_training)
        after = state_checksum(model)
        if after != before:
            raise RuntimeError("the model could not be restored after randomization (checksum differs)")
