"""Shared code of the NLI tasks (e-SNLI, MultiNLI): the generated NLI corpus and the common loaders; not a task itself."""
