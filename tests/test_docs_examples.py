"""The gradient and attention explainers of docs/SUBMITTING.md are valid submissions: each code
block marked ``# docs-example: <name> <entry point>`` is written to a folder with a
``submission.toml`` and must pass the conformance suite, so the documentation cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.core.submission import load_submission
from harness.engine.validation import validate

DOC = Path(__file__).resolve().parents[1] / "docs" / "SUBMITTING.md"
BLOCK = re.compile(r"```python\n# docs-example: (\S+) (\S+)\n(.*?)```", re.S)
EXAMPLES = BLOCK.findall(DOC.read_text())


def test_the_doc_has_a_gradient_and_an_attention_example():
    assert [name for name, _, _ in EXAMPLES] == ["grad_times_input_l1", "last_layer_attention"]


@pytest.mark.parametrize("name, entry, code", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_doc_example_passes_the_conformance_suite(tmp_path, name, entry, code):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "explainer.py").write_text(code)
    (folder / "submission.toml").write_text(
        f'name = "{name}"\nversion = "0.1.0"\nauthors = ["docs"]\npaper = "docs/SUBMITTING.md"\n'
        f'license = "Apache-2.0"\nentry_point = "{entry}"\n')
    report = validate(load_submission(folder), time_budget_s=120.0, isolation="none")
    assert report.passed, report.render()
