"""Wall time of the grid: serial vs ``--jobs 2`` (vs ``--executor ray --jobs 2``).

Runs ``attriboard run`` as a user would (sandboxed workers, the default isolation), in a
subprocess. The reference models and masked LMs are trained once beforehand, into a shared
cache that every measured run links to. Each measured run gets a fresh attribution cache and
results folder, so it explains everything. The records of the runs are compared: run keys,
scores (timings in their details aside), per-example values and pass counts must be identical.

``ATTRIBOARD_BENCH_GRID``:

- ``small`` (default): the five default tasks with ``--n-eval 16``, six submissions.
- ``default``: the full default run (every task, every built-in submission; ~20 minutes serial
  on 2 cores).

``ATTRIBOARD_BENCH_RAY=1`` also times ``--executor ray --jobs 2``.

``extra_info``: ``wall_s`` per mode, and ``ratio_vs_serial`` for the parallel modes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GRID = os.environ.get("ATTRIBOARD_BENCH_GRID", "small")
ARGS = {"small": ["--n-eval", "16", "--submissions", "random", "gradient", "integrated_gradients", "lime",
                  "leave_one_out", "attention_rollout"],
        "default": []}[GRID]
MODES = {"serial": [], "jobs2": ["--jobs", "2"]}
if os.environ.get("ATTRIBOARD_BENCH_RAY"):
    MODES["ray2"] = ["--executor", "ray", "--jobs", "2"]
WALL: dict[str, float] = {}
RECORDS: dict[str, dict] = {}


def _env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("grid-models")
    cmd = [sys.executable, "-m", "harness.cli.main", "run", *ARGS[:2], "--submissions", "random",
           "--isolation", "none", "--no-leaderboard", "--results-dir", str(cache / "warm-results"),
           "--cache-dir", str(cache)]
    subprocess.run(cmd, cwd=ROOT, env=_env(), check=True, capture_output=True)
    return cache


def _fresh_cache(model_cache: Path, dest: Path) -> Path:
    dest.mkdir()
    for entry in model_cache.iterdir():
        if entry.name not in ("attributions", "warm-results"):
            (dest / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    return dest


def _untimed(obj):
    """A record part without its timings (score details such as ``evaluate_seconds``)."""
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items() if not str(k).endswith("_seconds")}
    if isinstance(obj, (list, tuple)):
        return [_untimed(v) for v in obj]
    return obj


def _records(results: Path) -> dict:
    out = {}
    for p in sorted(results.rglob("*.json")):
        r = json.loads(p.read_text())
        out[str(p.relative_to(results))] = _untimed((r["status"], r.get("run_key"), r.get("scores"),
                                                     r.get("per_example"), r.get("cost")))
    return out


@pytest.mark.parametrize("mode", list(MODES))
def test_grid_wall_time(benchmark, mode, model_cache, tmp_path):
    cache = _fresh_cache(model_cache, tmp_path / "cache")
    cmd = [sys.executable, "-m", "harness.cli.main", "run", *ARGS, *MODES[mode], "--no-leaderboard",
           "--results-dir", str(tmp_path / "results"), "--cache-dir", str(cache)]

    def once():
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True)
        assert out.returncode in (0, 1), out.stderr[-3000:]
        WALL[mode] = time.perf_counter() - t0

    benchmark.pedantic(once, rounds=1, iterations=1)
    RECORDS[mode] = _records(tmp_path / "results")
    benchmark.extra_info.update(grid=GRID, wall_s=round(WALL[mode], 2), records=len(RECORDS[mode]))
    if mode != "serial" and "serial" in WALL:
        benchmark.extra_info["ratio_vs_serial"] = round(WALL[mode] / WALL["serial"], 3)
        assert RECORDS[mode] == RECORDS["serial"], "parallel records differ from the serial run's"
    print(f"\n[grid {GRID}] {mode}: {WALL[mode]:.1f}s"
          + (f" ({WALL[mode] / WALL['serial']:.2f}x serial)" if mode != "serial" and "serial" in WALL else ""))
