"""``attriboard pin --suite NAME``: the hub references of a suite, pinned to commits.

A suite names hub datasets (``multi_nli``), pre-trained encoders (``hf:roberta-base``) and
published checkpoints (``checkpoint:textattack/bert-base-uncased-MNLI#1,2,0``); a reference
without a revision reads whatever the hub serves that day.  :func:`references` lists them with
their pins; :func:`pin_suite` resolves each unpinned (or short) one to its full commit through
``huggingface_hub`` and, with ``write``, rewrites the suite file in place (comments and layout
kept; the edited file must load and build again, else nothing is written):

- a model spec gets ``@<commit>`` (a preset such as ``bert-base-uncased`` becomes
  ``hf:bert-base-uncased@<commit>``, the same recipe at a fixed commit);
- a hub dataset gets ``revision = "<commit>"`` in its ``dataset`` table and, where the task
  reads the hub at its ``revision`` parameter (MultiNLI, e-SNLI), the same in ``params``, so the
  declaration and what the task reads stay one (:func:`harness.engine.suite.build_tasks` checks).

Offline (no hub), each reference is reported as unresolved with the hub's error, nothing is
written, and the command exits 1.  The resolver is a parameter, so tests pin with a table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from harness.engine.suite import Suite, SuiteError, build_tasks, load_suite, suite_path

FULL_SHA = re.compile(r"^[0-9a-f]{40}$")

#: (kind "model" or "dataset", hub id, revision or None) -> the full commit sha
Resolver = Callable[[str, str, Optional[str]], str]


@dataclass
class Reference:
    entry: int
    """The index of the suite's task entry."""
    kind: str
    """``model`` or ``dataset``."""
    hub_id: str
    revision: Optional[str]
    spec: str = ""
    """The model spec as the suite writes it (models only)."""
    resolved: Optional[str] = None
    error: str = ""

    @property
    def pinned(self) -> bool:
        return bool(self.revision) and bool(FULL_SHA.match(self.revision))


def references(suite: Suite) -> list[Reference]:
    """The suite's hub references (local folders, generated data and tiny models are none)."""
    from harness.models.reference import recipe_from

    out = []
    for i, e in enumerate(suite.tasks):
        d = e.dataset
        if d.source == "hub" or (d.source == "url" and "revision" in _task_params(e.task)):
            out.append(Reference(i, "dataset", d.id, d.revision))
        for m in e.models:
            r = recipe_from(m)
            if r.kind == "hf" and not Path(r.hf_name).exists():
                out.append(Reference(i, "model", r.hf_name, r.revision, spec=m))
            elif r.kind == "checkpoint" and not Path(r.checkpoint).exists():
                out.append(Reference(i, "model", r.checkpoint, r.revision, spec=m))
    return out


def _task_params(task: str) -> list[str]:
    from harness.engine.task import task_parameters

    return task_parameters(task) or []


def hub_resolver(kind: str, hub_id: str, revision: Optional[str]) -> str:
    """The full commit of ``hub_id`` at ``revision`` (None: the default branch) on the hub."""
    from huggingface_hub import HfApi

    api = HfApi()
    info = api.model_info(hub_id, revision=revision) if kind == "model" else api.dataset_info(hub_id, revision=revision)
    if not info.sha:
        raise RuntimeError(f"the hub gave no commit for {kind} {hub_id}")
    return info.sha


def pin_suite(name_or_path: str, resolve: Resolver = hub_resolver, write: bool = False) -> tuple[list[Reference], bool]:
    """Resolve the suite's references that are not pinned to a full commit; with ``write`` (and
    every reference resolved) rewrite the suite file.  Returns (references, written)."""
    path = suite_path(name_or_path)
    suite = load_suite(name_or_path)
    refs = references(suite)
    for ref in refs:
        if ref.pinned:
            continue
        try:
            sha = resolve(ref.kind, ref.hub_id, ref.revision)
        except Exception as e:  # noqa: BLE001 - reported per reference (offline, unknown id, no access)
            ref.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()
            continue
        if not FULL_SHA.match(str(sha)):
            ref.error = f"the resolver gave {sha!r}, not a 40-hex commit"
            continue
        ref.resolved = sha
    todo = [r for r in refs if not r.pinned]
    if not write or not todo or any(r.resolved is None for r in todo):
        return refs, False
    text = path.read_text()
    new = _rewrite(text, suite, todo)
    tmp = path.with_name(path.name + ".pinning")
    tmp.write_text(new)
    try:
        build_tasks(load_suite(str(tmp)))  # the pinned file must still load and build
    except SuiteError:
        tmp.unlink()
        raise
    tmp.replace(path)
    return refs, True


def _rewrite(text: str, suite: Suite, todo: list[Reference]) -> str:
    from harness.models.reference import recipe_from

    blocks = _entry_blocks(text)
    if len(blocks) != len(suite.tasks):
        raise SuiteError(f"suite {suite.name}: cannot find its {len(suite.tasks)} [[tasks]] blocks to edit")
    pieces = [text[s:e] for s, e in blocks]
    for ref in todo:
        block = pieces[ref.entry]
        if ref.kind == "model":
            r = recipe_from(ref.spec)
            if r.kind == "checkpoint":
                labels = ",".join(map(str, r.label_map)) if r.label_map is not None else ""
                pinned = f"checkpoint:{r.checkpoint}@{ref.resolved}" + (f"#{labels}" if labels else "")
            else:
                pinned = f"hf:{r.hf_name}@{ref.resolved}"
            quoted = f'"{ref.spec}"'
            if block.count(quoted) != 1:
                raise SuiteError(f"suite {suite.name}: tasks[{ref.entry}]: model {ref.spec!r} is not written once as "
                                 f"{quoted}: pin it by hand")
            block = block.replace(quoted, f'"{pinned}"')
        else:
            block = _set_in_inline_table(block, "dataset", "revision", ref.resolved, suite.name, ref.entry)
            if "revision" in _task_params(suite.tasks[ref.entry].task):
                block = _set_in_inline_table(block, "params", "revision", ref.resolved, suite.name, ref.entry,
                                             create=True)
        pieces[ref.entry] = block
    out, last = [], 0
    for (s, e), piece in zip(blocks, pieces):
        out += [text[last:s], piece]
        last = e
    return "".join(out) + text[last:]


def _entry_blocks(text: str) -> list[tuple[int, int]]:
    """(start, end) of each ``[[tasks]]`` block: up to the next table header or the end."""
    heads = [m.start() for m in re.finditer(r"(?m)^\[\[tasks\]\]\s*$", text)]
    tables = [m.start() for m in re.finditer(r"(?m)^\[", text)]
    out = []
    for h in heads:
        nxt = [t for t in tables if t > h]
        out.append((h, nxt[0] if nxt else len(text)))
    return out


def _set_in_inline_table(block: str, table: str, key: str, value: str, suite: str, entry: int,
                         create: bool = False) -> str:
    """``key = "value"`` set in the block's one-line ``table = { ... }`` (added at its end, or
    replaced), or, with ``create``, a new one-line table under the block's header."""
    m = re.search(rf"(?m)^{table}\s*=\s*\{{(.*)\}}[ \t]*$", block)
    if m is None:
        if not create:
            raise SuiteError(f"suite {suite}: tasks[{entry}]: no one-line `{table} = {{ ... }}` to pin: pin it by hand")
        header_end = block.index("\n") + 1
        return block[:header_end] + f'{table} = {{ {key} = "{value}" }}\n' + block[header_end:]
    inner = m.group(1)
    pair = re.compile(rf'((?:^|,)\s*{key}\s*=\s*)"[^"]*"')
    if pair.search(inner):
        inner = pair.sub(lambda g: f'{g.group(1)}"{value}"', inner, count=1)
    elif inner.strip():
        inner = f'{inner.rstrip()}, {key} = "{value}" '
    else:
        inner = f' {key} = "{value}" '
    return block[:m.start(1)] + inner + block[m.end(1):]


def render(refs: list[Reference], written: bool) -> str:
    lines = []
    for r in refs:
        what = f"tasks[{r.entry}] {r.kind} {r.hub_id}"
        if r.pinned:
            lines.append(f"{what}: pinned at {r.revision}")
        elif r.resolved:
            lines.append(f"{what}: {'unpinned' if not r.revision else 'short revision ' + r.revision} -> {r.resolved}")
        else:
            lines.append(f"{what}: {'unpinned' if not r.revision else 'short revision ' + r.revision}; "
                         f"not resolved ({r.error})")
    open_ = [r for r in refs if not r.pinned]
    failed = [r for r in open_ if r.resolved is None]
    if not open_:
        lines.append(f"all {len(refs)} hub reference(s) pinned to full commits")
    elif written:
        lines.append(f"pinned {len(open_)} reference(s); the suite file is rewritten (commit it with a new version)")
    elif failed:
        lines.append(f"{len(failed)} of {len(open_)} unpinned reference(s) could not be resolved (the hub is needed): "
                     "nothing written")
    else:
        lines.append(f"{len(open_)} reference(s) resolved; --write rewrites the suite file with them")
    return "\n".join(lines)
