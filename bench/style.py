"""The visual identity of every algorithm and benchmark (colour, marker, line style, display name), defined once.

Every figure in bench.plots and the leaderboard site (bench.site) take their colours and names from here, so
MAML is the same blue in the sine plots, the Omniglot table and the site. No plotting library is imported:
the site uses the hex colours without matplotlib.

Colours come from colour-blind-safe palettes (Okabe & Ito 2008, "Color Universal Design"; Paul Tol's "muted"
scheme, https://personal.sron.nl/~pault/). No palette of 21 colours stays distinguishable for colour-blind
readers, so uniqueness is promised where it matters: within each family of algorithms that share a figure
(the sine trio, the few-shot classifiers, the optimizers) colour and marker differ, and every algorithm's
(colour, marker, line style) triple is unique overall. An algorithm from a plugin gets a colour, marker and
line style from a hash of its name (sha256, not Python's salted hash()), so it is stable across runs and machines.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# Okabe–Ito without its yellow (too light on white paper), then Tol "muted" for the rest; all hex, lower case
OKABE_ITO = {"blue": "#0072b2", "vermillion": "#d55e00", "green": "#009e73", "orange": "#e69f00",
             "sky": "#56b4e9", "purple": "#cc79a7", "black": "#000000"}
TOL_MUTED = {"indigo": "#332288", "teal": "#44aa99", "olive": "#999933", "wine": "#882255", "rose": "#cc6677",
             "cyan": "#88ccee", "tolgreen": "#117733", "magenta": "#aa4499", "sand": "#ddcc77"}
GREY = "#666666"
PALETTE = tuple(OKABE_ITO.values()) + tuple(TOL_MUTED.values())  # what a plugin's hash picks from
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "h", "<", ">", "p")
LINESTYLES = ("-", "--", "-.", ":")


@dataclass(frozen=True)
class Identity:
    color: str        # "#rrggbb"
    marker: str       # a matplotlib marker code
    linestyle: str    # a matplotlib line style ("-", "--", "-.", ":")
    display: str      # the name a paper prints ("MAML", "ProtoNet")

    @property
    def color_hex(self) -> str:
        return self.color

    def line_kwargs(self) -> dict:
        """Keyword arguments for Axes.plot (colour, marker, line style and the display name as label)."""
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle, "label": self.display}


OKABE, TOL = OKABE_ITO, TOL_MUTED
# Families are grouped so that algorithms drawn together never share a colour (tests/test_figures.py checks it).
# Hand-designed or non-meta-learned baselines are dashed or dotted, learned methods solid, as in the papers.
ALGORITHMS: dict[str, Identity] = {
    # gradient-based meta-learning (the sine figures draw these together)
    "maml": Identity(OKABE["blue"], "o", "-", "MAML"),
    "fomaml": Identity(OKABE["sky"], "s", "-", "first-order MAML"),
    "reptile": Identity(OKABE["green"], "^", "-", "Reptile"),
    "pretrain": Identity(GREY, "v", "--", "pre-training"),
    "baselinepp": Identity(TOL["olive"], "d", "--", "Baseline++"),
    # metric learning and memory-based few-shot classifiers (the Omniglot / Mini-ImageNet tables and curves)
    "protonet": Identity(OKABE["vermillion"], "D", "-", "ProtoNet"),
    "matchingnet": Identity(OKABE["purple"], "P", "-", "Matching Nets"),
    "relationnet": Identity(OKABE["orange"], "X", "-", "Relation Net"),
    "siamese": Identity(TOL["wine"], "*", "-", "Siamese Nets"),
    "hallucination": Identity(TOL["teal"], "h", "-", "Hallucination"),
    "meta-lstm": Identity(TOL["indigo"], "<", "-", "Meta-LSTM"),
    "mann": Identity(TOL["magenta"], ">", "-", "MANN"),
    "snail": Identity(TOL["tolgreen"], "p", "-", "SNAIL"),
    "blackbox-lstm": Identity(TOL["cyan"], "H", "-.", "black-box LSTM"),
    "pixels-1nn": Identity(OKABE["black"], "8", ":", "pixels 1-NN"),
    # learned and hand-designed optimizers (the MNIST transfer figures draw these together)
    "lstm-optimizer": Identity(OKABE["vermillion"], "o", "-", "LSTM optimizer"),
    "gated-lstm-optimizer": Identity(OKABE["purple"], "s", "-", "gated LSTM optimizer"),
    "sgd": Identity(OKABE["black"], "^", "--", "SGD"),
    "rmsprop": Identity(OKABE["green"], "v", "--", "RMSprop"),
    "adam": Identity(OKABE["blue"], "D", "--", "Adam"),
    "nag": Identity(OKABE["orange"], "P", "--", "NAG"),
}

# which algorithms share figures: colours (and markers) are unique inside each group
FAMILIES = {
    "regression": ("maml", "fomaml", "reptile", "pretrain", "baselinepp"),
    "classification": ("maml", "fomaml", "reptile", "pretrain", "baselinepp", "protonet", "matchingnet",
                       "relationnet", "siamese", "hallucination", "meta-lstm", "mann", "snail", "blackbox-lstm",
                       "pixels-1nn"),
    "optimizer": ("lstm-optimizer", "gated-lstm-optimizer", "sgd", "rmsprop", "adam", "nag"),
}


def _digest(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def identity(name: str) -> Identity:
    """The identity of an algorithm: the built-in table, or for any other name (a plugin) one derived from a
    stable hash of the name, its display name the name itself."""
    name = str(name)
    if name in ALGORITHMS:
        return ALGORITHMS[name]
    h = _digest(name)
    # independent-ish digits of one hash; solid lines are twice as likely (plugins are usually learned methods)
    return Identity(PALETTE[h % len(PALETTE)], MARKERS[(h // len(PALETTE)) % len(MARKERS)],
                    ("-", "-", "--", "-.")[(h // (len(PALETTE) * len(MARKERS))) % 4], name)


def color(name: str) -> str:
    return identity(name).color


def display(name: str) -> str:
    return identity(name).display


# -- benchmarks ---------------------------------------------------------------------------------------------

BENCHMARK_COLORS = {"sine": OKABE["blue"], "omniglot": OKABE["vermillion"], "omniglot-lake": OKABE["orange"],
                    "miniimagenet": OKABE["green"], "mnist": OKABE["purple"]}
DATASET_NAMES = {"omniglot": "Omniglot", "omniglot-lake": "Omniglot (Lake split)", "miniimagenet": "Mini-ImageNet"}
MNIST_VARIANTS = {"base": "MNIST", "200steps": "MNIST, 200 steps", "40units": "MNIST, 40 units",
                  "2layers": "MNIST, 2 layers", "relu": "MNIST, ReLU"}
_MNIST_ORDER = tuple(MNIST_VARIANTS)


def benchmark_display(name: str) -> str:
    """"omniglot-5w1s" -> "Omniglot 5-way 1-shot", "sine-k10" -> "sine, K = 10", "mnist-relu" -> "MNIST, ReLU";
    names of no known pattern are returned as they are."""
    name = str(name)
    m = re.fullmatch(r"(omniglot-lake|omniglot|miniimagenet)-(\d+)w(\d+)s", name)
    if m:
        return f"{DATASET_NAMES[m.group(1)]} {m.group(2)}-way {m.group(3)}-shot"
    m = re.fullmatch(r"sine-k(\d+)", name)
    if m:
        return f"sine, K = {m.group(1)}"
    m = re.fullmatch(r"mnist-(.+)", name)
    if m and m.group(1) in MNIST_VARIANTS:
        return MNIST_VARIANTS[m.group(1)]
    return name


def benchmark_identity(name: str) -> Identity:
    """Benchmarks of one dataset share a colour (the family is what a trend plot groups by); the setting picks
    the marker, so omniglot-5w1s and omniglot-20w1s differ on the same axes."""
    name = str(name)
    family = next((f for f in sorted(BENCHMARK_COLORS, key=len, reverse=True) if name.startswith(f + "-")), None)
    h = _digest(name)
    colour = BENCHMARK_COLORS[family] if family else PALETTE[h % len(PALETTE)]
    return Identity(colour, MARKERS[h % len(MARKERS)], "-", benchmark_display(name))


def benchmark_order(names) -> list[str]:
    """The papers' order: sine by K, then Omniglot / Mini-ImageNet by ways and shots, MNIST's training problem
    before its transfer tests; unknown names last, in the order given."""
    def key(item):
        i, name = item
        m = re.fullmatch(r"sine-k(\d+)", name)
        if m:
            return (0, "", int(m.group(1)), 0, i)
        m = re.fullmatch(r"(omniglot-lake|omniglot|miniimagenet)-(\d+)w(\d+)s", name)
        if m:
            dataset = ("omniglot", "omniglot-lake", "miniimagenet").index(m.group(1))
            return (1 + dataset, "", int(m.group(2)), int(m.group(3)), i)
        m = re.fullmatch(r"mnist-(.+)", name)
        if m and m.group(1) in _MNIST_ORDER:
            return (5, "", _MNIST_ORDER.index(m.group(1)), 0, i)
        return (9, "", 0, 0, i)
    return [name for _, name in sorted(enumerate(dict.fromkeys(map(str, names))), key=key)]


# -- matplotlib settings per output style -------------------------------------------------------------------

SINGLE_COLUMN_IN = 3.25   # a two-column paper's \columnwidth (NeurIPS/ICML/IEEE are 3.25-3.3 in)
DOUBLE_COLUMN_IN = 6.75   # its \textwidth
STYLES = ("screen", "paper")


def rc(style: str) -> dict:
    """rcParams for a style. `paper` figures are drawn at their printed size with 8 pt text, so \\includegraphics
    at \\columnwidth / \\textwidth needs no scaling and the text stays 8 pt (the size of a caption). Fonts are
    embedded as TrueType (pdf.fonttype 42: Type 3 fonts are refused by some publishers' checks). svg.hashsalt
    and a fixed DPI make every output byte-stable."""
    if style not in STYLES:
        raise ValueError(f"unknown figure style {style!r}; one of {', '.join(STYLES)}")
    common = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.hashsalt": "metabench", "savefig.dpi": 150,
              "figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3, "legend.frameon": False,
              "axes.spines.top": False, "axes.spines.right": False, "font.family": "DejaVu Sans",
              "path.simplify": True}
    if style == "paper":
        return {**common, "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7,
                "ytick.labelsize": 7, "legend.fontsize": 7, "legend.title_fontsize": 7, "lines.linewidth": 1.0,
                "lines.markersize": 3, "axes.linewidth": 0.6, "grid.linewidth": 0.4, "xtick.major.width": 0.6,
                "ytick.major.width": 0.6, "savefig.dpi": 300}
    return {**common, "font.size": 10, "axes.titlesize": 10, "legend.fontsize": 9, "lines.linewidth": 1.5,
            "lines.markersize": 4}


def algorithm_order(names) -> list[str]:
    """Built-in algorithms in the table's order (families together, MAML first), then others alphabetically:
    every figure lists algorithms, and so its legend, in the same order."""
    names = list(dict.fromkeys(map(str, names)))
    known = [n for n in ALGORITHMS if n in names]
    return known + sorted(n for n in names if n not in ALGORITHMS)
