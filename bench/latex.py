"""LaTeX tables (booktabs) of results: mean ± CI per method and setting, the published value beside ours.

The output is a bare `tabular` (plus comments naming its source), so a paper wraps it in its own `table` float
with its own caption: `\\input{omniglot-table.tex}` needs only `\\usepackage{booktabs}`. Best per column is bold
only where the best mean's 95% CI overlaps no other method's CI — a bold number is a claim, and overlapping
intervals do not support it.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "–": "--",
            "—": "---", "×": r"$\times$"}


def escape(text: str) -> str:
    """Text safe in a LaTeX table cell (the ten special characters, and the few non-ASCII ones we print)."""
    return "".join(_SPECIAL.get(ch, ch) for ch in str(text))


@dataclass(frozen=True)
class Cell:
    mean: float
    ci: float = math.nan           # half-width of the 95% CI
    paper: float = math.nan        # the published value, if any
    paper_ci: float = math.nan

    @property
    def interval(self) -> tuple[float, float]:
        ci = 0.0 if _missing(self.ci) else self.ci
        return self.mean - ci, self.mean + ci


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def best_in_column(cells: dict[str, Cell], higher_is_better: bool = True) -> str | None:
    """The row whose mean is best and whose CI overlaps no other row's CI; None when there is no such row
    (fewer than two values, a missing CI on the best, or overlapping intervals)."""
    valued = {row: c for row, c in cells.items() if not _missing(c.mean) and math.isfinite(c.mean)}
    if len(valued) < 2:
        return None
    sign = 1.0 if higher_is_better else -1.0
    best = max(valued, key=lambda row: sign * valued[row].mean)
    if _missing(valued[best].ci):
        return None
    low, high = valued[best].interval
    for row, c in valued.items():
        if row == best:
            continue
        other_low, other_high = c.interval
        if (higher_is_better and low <= other_high) or (not higher_is_better and high >= other_low):
            return None
    return best


def booktabs(rows: list[str], columns: list[str], cells: dict[tuple[str, str], Cell], *,
             fmt: Callable[[float, float, bool], str], row_header: str = "Method",
             higher_is_better: bool = True, published: bool = True, comments: Iterable[str] = ()) -> str:
    """A booktabs tabular: one row per method, per setting (column) two sub-columns `ours` and `published`
    (just `ours` with published=False). `fmt(mean, ci, measured)` prints one value (e.g. "98.1 ± 0.4");
    rows, columns are display names, already in their printed order."""
    per = 2 if published else 1
    bold = {col: best_in_column({r: cells[(r, col)] for r in rows if (r, col) in cells}, higher_is_better)
            for col in columns}

    def value(text: str, strong: bool) -> str:
        if text in ("", "–"):
            return "--"
        body = text.replace(" ± ", r" \pm ")
        return f"$\\mathbf{{{body}}}$" if strong else f"${body}$"

    lines = ["% " + " ".join(str(c).split()) for c in comments]  # one line each: a newline would end the comment
    lines += ["% needs \\usepackage{booktabs}", f"\\begin{{tabular}}{{l{' '.join(['c' * per] * len(columns))}}}",
              "\\toprule"]
    if published:
        lines.append(" & ".join([""] + [f"\\multicolumn{{2}}{{c}}{{{escape(c)}}}" for c in columns]) + r" \\")
        lines.append(" ".join(f"\\cmidrule(lr){{{2 + 2 * i}-{3 + 2 * i}}}" for i in range(len(columns))))
        lines.append(" & ".join([escape(row_header)] + ["ours", "published"] * len(columns)) + r" \\")
    else:
        lines.append(" & ".join([escape(row_header)] + [escape(c) for c in columns]) + r" \\")
    lines.append("\\midrule")
    for row in rows:
        parts = [escape(row)]
        for col in columns:
            c = cells.get((row, col))
            ours = fmt(c.mean, c.ci, True) if c is not None else ""
            parts.append(value(ours, bold[col] == row))
            if published:
                paper = fmt(c.paper, c.paper_ci, False) if c is not None and not _missing(c.paper) else ""
                parts.append(value(paper, False))
        lines.append(" & ".join(parts) + r" \\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def standalone(body: str) -> str:
    """A minimal document around a table (what the tests compile, and what `pdflatex` needs to preview one)."""
    # no [T1]{fontenc}: it needs the cm-super fonts, or else METAFONT builds bitmap fonts on the first run
    return ("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
            + body + "\\end{document}\n")
