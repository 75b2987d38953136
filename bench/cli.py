"""The `metabench` command (also `python -m bench`): parse, call, print.

User errors (bad names, bad config, unusable folders, missing data) print one line `metabench: error: ...`
and exit 2; a run whose cells failed exits 1 after writing every finished cell.
"""
from __future__ import annotations

import argparse
import fnmatch
import signal
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED_CELLS, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="metabench", description="Meta-learning benchmark and reproduction suite.")
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="list algorithms, benchmarks, suites or figures (wildcards allowed)")
    ls.add_argument("what", choices=["algorithms", "benchmarks", "suites", "figures", "profiles"])
    ls.add_argument("pattern", nargs="?", default="*")
    ls.add_argument("--config", help="benchmarks.yaml to use (default: the repository's)")
    ls.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                    help="import MODULE first so the algorithms it registers are listed too")

    run = sub.add_parser("run", help="train and evaluate a suite or a grid of cells")
    run.add_argument("suite", nargs="?", help="a suite name from benchmarks.yaml (default: 'default')")
    run.add_argument("--benchmark", action="append", default=[], metavar="B", help="benchmark name or wildcard")
    run.add_argument("--algorithm", action="append", default=[], metavar="A", help="algorithm name or wildcard")
    run.add_argument("--seed", action="append", type=int, default=[], metavar="S")
    run.add_argument("--profile", choices=None, help="smoke | cpu | paper (default: the suite's, else cpu)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                     help="override a value, e.g. maml.inner_lr=0.1, sine-k5.test_query=50, budget.meta_iters=100")
    run.add_argument("--config", help="benchmarks.yaml to use")
    run.add_argument("--data-root", help="datasets folder (default: $METABENCH_DATA, else ~/.cache/metabench/data)")
    run.add_argument("--out", type=Path, help="write the run's files into this folder (default results/runs/<run-id>)")
    run.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    run.add_argument("--executor", default="local", choices=["local", "ray"],
                     help="local (default; --jobs N for a process pool) or ray")
    run.add_argument("--address", help="with --executor ray: 'auto' or HOST:PORT of an existing Ray cluster "
                                       "(default: start a local Ray instance)")
    run.add_argument("--jobs", type=int, default=1, help="cells in parallel processes (local executor)")
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

    rep = sub.add_parser("report", help="leaderboards from run folders, with the published numbers beside ours")
    rep.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    rep.add_argument("--format", choices=["md", "csv", "html"], default="md")
    rep.add_argument("--strict", action="store_true", help="an incomplete grid is an error, not a warning")
    rep.add_argument("--trend", action="store_true", help="draw each cell's mean ± CI across the runs' commits")
    rep.add_argument("--out", type=Path, help="write the report (and trend figure) here instead of stdout")

    cmp_ = sub.add_parser("compare", help="paired, episode-by-episode regression test of NEW against BASELINE")
    cmp_.add_argument("baseline", type=Path, metavar="BASELINE_DIR")
    cmp_.add_argument("new", type=Path, metavar="NEW_DIR")
    cmp_.add_argument("--alpha", type=float, default=0.05)
    cmp_.add_argument("--min-delta", type=float, default=None,
                      help="smallest drop that counts (default per metric: 1 accuracy point, 5%% relative MSE/loss)")

    perf = sub.add_parser("perf", help="speed benchmarks with ratios to a reference measured in the same run")
    perf.add_argument("--out", type=Path, help="folder for perf.csv (default results/perf)")
    perf.add_argument("--repeats", type=int, default=5)
    perf.add_argument("--device", default="cpu")
    perf.add_argument("--autocast", choices=["bf16"], help="also time MAML and ProtoNet under torch.autocast "
                                                          "(bfloat16), as ratios to the float32 reference")

    fig = sub.add_parser("figures", help="draw figures by name from run folders' CSVs")
    fig.add_argument("name", nargs="?", help="a figure name or 'all'")
    fig.add_argument("--from", dest="runs", type=Path, action="append", default=[], metavar="RUN_DIR")
    fig.add_argument("--out", type=Path, help="output folder (default RUN_DIR/figures)")
    fig.add_argument("--list", action="store_true", help="list the figure names")
    return p


def _print_table(rows: list[tuple], header: tuple) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def cmd_list(args) -> int:
    import algorithms
    from bench import plots
    from bench.config import Config

    # installed plugins (entry points) and --plugin modules, so that what `list` shows is what `run` accepts
    algorithms.load_plugins(args.plugin)
    if args.what == "algorithms":
        config = Config.load(args.config)
        rows = []
        for name in algorithms.names(args.pattern):
            cls = algorithms.get(name)
            desc = (config.algorithm_entries.get(name) or {}).get("description") or (cls.__doc__ or "").split("\n")[0]
            rows.append((name, ",".join(cls.kinds), desc))
        _print_table(rows, ("algorithm", "kinds", "description"))
    elif args.what == "figures":
        _print_table([(n, d) for n, (_, d) in plots.FIGURES.items() if fnmatch.fnmatchcase(n, args.pattern)],
                     ("figure", "description"))
    else:
        config = Config.load(args.config)
        if args.what == "benchmarks":
            rows = [(n, s["kind"], s.get("description", "")) for n, s in config.benchmarks.items()
                    if fnmatch.fnmatchcase(n, args.pattern)]
            _print_table(rows, ("benchmark", "kind", "description"))
        elif args.what == "suites":
            rows = [(n, s.get("profile", "cpu"), " ".join(s["benchmarks"]), " ".join(s["algorithms"]),
                     s.get("description", "")) for n, s in config.suites.items() if fnmatch.fnmatchcase(n, args.pattern)]
            _print_table(rows, ("suite", "profile", "benchmarks", "algorithms", "description"))
        else:
            rows = [(n, p.get("meta_iters"), p.get("description", "")) for n, p in config.profiles.items()
                    if fnmatch.fnmatchcase(n, args.pattern)]
            _print_table(rows, ("profile", "meta_iters", "description"))
    return EXIT_OK


def _invocation(args) -> dict:
    """What `--resume` needs to rebuild the same grid."""
    from bench import data

    return {"suite": args.suite, "benchmarks": args.benchmark, "algorithms": args.algorithm, "seeds": args.seed,
            "profile": args.profile, "sets": args.sets, "config": args.config, "device": args.device,
            "plugins": args.plugin, "data_root": str(data.data_root(args.data_root).resolve())}


def _resume_invocation(args) -> dict:
    from bench.rundir import RunDir

    manifest = RunDir(args.resume).read_manifest()
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
    algorithms.load_plugins(invocation["plugins"])
    config = Config.load(invocation["config"], invocation["sets"])
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
    print(f"metabench: {len(cells)} cell(s), profile {profile}, writing to {out}", file=sys.stderr)
    runner.STOP.clear()
    previous_handler = signal.signal(signal.SIGINT, _first_interrupt)
    try:
        results = runner.run_grid(
            config, cells, out, suite=label, profile=profile, data_root=invocation["data_root"],
            device=invocation["device"], executor=make_executor(args.executor, args.jobs, args.address),
            progress=not args.no_progress, sets=tuple(invocation["sets"]), invocation=invocation,
            resume=bool(args.resume),
            on_result=lambda r: print(f"  {r.cell.key}: {r.status}{' — ' + r.error if r.error else ''}"
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
    if shown:
        _print_table(shown, ("benchmark", "algorithm", "seed", "metric", "mean", "ci95", "n"))
    failed = [r for r in results if r.status != "ok"]
    for r in failed:
        print(f"metabench: cell {r.cell.key} failed: {r.error}", file=sys.stderr)
    print(f"metabench: wrote {out}", file=sys.stderr)
    return EXIT_FAILED_CELLS if failed else EXIT_OK


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


def cmd_figures(args) -> int:
    from bench import plots

    if args.list or not args.name:
        _print_table([(n, d) for n, (_, d) in plots.FIGURES.items()], ("figure", "description"))
        return EXIT_OK
    if not args.runs:
        raise UserError("figures needs --from RUN_DIR (a folder written by metabench run)")
    out = args.out or args.runs[0] / "figures"
    names = list(plots.FIGURES) if args.name == "all" else [args.name]
    status = EXIT_OK
    for name in names:
        try:
            for path in plots.draw(name, args.runs, out):
                print(path)
        except plots.FigureDataError as exc:
            print(f"metabench: figure {name}: {exc}", file=sys.stderr)
            status = EXIT_USAGE if args.name != "all" else status
    return status


def _delegate(module: str):
    """Subcommands that live in their own module: each exposes `command(args) -> exit code`."""

    def handler(args) -> int:
        import importlib

        return importlib.import_module(module).command(args)

    return handler


class UserError(Exception):
    """A mistake in the command line; reported as one line."""


def main(argv: list[str] | None = None) -> int:
    from bench.config import ConfigError
    from bench.rundir import RunDirError
    from algorithms import UnknownNameError

    args = _parser().parse_args(argv)
    from bench.allocator import keep_freed_memory
    keep_freed_memory()
    handlers = {"list": cmd_list, "run": cmd_run, "figures": cmd_figures, "data": _delegate("bench.datacheck"),
                "report": _delegate("bench.report"), "compare": _delegate("bench.compare"),
                "perf": _delegate("bench.perf")}
    try:
        return handlers[args.command](args)
    except (ConfigError, RunDirError, UnknownNameError, UserError, ImportError) as exc:
        print(f"metabench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("metabench: interrupted; finished cells are saved (rerun with --resume to continue)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
