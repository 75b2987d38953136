"""Paper-ready figures: one visual identity per algorithm, layouts, LaTeX tables, provenance, and image regression.

Every registered figure is drawn from the small committed fixture run (tests/fixtures/figure-run, trimmed from real
runs by its make_fixture.py) in both styles, and compared with a committed expected image in
tests/figures_expected/ (matplotlib's compare_images, RMS tolerance). A layout change therefore fails here until
the expected images are redrawn on purpose and reviewed:

    METABENCH_UPDATE_FIGURES=1 pytest tests/test_figures.py -k expected_image

The pdflatex and pdffonts checks skip with the reason where those tools are missing (.ci/system-packages.sh installs
them).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pytest
from matplotlib.colors import to_hex
from matplotlib.testing.compare import compare_images

from bench import latex, plots, style
from bench.cli import main

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "fixtures" / "figure-run"
EXPECTED = HERE / "figures_expected"
UPDATE = os.environ.get("METABENCH_UPDATE_FIGURES") == "1"
# RMS over 0-255 grey levels. The same matplotlib and FreeType redraw a figure exactly (RMS 0); the margin
# absorbs anti-aliasing differences between builds, while a moved panel, legend or tick label costs far more
# (test_a_layout_change_fails_the_comparison measures it).
TOLERANCE = 3.0
TEST_DPI = 60  # small committed images: enough to see every line, legend entry and label
# drawn from the fixture: every figure but the Mini-ImageNet table (no Mini-ImageNet run is committed anywhere;
# that table shares every line of code with the Omniglot one)
DRAWN = [n for n in plots.FIGURES if n != "miniimagenet-table"]
STYLES = ("screen", "paper")


def render(name: str, figure_style: str, out: Path) -> tuple[object, list[Path]]:
    """The Figure object of one figure (kept open) and the files drawing it wrote."""
    kept: list = []
    paths = plots.draw(name, [FIXTURE], out, figure_style, keep=kept)
    assert len(kept) == 1
    return kept[0], paths


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """Every drawable figure in both styles: {(name, style): (Figure, written paths)}."""
    out = tmp_path_factory.mktemp("figures")
    drawn = {(n, s): render(n, s, out / s) for n in DRAWN for s in STYLES}
    yield drawn
    for fig, _ in drawn.values():
        plt.close(fig)


def panels_of(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.axison]


# ---------------------------------------------------------------------------------------------------------
# the visual identity


def test_every_builtin_algorithm_has_an_identity_unique_in_its_family():
    import algorithms

    for name in algorithms.names():
        if name in style.ALGORITHMS:
            continue
        pytest.fail(f"algorithm {name!r} has no entry in bench/style.py ALGORITHMS (display name, colour, marker)")
    triples = [(i.color, i.marker, i.linestyle) for i in style.ALGORITHMS.values()]
    assert len(set(triples)) == len(triples)
    for family, names in style.FAMILIES.items():
        ids = [style.identity(n) for n in names]
        assert len({i.color for i in ids}) == len(ids), f"two {family} algorithms share a colour"
        assert len({i.marker for i in ids}) == len(ids), f"two {family} algorithms share a marker"


def test_a_plugin_algorithm_gets_a_stable_colour_from_its_name():
    a, b = style.identity("my-lab-meta-sgd"), style.identity("my-lab-meta-sgd")
    assert a == b and a.display == "my-lab-meta-sgd"
    assert a.color in style.PALETTE and a.marker in style.MARKERS
    # sha256, not Python's per-process salted hash(): the same colour in another interpreter
    code = "from bench import style; print(style.identity('my-lab-meta-sgd').color)"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "123"})
    assert other.stdout.strip() == a.color
    assert len({style.identity(f"plugin-{i}").color for i in range(40)}) > 5  # spread over the palette


def test_benchmark_names_and_order():
    assert style.benchmark_display("omniglot-20w5s") == "Omniglot 20-way 5-shot"
    assert style.benchmark_display("miniimagenet-5w1s") == "Mini-ImageNet 5-way 1-shot"
    assert style.benchmark_display("sine-k10") == "sine, K = 10"
    assert style.benchmark_display("mnist-2layers") == "MNIST, 2 layers"
    assert style.benchmark_order(["mnist-relu", "sine-k10", "omniglot-20w1s", "sine-k5", "mnist-base",
                                  "omniglot-5w1s"]) == ["sine-k5", "sine-k10", "omniglot-5w1s", "omniglot-20w1s",
                                                        "mnist-base", "mnist-relu"]


def test_maml_has_the_same_colour_in_every_figure(figures):
    """Reads the drawn artists: every line (or table label) tagged with an algorithm has that algorithm's colour,
    and MAML appears, in its blue, in several figures of both styles."""
    with_maml = set()
    for (name, figure_style), (fig, _) in figures.items():
        tagged = [a for a in fig.findobj(lambda a: str(a.get_gid() or "").startswith("algorithm:"))]
        # a table's cell texts are not among findobj's children
        tagged += [cell.get_text() for ax in fig.axes for table in ax.tables for cell in table.get_celld().values()
                   if str(cell.get_text().get_gid() or "").startswith("algorithm:")]
        for artist in tagged:
            algo = artist.get_gid().split(":", 1)[1]
            assert to_hex(artist.get_color()) == style.color(algo), (name, figure_style, algo)
            if algo == "maml":
                with_maml.add((name, figure_style))
    assert {n for n, _ in with_maml} >= {"maml-sine-steps", "maml-sine-fits", "reptile-vs-maml-vs-pretrain",
                                         "training-curves", "omniglot-table"}
    assert {s for _, s in with_maml} == set(STYLES)


# ---------------------------------------------------------------------------------------------------------
# layout


def _labelled(fig) -> list[str]:
    labels = []
    for ax in panels_of(fig):
        for artist in ax.get_lines() + ax.collections:
            label = artist.get_label()
            if label and not label.startswith("_"):
                labels.append(label)
    return list(dict.fromkeys(labels))


@pytest.mark.parametrize("name", [n for n in DRAWN if n not in plots.TABLES])
def test_one_shared_legend_listing_exactly_the_lines_drawn(figures, name):
    for figure_style in STYLES:
        fig, _ = figures[(name, figure_style)]
        assert all(ax.get_legend() is None for ax in fig.axes), "one legend for the figure, not per panel"
        assert len(fig.legends) == 1
        entries = [t.get_text() for t in fig.legends[0].get_texts()]
        assert len(entries) == len(set(entries))
        assert entries == _labelled(fig)


def test_the_gated_gate_panel_with_six_tensors_has_all_six_in_the_legend(figures):
    fig, _ = figures[("l2l-gated-gates", "screen")]
    two_layers = next(ax for ax in fig.axes if "2 layers" in ax.get_title())
    drawn = [line.get_label() for line in two_layers.get_lines()]
    assert len(drawn) == 6
    assert set(drawn) <= {t.get_text() for t in fig.legends[0].get_texts()}


@pytest.mark.parametrize("name", [n for n in DRAWN if n not in plots.TABLES])
def test_panels_wrap_are_labelled_and_paper_widths_hold(figures, name):
    for figure_style in STYLES:
        fig, _ = figures[(name, figure_style)]
        axes = panels_of(fig)
        columns = {round(ax.get_position().x0, 3) for ax in axes}
        assert len(columns) <= plots.MAX_COLUMNS, f"{len(columns)} panels in a row"
        assert all(ax.get_title() for ax in axes), "every panel has a title"
        if len(axes) > 1:
            assert all(ax.get_title().startswith("(") for ax in axes), "panels lettered (a), (b), ..."
        assert any(ax.get_xlabel() for ax in axes) and any(ax.get_ylabel() for ax in axes)
        rows = {}
        for ax in axes:
            rows.setdefault(round(ax.get_position().y0, 3), []).append(ax)
        for row in rows.values():  # each row has its y label
            assert any(ax.get_ylabel() for ax in row)
        if figure_style == "paper":
            assert round(fig.get_size_inches()[0], 2) in (style.SINGLE_COLUMN_IN, style.DOUBLE_COLUMN_IN)


def test_maml_sine_fits_has_axis_labels(figures):
    fig, _ = figures[("maml-sine-fits", "screen")]
    axes = panels_of(fig)
    assert len(axes) == 4
    assert {ax.get_xlabel() for ax in axes} >= {"x"} and {ax.get_ylabel() for ax in axes} >= {"y"}


@pytest.mark.parametrize("name", ["maml-sine-steps", "training-curves", "l2l-mnist-curves"])
def test_log_axes_have_plain_tick_labels(figures, name):
    fig, _ = figures[(name, "screen")]
    fig.canvas.draw()
    logs = [ax for ax in panels_of(fig) if ax.get_yscale() == "log"]
    assert logs
    for ax in logs:
        texts = [t.get_text() for t in ax.get_yticklabels(minor=False) + ax.get_yticklabels(minor=True)]
        shown = [t for t in texts if t]
        assert shown, "some tick is labelled"
        assert not any("times" in t or "^" in t or "$" in t or "×" in t for t in shown), shown
        for t in shown:
            float(t)


@pytest.mark.parametrize("name", ["maml-sine-steps", "metalstm-gates", "l2l-mnist-curves", "l2l-gated-gates",
                                  "reptile-vs-maml-vs-pretrain", "training-curves"])
def test_whole_number_axes_have_whole_number_ticks(figures, name):
    fig, _ = figures[(name, "screen")]
    fig.canvas.draw()
    for ax in panels_of(fig):
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


# ---------------------------------------------------------------------------------------------------------
# image regression


def _as_png(fig, path: Path) -> Path:
    """The figure at TEST_DPI, reduced to 64 colours (no dithering) so the committed images stay small; the
    reduction is deterministic, and expected and actual images go through the same one."""
    from PIL import Image

    fig.savefig(path, dpi=TEST_DPI, metadata={"Software": None})
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)
    return path


def _renderer() -> dict:
    from matplotlib import ft2font

    return {"matplotlib": ".".join(matplotlib.__version__.split(".")[:2]), "freetype": ft2font.__freetype_version__}


def _same_renderer() -> None:
    """Text rasterisation changes between matplotlib releases and FreeType builds: against images drawn by
    another one the comparison would fail for reasons that are not layout, so it says so and skips."""
    recorded = EXPECTED / "drawn-with.json"
    if recorded.is_file():
        then, now = json.loads(recorded.read_text()), _renderer()
        if then != now:
            pytest.skip(f"expected images were drawn with {then}, this is {now}: redraw them with "
                        f"METABENCH_UPDATE_FIGURES=1 (and review) to compare here")


@pytest.mark.parametrize("figure_style", STYLES)
@pytest.mark.parametrize("name", DRAWN)
def test_expected_image(figures, tmp_path, name, figure_style):
    fig, _ = figures[(name, figure_style)]
    actual = _as_png(fig, tmp_path / f"{name}.{figure_style}.png")
    expected = EXPECTED / f"{name}.{figure_style}.png"
    if UPDATE:
        EXPECTED.mkdir(exist_ok=True)
        shutil.copyfile(actual, expected)
        (EXPECTED / "drawn-with.json").write_text(json.dumps(_renderer(), sort_keys=True) + "\n")
        pytest.skip(f"wrote {expected}: review it before committing")
    _same_renderer()
    if not expected.is_file():
        pytest.fail(f"no expected image {expected}; draw it with METABENCH_UPDATE_FIGURES=1 and review it")
    result = compare_images(str(expected), str(actual), tol=TOLERANCE)
    assert result is None, (f"{name} ({figure_style}) differs from {expected}: {result}. If the change is "
                            f"intended, redraw with METABENCH_UPDATE_FIGURES=1 and review the new image")


@pytest.mark.parametrize("change", ["columns", "font"])
def test_a_layout_change_fails_the_comparison(tmp_path, monkeypatch, change):
    """The comparison is strict enough to catch layout: two panels per row instead of three, or bigger text."""
    expected = EXPECTED / "l2l-mnist-curves.screen.png"
    if not expected.is_file():
        pytest.skip("no expected image yet (METABENCH_UPDATE_FIGURES=1)")
    _same_renderer()
    if change == "columns":
        monkeypatch.setattr(plots, "MAX_COLUMNS", 2)
    else:
        rc = style.rc
        monkeypatch.setattr(style, "rc", lambda s: {**rc(s), "font.size": 12, "axes.titlesize": 12})
    fig, _ = render("l2l-mnist-curves", "screen", tmp_path / "out")
    actual = _as_png(fig, tmp_path / "changed.png")
    plt.close(fig)
    try:
        result = compare_images(str(expected), str(actual), tol=TOLERANCE)
    except matplotlib.testing.exceptions.ImageComparisonFailure as exc:  # a different image size
        result = str(exc)
    assert result is not None


def test_the_same_runs_give_byte_identical_files(tmp_path):
    for figure_style in STYLES:
        a = plots.draw("maml-sine-steps", [FIXTURE], tmp_path / "a" / figure_style, figure_style)
        b = plots.draw("maml-sine-steps", [FIXTURE], tmp_path / "b" / figure_style, figure_style)
        for x, y in zip(a, b):
            assert x.read_bytes() == y.read_bytes(), x.name


# ---------------------------------------------------------------------------------------------------------
# outputs: formats, provenance, fonts


def test_styles_write_their_formats_and_a_provenance_sidecar(figures):
    for figure_style, suffixes in (("screen", {".png", ".pdf", ".json"}), ("paper", {".pdf", ".svg", ".json"})):
        _, paths = figures[("maml-sine-steps", figure_style)]
        assert {p.suffix for p in paths} == suffixes
        sidecar = json.loads(next(p for p in paths if p.suffix == ".json").read_text())
        assert sidecar["figure"] == "maml-sine-steps" and sidecar["style"] == figure_style
        assert [r["run_id"] for r in sidecar["runs"]] == ["figure-fixture"]
        assert sidecar["runs"][0]["commit"] and "metabench figures maml-sine-steps --from" in sidecar["command"]
        pdf = next(p for p in paths if p.suffix == ".pdf").read_bytes()
        assert b"figure-fixture" in pdf and b"CreationDate" not in pdf  # provenance in, no date
    svg = next(p for p in figures[("maml-sine-steps", "paper")][1] if p.suffix == ".svg").read_text()
    assert "figure-fixture" in svg and "metabench figures maml-sine-steps" in svg and "<dc:date>" not in svg


def test_table_figures_are_also_csv_markdown_and_latex(figures):
    _, paths = figures[("omniglot-table", "paper")]
    assert {p.suffix for p in paths} == {".pdf", ".svg", ".csv", ".md", ".tex", ".json"}
    tex = next(p for p in paths if p.suffix == ".tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "published" in tex
    assert "MAML & $92.15 \\pm 0.49$ & $98.7 \\pm 0.4$" in tex  # ours beside the published value
    md = next(p for p in paths if p.suffix == ".md").read_text()
    assert "| maml | 92.15 ± 0.49 (98.7 ± 0.4) |" in md


def test_paper_pdfs_embed_their_fonts(figures):
    if not shutil.which("pdffonts"):
        pytest.skip("pdffonts is not installed (poppler-utils; .ci/system-packages.sh installs it)")
    for name in DRAWN:
        pdf = next(p for p in figures[(name, "paper")][1] if p.suffix == ".pdf")
        lines = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout.splitlines()
        fonts = lines[2:]
        assert fonts, f"{pdf.name}: no fonts"
        for line in fonts:
            # columns: name type encoding emb sub uni object ID; the type may be two words (CID TrueType)
            emb = line.split()[-5]
            assert emb == "yes", f"{pdf.name}: font not embedded: {line}"
            assert "Type 3" not in line, f"{pdf.name}: Type 3 font: {line}"


def test_every_latex_table_compiles_with_booktabs(figures, tmp_path):
    if not shutil.which("pdflatex"):
        pytest.skip("pdflatex is not installed (texlive-latex-base + texlive-latex-recommended; "
                    ".ci/system-packages.sh installs them)")
    tables = [p for n in DRAWN if n in plots.TABLES for s in STYLES for p in figures[(n, s)][1] if p.suffix == ".tex"]
    # and one with a bold best and LaTeX's special characters in a name
    extra = tmp_path / "special.tex"
    extra.write_text(latex.booktabs(["A_b & 100%", "c"], ["s#1"], {("A_b & 100%", "s#1"): latex.Cell(90.0, 0.5, 91.0),
                                                                   ("c", "s#1"): latex.Cell(80.0, 0.5)},
                                    fmt=lambda m, c, _: f"{m:.1f} ± {c:.1f}" if c == c else f"{m:.1f}"))
    assert tables
    for tex in tables + [extra]:
        doc = tmp_path / f"doc-{tex.stem}.tex"
        doc.write_text(latex.standalone(f"\\input{{{tex.as_posix()}}}\n"))
        proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{tex.name} does not compile:\n{proc.stdout[-2000:]}"


def test_bold_only_where_the_best_ci_overlaps_no_other():
    cells = {"a": latex.Cell(90.0, 0.5), "b": latex.Cell(89.0, 0.4), "c": latex.Cell(70.0, 1.0)}
    assert latex.best_in_column(cells) == "a"
    assert latex.best_in_column({**cells, "b": latex.Cell(89.6, 0.5)}) is None  # 89.5..90.5 vs 89.1..90.1
    assert latex.best_in_column({"a": latex.Cell(1.0, 0.1), "b": latex.Cell(2.0, 0.1)}, higher_is_better=False) == "a"
    assert latex.best_in_column({"a": latex.Cell(90.0, 0.5)}) is None  # nothing to be better than
    tex = latex.booktabs(["a", "b"], ["s"], {("a", "s"): cells["a"], ("b", "s"): cells["b"]},
                         fmt=lambda m, c, _: f"{m:.1f} ± {c:.1f}")
    assert "$\\mathbf{90.0 \\pm 0.5}$" in tex and "$89.0 \\pm 0.4$" in tex
    assert latex.escape("a_b & 5% #1 {x}") == "a\\_b \\& 5\\% \\#1 \\{x\\}"


# ---------------------------------------------------------------------------------------------------------
# the command line


def test_figures_paper_writes_the_set_in_the_paper_style(tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["figures", "paper", "maml2017", "--from", str(FIXTURE), "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"maml-sine-fits.pdf", "maml-sine-steps.svg", "omniglot-table.tex", "omniglot-table.json"} <= names
    assert not any(n.endswith(".png") for n in names)
    assert "miniimagenet-table" in capsys.readouterr().err  # skipped, with what it needs
    sidecar = json.loads((out / "maml-sine-steps.json").read_text())
    assert sidecar["command"].startswith("metabench figures paper maml2017 --from")
    assert main(["figures", "paper"]) == 0 and "l2l2016" in capsys.readouterr().out
    assert main(["figures", "paper", "nope"]) == 2


def test_figures_paper_defaults_to_the_committed_reference_runs(tmp_path):
    runs = plots.paper_runs("maml2017")
    if not runs:
        pytest.skip(f"no committed reference runs under {plots.reference_root()}")
    out = tmp_path / "figs"
    assert main(["figures", "paper", "maml2017", "--out", str(out), "-q"]) == 0
    sidecar = json.loads((out / "maml-sine-steps.json").read_text())
    assert sidecar["runs"] and all(r["commit"] for r in sidecar["runs"])


def test_figures_style_option(tmp_path):
    out = tmp_path / "figs"
    assert main(["figures", "maml-sine-steps", "--from", str(FIXTURE), "--out", str(out), "--style", "paper",
                 "-q"]) == 0
    assert {p.suffix for p in out.iterdir()} == {".pdf", ".svg", ".json"}
