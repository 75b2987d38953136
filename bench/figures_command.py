"""`metabench figures`: draw figures by name (or one paper's set) from run folders' CSVs. The drawing is in
bench/plots.py; this module is its command line (kept apart because `figures paper` suggests names through
`algorithms`, which plots.py must never import)."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import algorithms  # not `from algorithms import ...`: a foreign `algorithms` must reach cli's check
from bench import plots
from bench.errors import EXIT_OK, EXIT_USAGE, UserError
from bench.listing import print_table


def add_arguments(fig) -> None:
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


def _check_out(out: Path, runs: list[Path], hint: str) -> None:
    for run in runs:
        # a run folder holds only what its run wrote: it is what compare, verify and the database read
        if out.resolve() == run.resolve() or run.resolve() in out.resolve().parents:
            raise UserError(f"--out {out} is inside the input run folder {run}; write figures elsewhere{hint}")


def command(args) -> int:
    if args.name == "paper":
        return _figures_paper(args)
    if args.paper:
        raise UserError(f"unexpected argument {args.paper!r}: only `metabench figures paper NAME` takes two names")
    if args.list or not args.name:
        print_table([(n, d) for n, (_, d) in plots.FIGURES.items()], ("figure", "description"))
        return EXIT_OK
    if not args.runs:
        raise UserError("figures needs --from RUN_DIR (a folder written by metabench run)")
    if args.name != "all" and args.name not in plots.FIGURES:
        plots.draw(args.name, args.runs, Path("."))  # raises the "unknown figure ... did you mean" error
    out = args.out or _default_figures_dir(args.runs)
    _check_out(out, args.runs, " (default ./figures/<run-id>)")
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
    if not args.paper or args.list:
        print_table([(n, p.title, ", ".join(p.figures)) for n, p in plots.PAPERS.items()],
                    ("paper", "title", "figures"))
        return EXIT_OK
    if args.paper not in plots.PAPERS:
        raise UserError(f"unknown paper {args.paper!r}{algorithms.suggest(args.paper, list(plots.PAPERS))}; "
                        f"`metabench figures paper` lists them")
    paper = plots.PAPERS[args.paper]
    runs = args.runs or plots.paper_runs(args.paper)
    if not runs:
        raise UserError(f"no committed reference runs for {args.paper} under {plots.reference_root()} (patterns "
                        f"{', '.join(paper.runs)}); pass --from RUN_DIR")
    out = args.out or Path("figures") / f"paper-{args.paper}"
    _check_out(out, runs, "")
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
    ids = []
    for run in runs:
        try:
            ids.append(str(json.loads((run / "manifest.json").read_text()).get("run_id") or ""))
        except (OSError, ValueError, AttributeError):
            ids.append("")
    ids = [i or run.resolve().name for i, run in zip(ids, runs)]
    return Path("figures") / "+".join(dict.fromkeys(ids))
