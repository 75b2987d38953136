"""The `metabench` command (also `python -m bench`): parse, call, print.

User errors (bad names, bad config, unusable folders, missing data) print one line `metabench: error: ...`
and exit 2; a run whose cells failed exits 1 after writing every finished cell.
"""
from __future__ import annotations

import argparse
import fnmatch
import re
import signal
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED_CELLS, EXIT_USAGE = 0, 1, 2
MAX_SEEDS = 10_000
LIST_KINDS = ("algorithms", "benchmarks", "suites", "profiles", "figures")
CONFIG_HELP = ("a configuration overlay merged over the packaged benchmarks.yaml (repeatable; later files win): "
               "new suites, benchmarks, profiles, algorithm defaults")


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line like every other user error (no usage block), exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def _version_line() -> str:
    import bench

    where = Path(bench.__file__).resolve().parent.parent
    return f"metabench {bench.__version__} from {where} (python {sys.version.split()[0]})"


def _seed_list(text: str) -> list[int]:
    """`--seed 3`, an inclusive range `--seed 0-4`, a list `--seed 0,2,5`, or a mix `0-2,7`."""
    seeds: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise argparse.ArgumentTypeError(f"--seed {text!r}: expected a seed, an increasing range or a list of "
                                             f"them, e.g. 3, 0-4 or 0,2,5")
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        if last >= 2**63 or last - first >= MAX_SEEDS:  # a typo must not build a 100-million-cell grid
            raise argparse.ArgumentTypeError(f"--seed {text!r}: seeds are 0 to 2**63-1, at most {MAX_SEEDS} at "
                                             f"once; e.g. 3, 0-4 or 0,2,5")
        seeds += range(first, last + 1)
    return seeds


def _positive_int(text: str) -> int:
    """--jobs N: a whole number >= 1 (0 or a negative number used to fall back silently to something else)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="metabench", description="Meta-learning benchmark and reproduction suite.")
    p.add_argument("--version", action="version", version=_version_line())
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors and failed cells")
    # the same flag after the subcommand (`metabench run -q ...`); SUPPRESS keeps a global -q from being reset
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="print only errors and failed cells")
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", parents=[quiet],
                        help="list algorithms, benchmarks, suites, profiles or figures (all of them with no argument; "
                             "wildcards allowed)")
    ls.add_argument("what", nargs="?", metavar="|".join(LIST_KINDS),
                    help="what to list (default: everything); any other word is a pattern over every list")
    ls.add_argument("pattern", nargs="?", default="*")
    ls.add_argument("--config", action="append", default=[], metavar="FILE", help=CONFIG_HELP)
    ls.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                    help="import MODULE first so the algorithms it registers are listed too")
    ls.add_argument("--format", choices=["table", "json", "names"], default="table",
                    help="table (default), json, or names (one per line, for scripts and shell completion)")

    run = sub.add_parser("run", parents=[quiet], help="train and evaluate a suite or a grid of cells")
    run.add_argument("suite", nargs="?", help="a suite name from benchmarks.yaml (default: 'default')")
    run.add_argument("--benchmark", action="append", default=[], metavar="B", help="benchmark name or wildcard")
    run.add_argument("--algorithm", action="append", default=[], metavar="A", help="algorithm name or wildcard")
    run.add_argument("--seed", action="extend", type=_seed_list, default=[], metavar="S",
                     help="seed(s): 3, a range 0-4, a list 0,2,5; repeatable (default: the suite's, else 0)")
    run.add_argument("--profile", choices=None,
                     help="smoke | cpu | gate | paper, or one an overlay defines (`metabench list profiles`; "
                          "default: the suite's, else cpu)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                     help="override a value, e.g. maml.inner_lr=0.1, sine-k5.test_query=50, budget.meta_iters=100")
    run.add_argument("--config", action="append", default=[], metavar="FILE", help=CONFIG_HELP)
    run.add_argument("--data-root", help="datasets folder (default: $METABENCH_DATA, else ~/.cache/metabench/data)")
    run.add_argument("--out", type=Path, help="write the run's files into this folder (default results/runs/<run-id>); "
                                              "a non-empty folder must hold a run of the same cells, or use --force")
    run.add_argument("--force", action="store_true",
                     help="use a non-empty --out folder anyway: its contents are moved aside to DIR.old-<time>")
    run.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default cpu); checked before any cell "
                                                     "starts")
    run.add_argument("--executor", default="local", choices=["local", "ray"],
                     help="local (default; --jobs N for a process pool) or ray")
    run.add_argument("--address", help="with --executor ray: 'auto' or HOST:PORT of an existing Ray cluster "
                                       "(default: start a local Ray instance)")
    run.add_argument("--jobs", type=_positive_int, default=1, help="cells in parallel processes (local executor)")
    run.add_argument("--break-lock", action="store_true",
                     help="take over the --out/--resume folder's lock left by a run on another host (only when "
                          "that run is gone: its state cannot be checked from here)")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="continue an interrupted run: finished cells are kept, unfinished ones continue from "
                          "their last checkpoint (the grid and config must be unchanged)")
    run.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                     help="import MODULE first so the algorithms it registers are available")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--no-figures", action="store_true", help="skip drawing figures at the end")

    data = sub.add_parser("data", help="check, locate or prepare datasets")
    data.add_argument("action", choices=["check", "where", "prepare"])
    data.add_argument("dataset", nargs="?", help="omniglot | miniimagenet | mnist (default: all)")
    data.add_argument("--data-root", help="datasets folder (default: $METABENCH_DATA, else ~/.cache/metabench/data)")
    data.add_argument("--download", action="store_true",
                      help="with prepare: download what is missing from the official URLs (checksummed)")

    from bench import report
    report.add_arguments(sub.add_parser("report", help="leaderboards from run folders, with the published numbers "
                                                       "beside ours"))

    cmp_ = sub.add_parser("compare", help="paired, episode-by-episode regression test of NEW against BASELINE")
    cmp_.add_argument("baseline", type=Path, metavar="BASELINE_DIR")
    cmp_.add_argument("new", type=Path, metavar="NEW_DIR")
    cmp_.add_argument("--alpha", type=float, default=0.05)
    cmp_.add_argument("--format", choices=["text", "md", "json"], default="text",
                      help="md: a pull-request comment; json: every row, machine-readable")
    cmp_.add_argument("--min-delta", type=float, default=None,
                      help="smallest drop that counts (default per metric: 1 accuracy point, 5%% relative MSE/loss)")
    # the speed gate (bench/perfgate.py): the same folders-in, exit 0/1/2 contract over `metabench perf` folders
    cmp_.add_argument("--perf", action="store_true",
                      help="compare two `metabench perf` folders (speed gate: per-step ratios to the reference)")
    cmp_.add_argument("--max-slowdown", type=float, default=None, metavar="FRACTION",
                      help="with --perf: slowdown that counts when significant (default 0.10 = 10%%)")
    cmp_.add_argument("--clock", choices=["cpu", "wall"], default=None,
                      help="with --perf: which time's ratios to test (default cpu: process CPU time)")
    cmp_.add_argument("--step", action="append", default=[], metavar="GLOB",
                      help="with --perf: compare only the steps matching GLOB (repeatable), e.g. to confirm a "
                           "regression on a re-measurement of just those steps")

    perf = sub.add_parser("perf", help="speed benchmarks with ratios to a reference measured in the same run")
    perf.add_argument("--out", type=Path, help="folder for perf.csv, perf-summary.csv and manifest.json "
                                               "(default results/perf)")
    perf.add_argument("--size", choices=["quick", "full"], default="full",
                      help="quick: the CI speed gate's size (smoke-profile steps, one thread, ~2 minutes); full "
                           "(default): cpu-profile steps, every thread, plus perf-report.csv")
    perf.add_argument("--quick", dest="size", action="store_const", const="quick", help="the same as --size quick")
    perf.add_argument("--repeats", type=int, default=None, help="timed calls per step (default: the size's)")
    perf.add_argument("--step", action="append", default=[], metavar="GLOB",
                      help="time only the steps matching GLOB (repeatable), e.g. 'train/maml/*'")
    perf.add_argument("--list", action="store_true", help="print the size's step names and exit")
    perf.add_argument("--threads", type=int, default=None,
                      help="torch intra-op threads (default: 1 for quick, torch's default for full)")
    perf.add_argument("--device", default="cpu")
    perf.add_argument("--autocast", choices=["bf16"], help="full size: also time MAML and ProtoNet under "
                                                          "torch.autocast (bfloat16) in perf-report.csv")
    perf.add_argument("--against", metavar="REV|PERF_DIR",
                      help="also time the code of this git revision (or of the commit a perf folder's manifest "
                           "records, e.g. results/baseline-perf) in fresh processes alternating with this code; "
                           "writes OUT/baseline/run-N and OUT/new/run-N for `compare --perf` (bench/perf_ab.py)")
    perf.add_argument("--rounds", type=int, default=3,
                      help="with --against: processes per side (default 3)")

    fig = sub.add_parser("figures", parents=[quiet], help="draw figures by name from run folders' CSVs")
    fig.add_argument("name", nargs="?", help="a figure name, 'all', or 'paper' (then PAPER: one paper's figure set)")
    fig.add_argument("paper", nargs="?", metavar="PAPER",
                     help="with 'paper': maml2017, nichol2018, l2l2016, ravi2017 (`metabench figures paper` lists "
                          "them); drawn from the committed reference runs unless --from is given")
    fig.add_argument("--from", dest="runs", type=Path, action="append", default=[], metavar="RUN_DIR")
    fig.add_argument("--out", type=Path, help="output folder (default ./figures/<run-id>, or ./figures/paper-NAME; "
                                              "never inside a run folder given with --from)")
    fig.add_argument("--style", choices=["screen", "paper"],
                     help="screen: PNG + PDF (the default); paper: PDF with embedded fonts + SVG at 3.25/6.75 in "
                          "column widths (the default of `figures paper`)")
    fig.add_argument("--list", action="store_true", help="list the figure names")

    cfg = sub.add_parser("config", parents=[quiet],
                         help="print the resolved configuration and where each value came from")
    cfg.add_argument("action", choices=["show"])
    cfg.add_argument("--cell", metavar="B/A/S", help="one cell (benchmark/algorithm/seed): its resolved benchmark "
                                                     "spec, hyper-parameters and budget")
    cfg.add_argument("--profile", help="with --cell: the profile (default cpu)")
    cfg.add_argument("--config", action="append", default=[], metavar="FILE", help=CONFIG_HELP)
    cfg.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets")
    cfg.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                     help="import MODULE first (an overlay may configure its algorithms)")
    cfg.add_argument("--format", choices=["yaml", "json"], default="yaml")

    comp = sub.add_parser("completion", help="print a shell completion script: "
                                             "eval \"$(metabench completion bash)\" (bash; zsh with bashcompinit)")
    comp.add_argument("shell", choices=["bash"])

    from bench import db, site  # the results database and the leaderboard site: parsers beside their code
    db.add_parser(sub)
    site.add_parser(sub)
    from bench import docs_tables, verify  # re-running cells; regenerating the docs' tables
    verify.add_parser(sub)
    docs_tables.add_parser(sub)
    return p


def _print_table(rows: list[tuple], header: tuple) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def _list_rows(what: str, pattern: str, config) -> tuple[tuple, list[tuple]]:
    """(header, rows) of one list; the first column is always the name."""
    import algorithms
    from bench import plots

    match = lambda name: fnmatch.fnmatchcase(name, pattern)  # noqa: E731
    if what == "algorithms":
        plugins = {p["name"]: p for p in algorithms.plugin_info()}
        rows = []
        for name in algorithms.names(pattern):
            cls = algorithms.get(name)
            desc = (config.algorithm_entries.get(name) or {}).get("description") or (cls.__doc__ or "").split("\n")[0]
            info = plugins.get(name)
            origin = "built-in" if info is None else \
                f"plugin {info['distribution'] or info['module']}{' ' + info['version'] if info['version'] else ''}"
            rows.append((name, ",".join(cls.kinds), origin, desc))
        return ("algorithm", "kinds", "from", "description"), rows
    if what == "figures":
        return ("figure", "description"), [(n, d) for n, (_, d) in plots.FIGURES.items() if match(n)]
    if what == "benchmarks":
        return ("benchmark", "kind", "description"), [
            (n, s["kind"], s.get("description", "")) for n, s in config.benchmarks.items() if match(n)]
    if what == "suites":
        return ("suite", "profile", "benchmarks", "algorithms", "description"), [
            (n, s.get("profile", "cpu"), s["benchmarks"], s["algorithms"], s.get("description", ""))
            for n, s in config.suites.items() if match(n)]
    return ("profile", "meta_iters", "description"), [
        (n, p.get("meta_iters"), p.get("description", "")) for n, p in config.profiles.items() if match(n)]


def cmd_list(args) -> int:
    import json

    import algorithms
    from bench.config import Config

    # installed plugins (entry points) and --plugin modules, so that what `list` shows is what `run` accepts
    algorithms.load_plugins(args.plugin)
    what, pattern = args.what, args.pattern
    if what is not None and what not in LIST_KINDS:
        if args.pattern != "*":
            raise UserError(f"metabench list {what!r}: expected one of {', '.join(LIST_KINDS)}"
                            f"{algorithms.suggest(what, LIST_KINDS)}")
        what, pattern = None, args.what  # `metabench list 'proto*'`: the pattern over every list
    config = Config.load(args.config)
    kinds = [what] if what else list(LIST_KINDS)
    tables = {kind: _list_rows(kind, pattern, config) for kind in kinds}
    if what is None and pattern != "*" and not any(rows for _, rows in tables.values()):
        raise UserError(f"nothing is named like {pattern!r}{algorithms.suggest(pattern, LIST_KINDS)}; "
                        f"`metabench list` shows everything")
    if args.format == "json":
        data = {kind: [dict(zip(header, row)) for row in rows] for kind, (header, rows) in tables.items()}
        print(json.dumps(data[what] if what else data, indent=2, default=str))
    elif args.format == "names":
        for _, rows in tables.values():
            for row in rows:
                print(row[0])
    else:
        if what is None and pattern != "*":
            tables = {kind: table for kind, table in tables.items() if table[1]}
        for i, (kind, (header, rows)) in enumerate(tables.items()):
            if what is None:
                print(("\n" if i else "") + f"# {kind}")
            _print_table([tuple(" ".join(x) if isinstance(x, list) else x for x in row) for row in rows], header)
    return EXIT_OK


def _invocation(args) -> dict:
    """What `--resume` needs to rebuild the same grid."""
    from bench import data

    # overlay paths absolute, so that --resume from another folder finds them
    return {"suite": args.suite, "benchmarks": args.benchmark, "algorithms": args.algorithm,
            "seeds": list(dict.fromkeys(args.seed)), "profile": args.profile, "sets": args.sets,
            "config": [str(Path(c).resolve()) for c in args.config], "device": args.device or "cpu",
            "plugins": args.plugin, "data_root": str(data.data_root(args.data_root).resolve())}


# flags that choose what a run computes: --resume takes them from the run's manifest, so giving them too would
# be silently ignored (the issue this refusal fixes); flags about how it runs (--jobs, --executor, -q) may differ
RESUME_EXCLUSIVE = {"suite": "SUITE", "benchmark": "--benchmark", "algorithm": "--algorithm", "seed": "--seed",
                    "profile": "--profile", "sets": "--set", "config": "--config", "data_root": "--data-root",
                    "out": "--out", "device": "--device", "plugin": "--plugin", "force": "--force"}


def _resume_invocation(args) -> dict:
    from bench.rundir import RunDir, RunDirError

    given = [flag for name, flag in RESUME_EXCLUSIVE.items() if getattr(args, name, None) not in (None, [], False)]
    if given:
        raise UserError(f"--resume takes the grid and settings from {args.resume}/manifest.json; remove "
                        f"{', '.join(given)} (or start a new run with another --out)")
    run = RunDir(args.resume)
    try:
        manifest = run.read_manifest()
    except RunDirError as exc:
        if not (run.path / "manifest.json").is_file():
            raise
        good, _ = run.finished_cell_files()
        raise RunDirError(f"cannot resume: {exc}; the run's grid is recorded only there. The {len(good)} finished "
                          f"cell record(s) in {run.path / 'cells'} are intact: rerun the original command with a "
                          f"new --out to redo the run") from None
    invocation = manifest.get("invocation")
    if not invocation:
        raise UserError(f"{args.resume}/manifest.json has no invocation record; it cannot be resumed")
    return invocation


def cmd_run(args) -> int:
    import algorithms
    from bench import plots, runner, stats
    from bench.config import Config
    from bench.executors import make_executor

    invocation = _resume_invocation(args) if args.resume else _invocation(args)
    quiet = getattr(args, "quiet", False)
    algorithms.load_plugins(invocation["plugins"])
    overlays = invocation["config"] if args.resume else args.config  # as typed, for the messages
    config = Config.load([overlays] if isinstance(overlays, str) else overlays or [], invocation["sets"])
    cells, profile, label = config.grid(invocation["suite"], invocation["benchmarks"], invocation["algorithms"],
                                        invocation["seeds"], invocation["profile"])
    if args.resume:
        from bench.rundir import RunDir

        changed = runner.changed_cells(RunDir(args.resume).read_manifest(), cells)
        if changed:
            raise UserError(f"cannot resume {args.resume}: the configuration changed since it started: "
                            f"{'; '.join(changed)}; restore it or start a new run with another --out")
    out = args.resume or args.out or runner.default_out(label)
    _check_data_root(cells, invocation["data_root"])
    _check_device(invocation["device"])
    from bench.rundir import RunDir

    if args.break_lock:
        owner = RunDir(out).break_lock()
        if owner and not quiet:
            print(f"metabench: --break-lock: removed the lock of {owner} on {out}", file=sys.stderr)
    if args.resume:
        RunDir(out).check_resumable()  # damaged cells/*.json: say which cells are safe to keep
    if not args.resume:
        moved = RunDir(out).claim({c.config_hash for c in cells}, force=args.force, cells=cells)
        if moved and not quiet:
            print(f"metabench: moved the previous contents of {out} to {moved}", file=sys.stderr)
            if _unfinished(moved):
                print(f"metabench: that run was unfinished; `metabench run --resume {moved}` continues it",
                      file=sys.stderr)
    if not quiet:
        print(f"metabench: {len(cells)} cell(s), profile {profile}, writing to {out}", file=sys.stderr)
    runner.STOP.clear()
    previous_handler = signal.signal(signal.SIGINT, _first_interrupt)
    try:
        results = runner.run_grid(
            config, cells, out, suite=label, profile=profile, data_root=invocation["data_root"],
            device=invocation["device"], executor=make_executor(args.executor, args.jobs, args.address),
            progress=not (args.no_progress or quiet), sets=tuple(invocation["sets"]), invocation=invocation,
            resume=bool(args.resume),
            on_result=None if quiet else
            lambda r: print(f"  {r.cell.key}: {r.status}{' — ' + r.error if r.error else ''}"
                            f" ({r.train_seconds:.0f}s train, {r.eval_seconds:.0f}s eval)", file=sys.stderr))
    except (runner.RunInterrupted, KeyboardInterrupt):
        print(f"metabench: stopped; finished cells and checkpoints are in {out}; continue with "
              f"`metabench run --resume {out}`", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    if not args.no_figures:
        plots.draw_available([out], out / "figures")
    summary = runner.summary_table(results)
    rows = stats.headline(summary) if len(summary) else summary
    shown = [(r.benchmark, r.algorithm, r.seed, r.metric, f"{r.mean:.4g}", f"{r.ci95:.3g}", r.n) for r in rows.itertuples()
             if not str(r.metric).startswith(("mse@", "loss@")) or str(r.metric) in ("mse@0", "mse@1", "mse@5", "mse@10")]
    if shown and not quiet:
        _print_table(shown, ("benchmark", "algorithm", "seed", "metric", "mean", "ci95", "n"))
    failed = [r for r in results if r.status != "ok"]
    if quiet:  # the only report of each failure
        for r in failed:
            print(f"metabench: cell {r.cell.key} failed: {r.error}", file=sys.stderr)
    elif failed:  # each error was printed as its cell finished: name the cells once more, not the errors
        print(f"metabench: {len(failed)} cell(s) failed: {', '.join(r.cell.key for r in failed)} (errors above and "
              f"in summary.csv)", file=sys.stderr)
    if not quiet:
        print(f"metabench: wrote {out}", file=sys.stderr)
    return EXIT_FAILED_CELLS if failed else EXIT_OK


def _unfinished(folder: Path) -> bool:
    import json

    try:
        return json.loads((folder / "manifest.json").read_text()).get("finished") is None
    except (OSError, ValueError, AttributeError):
        return False


def _first_interrupt(signum, frame) -> None:
    """First Ctrl-C: finish the current meta-iteration, checkpoint and stop; a second one stops at once."""
    from bench import runner

    print("\nmetabench: stopping after this meta-iteration (Ctrl-C again to stop at once)", file=sys.stderr)
    runner.STOP.set()
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _check_data_root(cells, root: str) -> None:
    """Refuse before any training when cells need files and the data root does not exist at all."""
    from bench import data

    needing = sorted({c.spec["dataset"] for c in cells if c.spec["dataset"] in data.NEEDS_FILES})
    if needing and not Path(root).is_dir():
        raise UserError(f"data root {root} does not exist ({', '.join(needing)} need files there); pass "
                        f"--data-root DIR or set METABENCH_DATA, or see `metabench data where`")


def _check_device(device: str) -> None:
    """Refuse an unknown or unavailable device once, up front, rather than failing every cell with the driver's
    message."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"--device {device!r}: not a device name; use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return
    if dev.type != "cuda":
        raise UserError(f"--device {device!r}: metabench runs on cpu or cuda")
    if not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA GPU is available to this process (torch {torch.__version__}, "
                        f"built for CUDA {torch.version.cuda or 'none'}); run with --device cpu")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s), "
                        f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")


def cmd_figures(args) -> int:
    from bench import plots

    if args.name == "paper":
        return _figures_paper(args)
    if args.paper:
        raise UserError(f"unexpected argument {args.paper!r}: only `metabench figures paper NAME` takes two names")
    if args.list or not args.name:
        _print_table([(n, d) for n, (_, d) in plots.FIGURES.items()], ("figure", "description"))
        return EXIT_OK
    if not args.runs:
        raise UserError("figures needs --from RUN_DIR (a folder written by metabench run)")
    if args.name != "all" and args.name not in plots.FIGURES:
        plots.draw(args.name, args.runs, Path("."))  # raises the "unknown figure ... did you mean" error
    out = args.out or _default_figures_dir(args.runs)
    for run in args.runs:
        # a run folder holds only what its run wrote: it is what compare, verify and the database read
        if out.resolve() == run.resolve() or run.resolve() in out.resolve().parents:
            raise UserError(f"--out {out} is inside the input run folder {run}; write figures elsewhere "
                            f"(default ./figures/<run-id>)")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; pass a folder path")
    names = list(plots.FIGURES) if args.name == "all" else [args.name]
    status, drawn = EXIT_OK, 0
    for name in names:
        try:
            for path in plots.draw(name, args.runs, out, args.style or "screen"):
                drawn += 1
                if not getattr(args, "quiet", False):
                    print(path)
        except plots.FigureDataError as exc:
            print(f"metabench: figure {name}: {exc}", file=sys.stderr)
            status = EXIT_USAGE if args.name != "all" else status
    if not drawn:  # `figures all` drawing nothing is a failure, not a success with warnings
        print(f"metabench: error: no figure could be drawn from {', '.join(map(str, args.runs))}", file=sys.stderr)
        return EXIT_USAGE
    return status


def _figures_paper(args) -> int:
    """`metabench figures paper NAME`: one paper's figure set, from the committed reference runs by default, in
    the paper style; figures whose data the runs lack are named with what they need (exit 2 if none is drawn)."""
    import shlex

    from bench import plots

    if not args.paper or args.list:
        _print_table([(n, p.title, ", ".join(p.figures)) for n, p in plots.PAPERS.items()],
                     ("paper", "title", "figures"))
        return EXIT_OK
    if args.paper not in plots.PAPERS:
        from algorithms import suggest
        raise UserError(f"unknown paper {args.paper!r}{suggest(args.paper, list(plots.PAPERS))}; "
                        f"`metabench figures paper` lists them")
    paper = plots.PAPERS[args.paper]
    runs = args.runs or plots.paper_runs(args.paper)
    if not runs:
        raise UserError(f"no committed reference runs for {args.paper} under {plots.reference_root()} (patterns "
                        f"{', '.join(paper.runs)}); pass --from RUN_DIR")
    out = args.out or Path("figures") / f"paper-{args.paper}"
    for run in runs:
        if out.resolve() == run.resolve() or run.resolve() in out.resolve().parents:
            raise UserError(f"--out {out} is inside the input run folder {run}; write figures elsewhere")
    figure_style = args.style or "paper"
    command = shlex.join(["metabench", "figures", "paper", args.paper]
                         + [a for r in args.runs for a in ("--from", str(r))]
                         + (["--style", figure_style] if figure_style != "paper" else []))
    written, skipped = plots.draw_available(runs, out, figure_style, names=list(paper.figures),
                                            command=lambda name: command)
    if not getattr(args, "quiet", False):
        for path in written:
            print(path)
    for name, reason in skipped.items():
        print(f"metabench: figure {name}: {reason}", file=sys.stderr)
    return EXIT_OK if written else EXIT_USAGE


def _default_figures_dir(runs: list[Path]) -> Path:
    """./figures/<run-id> (run ids joined with '+' for several runs): beside the user, never inside an input."""
    import json

    ids = []
    for run in runs:
        try:
            ids.append(str(json.loads((run / "manifest.json").read_text()).get("run_id") or ""))
        except (OSError, ValueError, AttributeError):
            ids.append("")
    ids = [i or run.resolve().name for i, run in zip(ids, runs)]
    return Path("figures") / "+".join(dict.fromkeys(ids))


def _check_install() -> None:
    """`bench` and `algorithms` are also names of other distributions on the package index, and a folder called
    `algorithms` is common in users' projects: make sure both names resolve to this installation of metabench.
    find_spec only locates `algorithms` (importing it would pull in torch for commands that must not)."""
    import importlib.util

    import bench

    here = Path(bench.__file__).resolve().parent
    if not getattr(bench, "__metabench__", False):
        raise UserError(f"`import bench` found {here}, which is not metabench's harness (another package named "
                        f"'bench' shadows it); uninstall that package or remove it from PYTHONPATH")
    spec = importlib.util.find_spec("algorithms")
    origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    if origin != here.parent / "algorithms" / "__init__.py":
        raise UserError(f"`import algorithms` found {origin or 'nothing'} instead of metabench's "
                        f"{here.parent / 'algorithms'} (another package or a folder named 'algorithms' in the "
                        f"current folder or on PYTHONPATH shadows it); rename it, or run from another folder")


def _delegate(module: str):
    """Subcommands that live in their own module: each exposes `command(args) -> exit code`."""

    def handler(args) -> int:
        import importlib

        return importlib.import_module(module).command(args)

    return handler


class UserError(Exception):
    """A mistake in the command line; reported as one line."""


def _passive_openmp() -> None:
    """OMP_WAIT_POLICY=passive unless the user set a policy: OpenMP worker threads then sleep instead of spinning
    between parallel regions. On a busy shared machine spinning threads take the cores that the descheduled
    thread everyone waits for needs: a 2-thread sine MAML smoke cell took 99 s with the default (active) and 35 s
    passive beside other jobs, and the lead saw 145 s against 9 s for a `pretrain` cell; on a quiet machine
    passive cost about 10% on such a cell (docs/performance.md). The OpenMP runtime reads it once, when torch
    loads, so it is set before anything imports torch; the manifest records it (provenance.thread_env)."""
    import os

    if "OMP_WAIT_POLICY" not in os.environ and "torch" not in sys.modules:
        os.environ["OMP_WAIT_POLICY"] = "passive"


def main(argv: list[str] | None = None) -> int:
    _passive_openmp()
    args = _parser().parse_args(argv)
    try:  # before anything imports `algorithms`: a shadowing package would fail there with a traceback
        _check_install()
    except UserError as exc:
        print(f"metabench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from bench.config import ConfigError
    from bench.rundir import RunDirError
    from algorithms import UnknownNameError

    from bench.allocator import keep_freed_memory
    keep_freed_memory()
    handlers = {"list": cmd_list, "run": cmd_run, "figures": cmd_figures, "data": _delegate("bench.datacheck"),
                "report": _delegate("bench.report"), "compare": _delegate("bench.compare"),
                "perf": _delegate("bench.perf"), "config": _delegate("bench.config"),
                "completion": _delegate("bench.completion"), "db": _delegate("bench.db"), "leaderboard": _delegate("bench.site"),
                "verify": _delegate("bench.verify"), "docs": _delegate("bench.docs_tables")}
    try:
        return handlers[args.command](args)
    except (ConfigError, RunDirError, UnknownNameError, UserError, ImportError) as exc:
        print(f"metabench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("metabench: interrupted; finished cells are saved (rerun with --resume to continue)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `metabench list | head`: the reader left; not an error worth a traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:  # a path that cannot be read or written (a file where a folder goes, a full disk...)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"metabench: error: {where}{exc.strerror or exc}; check the path and its permissions",
              file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
