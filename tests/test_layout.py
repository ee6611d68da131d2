"""The layout: the worker's code set comes from package membership, and no module of
``harness`` or ``tasks`` takes part in an import cycle (lazy, function-level imports count)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

from harness.sandbox import membership
from harness.sandbox.worker import BLOCKED_MODULES, PRELOAD

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    out = {}
    for top in ("harness", "tasks"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in its code)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # annotations only: no import at run time
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    pkg = pkg[: len(pkg) - node.level + 1]
                    base = ".".join([*pkg, base] if base else pkg)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                while t and t not in mods:  # harness.x.y.Name -> harness.x.y
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + "."):  # a package's own __init__ is no edge
                    graph[name].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_worker_code_set_comes_from_package_membership():
    members = membership.harness_members()
    allowed = set(membership.WORKER_PACKAGES) | set(membership.WORKER_MODULES)
    assert allowed <= set(members)
    # every other harness member, every task package and the harness end of the sandbox are refused
    assert set(BLOCKED_MODULES) == {"tasks", *(set(members) - allowed), *membership.HARNESS_END}
    assert {"harness.engine", "harness.metrics", "harness.board", "harness.cli"} <= set(BLOCKED_MODULES)
    for mod in PRELOAD:
        if mod.startswith("harness"):
            assert not any(mod == b or mod.startswith(b + ".") for b in BLOCKED_MODULES), mod
            assert any(mod == a or mod.startswith(a + ".") for a in allowed), mod
    paths = membership.worker_paths(str(ROOT))
    assert all(os.path.exists(p) for p in paths), paths
    assert not any(p.endswith(("engine", "metrics", "board", "cli")) for p in paths)


def test_run_keys_cover_the_code_a_submission_runs_on():
    paths = membership.result_code_paths(str(ROOT))
    assert str(ROOT / "harness" / "models") in paths and str(ROOT / "harness" / "protocols.py") in paths
    assert str(ROOT / "harness" / "sandbox") not in paths
    assert set(paths) < set(membership.worker_paths(str(ROOT)))
