"""``attriboard pin`` (:mod:`harness.engine.pin`): a suite's hub references listed with their
pins, resolved to full commits (a table stands in for the hub here), and written back into the
suite file so that it still loads, builds, and the built tasks read exactly the pinned commits."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from harness.cli.main import main
from harness.engine.pin import pin_suite, references
from harness.engine.suite import build_tasks, load_suite, suite_path


def sha(kind: str, hub_id: str, revision=None) -> str:
    return hashlib.sha1(f"{kind}:{hub_id}@{revision}".encode()).hexdigest()


@pytest.fixture
def official(tmp_path):
    p = tmp_path / "official-copy.toml"
    shutil.copy(suite_path("official"), p)
    return p


def test_the_official_suites_references_are_listed_with_their_pins(official):
    refs = references(load_suite(str(official)))
    kinds = {(r.kind, r.hub_id): r for r in refs}
    assert kinds[("dataset", "glue/sst2")].pinned                       # the GLUE commit the tasks pin
    assert kinds[("dataset", "multi_nli")].revision is None
    assert kinds[("dataset", "esnli")].revision is None                 # e-SNLI's hub training pairs
    short = kinds[("model", "distilbert/distilbert-base-uncased-finetuned-sst-2-english")]
    assert short.revision == "714eb0f" and not short.pinned            # a short revision is expanded
    assert ("model", "bert-base-uncased") in kinds and ("model", "FacebookAI/roberta-large-mnli") in kinds


def test_pin_writes_full_commits_that_the_built_tasks_read(official):
    before = official.read_text()
    refs, written = pin_suite(str(official), resolve=sha, write=True)
    assert written and all(r.resolved for r in refs if not r.pinned)
    text = official.read_text()
    assert text.splitlines()[0] == before.splitlines()[0]   # comments and layout kept
    suite = load_suite(str(official))
    tasks = {(t.spec.name, t.spec.model.label): t for t in build_tasks(suite)}
    mnli = tasks[("multinli", "roberta-large-mnli")]
    assert mnli.spec.model.revision == sha("model", "FacebookAI/roberta-large-mnli")
    assert mnli.spec.model.label_map == (2, 1, 0)                        # the label map is kept
    assert mnli.spec.dataset.revision == sha("dataset", "multi_nli")    # what the task reads ...
    entry = next(e for e in suite.tasks if e.task == "multinli")
    assert entry.dataset.revision == entry.params["revision"] == mnli.spec.dataset.revision  # ... as declared
    assert tasks[("esnli", "bert-base-uncased-snli")].spec.dataset.revision == sha("dataset", "esnli")
    ds = tasks[("fragility_sst2", "distilbert-base-uncased-finetuned-sst-2-english")].spec.model
    assert ds.revision == sha("model", "distilbert/distilbert-base-uncased-finetuned-sst-2-english", "714eb0f")
    bert = tasks[("planted_sst2", "bert-base-uncased")].spec.model   # a preset: the same recipe at a commit
    assert (bert.kind, bert.hf_name, bert.revision) == ("hf", "bert-base-uncased", sha("model", "bert-base-uncased"))
    # pinned now: a second pin resolves nothing and changes nothing
    calls = []
    refs, written = pin_suite(str(official), resolve=lambda *a: calls.append(a) or sha(*a), write=True)
    assert not written and not calls and all(r.pinned for r in refs) and official.read_text() == text


def test_nothing_is_written_unless_every_reference_resolves(official, capsys):
    def offline(kind, hub_id, revision=None):
        if hub_id == "multi_nli":
            raise ConnectionError("the hub is unreachable")
        return sha(kind, hub_id, revision)

    before = official.read_text()
    refs, written = pin_suite(str(official), resolve=offline, write=True)
    assert not written and official.read_text() == before
    (bad,) = [r for r in refs if r.error]
    assert bad.hub_id == "multi_nli" and "ConnectionError: the hub is unreachable" in bad.error
    # a resolver that answers something other than a commit is refused too
    refs, written = pin_suite(str(official), resolve=lambda *a: "main", write=True)
    assert not written and all("not a 40-hex commit" in r.error for r in refs if not r.pinned)
    # the command offline (HF_HUB_OFFLINE, as in these tests): every open reference reported, exit 1
    assert main(["pin", "--suite", str(official)]) == 1
    out = capsys.readouterr().out
    assert "tasks[2] dataset multi_nli: unpinned; not resolved (OfflineModeIsEnabled" in out
    assert "tasks[0] dataset glue/sst2: pinned at bcdcba79" in out and "nothing written" in out
