"""`metabench run`: resolve the grid (or the one recorded in a run folder for --resume), check what would make
every cell fail (data root, device, the output folder) before any training, then hand the cells to bench.grid
and print the headline table. Data flows cli -> run_command -> grid -> cell -> evaluate -> results."""
from __future__ import annotations

import argparse
import json
import re
import signal
import sys
from pathlib import Path

import torch

import algorithms
from bench import data, plots, stats  # plots loads matplotlib: a broken install fails before training
from bench.config import Config
from bench.errors import CONFIG_HELP, EXIT_FAILED_CELLS, EXIT_OK, UserError
from bench.executors import make_executor
from bench.grid import changed_cells, default_out, run_grid
from bench.listing import print_table
from bench.results import summary_table
from bench.rundir import RunDir, RunDirError
from bench.stop import STOP, RunInterrupted

MAX_SEEDS = 10_000
# regression curves have a point per adaptation step: the run's table shows only these, the CSVs keep all
SHOWN_CURVE_POINTS = ("mse@0", "mse@1", "mse@5", "mse@10")


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


def add_arguments(run) -> None:
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


def _invocation(args) -> dict:
    """What `--resume` needs to rebuild the same grid."""
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


def command(args) -> int:
    invocation = _resume_invocation(args) if args.resume else _invocation(args)
    quiet = getattr(args, "quiet", False)
    algorithms.load_plugins(invocation["plugins"])
    overlays = invocation["config"] if args.resume else args.config  # as typed, for the messages
    config = Config.load([overlays] if isinstance(overlays, str) else overlays or [], invocation["sets"])
    cells, profile, label = config.grid(invocation["suite"], invocation["benchmarks"], invocation["algorithms"],
                                        invocation["seeds"], invocation["profile"])
    if args.resume:
        changed = changed_cells(RunDir(args.resume).read_manifest(), cells)
        if changed:
            raise UserError(f"cannot resume {args.resume}: the configuration changed since it started: "
                            f"{'; '.join(changed)}; restore it or start a new run with another --out")
    out = args.resume or args.out or default_out(label)
    _check_data_root(cells, invocation["data_root"])
    _check_device(invocation["device"])
    _take_folder(args, out, cells, quiet)
    if not quiet:
        print(f"metabench: {len(cells)} cell(s), profile {profile}, writing to {out}", file=sys.stderr)
    results = _run_cells(args, invocation, config, cells, out, label, profile, quiet)
    if results is None:
        return 130
    if not args.no_figures:
        plots.draw_available([out], out / "figures")
    return _report(results, out, quiet)


def _take_folder(args, out: Path, cells, quiet: bool) -> None:
    """Lock the output folder: break a stale lock if asked, check a resumed run's cell files, or claim a new one
    (moving earlier contents aside only with --force)."""
    if args.break_lock:
        owner = RunDir(out).break_lock()
        if owner and not quiet:
            print(f"metabench: --break-lock: removed the lock of {owner} on {out}", file=sys.stderr)
    if args.resume:
        RunDir(out).check_resumable()  # damaged cells/*.json: say which cells are safe to keep
        return
    moved = RunDir(out).claim({c.config_hash for c in cells}, force=args.force, cells=cells)
    if moved and not quiet:
        print(f"metabench: moved the previous contents of {out} to {moved}", file=sys.stderr)
        if _unfinished(moved):
            print(f"metabench: that run was unfinished; `metabench run --resume {moved}` continues it",
                  file=sys.stderr)


def _run_cells(args, invocation: dict, config, cells, out: Path, label: str, profile: str, quiet: bool):
    """The cells' results, or None when Ctrl-C stopped the run (its checkpoints are then on disk)."""
    STOP.clear()
    previous_handler = signal.signal(signal.SIGINT, _first_interrupt)
    try:
        return run_grid(
            config, cells, out, suite=label, profile=profile, data_root=invocation["data_root"],
            device=invocation["device"], executor=make_executor(args.executor, args.jobs, args.address),
            progress=not (args.no_progress or quiet), sets=tuple(invocation["sets"]), invocation=invocation,
            resume=bool(args.resume), reuse=config.suite_reuse(label),
            notes=None if quiet else lambda line: print(f"metabench: {line}", file=sys.stderr),
            on_result=None if quiet else
            lambda r: print(f"  {r.cell.key}: {r.status}{' — ' + r.error if r.error else ''}"
                            f" ({r.train_seconds:.0f}s train, {r.eval_seconds:.0f}s eval)", file=sys.stderr))
    except (RunInterrupted, KeyboardInterrupt):
        print(f"metabench: stopped; finished cells and checkpoints are in {out}; continue with "
              f"`metabench run --resume {out}`", file=sys.stderr)
        return None
    finally:
        signal.signal(signal.SIGINT, previous_handler)


def _report(results, out: Path, quiet: bool) -> int:
    """The headline table and the failed cells; exit 1 when any cell failed."""
    summary = summary_table(results)
    rows = stats.headline(summary) if len(summary) else summary
    shown = [(r.benchmark, r.algorithm, r.seed, r.metric, f"{r.mean:.4g}", f"{r.ci95:.3g}", r.n)
             for r in rows.itertuples()
             if not str(r.metric).startswith(("mse@", "loss@")) or str(r.metric) in SHOWN_CURVE_POINTS]
    if shown and not quiet:
        print_table(shown, ("benchmark", "algorithm", "seed", "metric", "mean", "ci95", "n"))
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
    try:
        return json.loads((folder / "manifest.json").read_text()).get("finished") is None
    except (OSError, ValueError, AttributeError):
        return False


def _first_interrupt(signum, frame) -> None:
    """First Ctrl-C: finish the current meta-iteration, checkpoint and stop; a second one stops at once."""
    print("\nmetabench: stopping after this meta-iteration (Ctrl-C again to stop at once)", file=sys.stderr)
    STOP.set()
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _check_data_root(cells, root: str) -> None:
    """Refuse before any training when cells need files and the data root does not exist at all."""
    needing = sorted({c.spec["dataset"] for c in cells if c.spec["dataset"] in data.NEEDS_FILES})
    if needing and not Path(root).is_dir():
        raise UserError(f"data root {root} does not exist ({', '.join(needing)} need files there); pass "
                        f"--data-root DIR or set METABENCH_DATA, or see `metabench data where`")


def _check_device(device: str) -> None:
    """Refuse an unknown or unavailable device once, up front, rather than failing every cell with the driver's
    message."""
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
