"""`metabench leaderboard`: the static site built from a database of the committed runs (plus a regressed copy
of the gate baseline), checked as files and in headless Chromium: tables, ranks, sorting by clicking a header,
every link and image resolving, no console error, readable on a phone (screenshots under tmp_path)."""
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from test_db import BASELINE, LATER, REFERENCE, copy_run

from bench.cli import main

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("leaderboard")
    url = f"sqlite:///{root / 'results.sqlite'}"
    same = copy_run(root / "runs" / "same", "gate-rerun", "3" * 40, "2099-11-30T00:00:00+00:00")
    worse = copy_run(root / "runs" / "worse", "gate-lr0", "4" * 40, LATER, worse={"sine-k5/maml/seed0": 1.5})
    assert main(["db", "add", *sorted(map(str, REFERENCE.glob("*/"))), str(BASELINE), str(same), str(worse),
                 "--db", url]) == 0
    out = root / "site"
    assert main(["leaderboard", "--db", url, "--out", str(out)]) == 0
    return out


def results(site: Path) -> dict:
    return json.loads((site / "results.json").read_text())


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for key in ("href", "src"):
            if attrs.get(key) is not None:
                self.targets.append((tag, attrs[key]))


def test_site_files_are_self_contained_and_escaped(site):
    pages = sorted(site.rglob("*.html"))
    assert (site / "index.html") in pages and any(p.parent.name == "runs" for p in pages)
    anchors = {}
    for page in pages:
        parser = Links()
        parser.feed(page.read_text())
        anchors[page.resolve()] = parser.ids
    for page in pages:
        text = page.read_text()
        assert "`" not in text, f"{page}: a literal backtick (markdown leaked into HTML)"
        assert '<meta name="viewport"' in text and '<html lang="en">' in text
        parser = Links()
        parser.feed(text)
        for tag, target in parser.targets:
            parsed = urlparse(target)
            assert not parsed.scheme and not parsed.netloc, f"{page}: {tag} {target} leaves the site (CDN or server)"
            if not parsed.path:
                assert parsed.fragment in parser.ids, f"{page}: #{parsed.fragment} has no target"
                continue
            dest = (page.parent / unquote(parsed.path)).resolve()
            assert dest.is_file(), f"{page}: {tag} {target} does not resolve"
            if parsed.fragment and dest.suffix == ".html":
                assert parsed.fragment in anchors[dest], f"{page}: {target} has no such anchor"
    for svg in site.rglob("*.svg"):
        assert "http://www.w3.org/2000/svg" in svg.read_text() and "<script" not in svg.read_text()


def test_results_json_schema(site):
    doc = results(site)
    assert doc["schema"] == "metabench-leaderboard" and doc["schema_version"] == 1
    # every benchmark with a finished cell in the committed runs has its table
    stored = {c["benchmark"] for m in [*REFERENCE.rglob("manifest.json"), BASELINE / "manifest.json"]
              for c in json.loads(m.read_text())["cells"] if c.get("status") == "ok"}
    assert {b["name"] for b in doc["benchmarks"]} == stored
    sine = next(b for b in doc["benchmarks"] if b["name"] == "sine-k5")
    assert sine["headline_metric"] == "mse@10" and sine["higher_is_better"] is False
    gate = next(p for p in sine["profiles"] if p["profile"] == "gate")
    maml = next(r for r in gate["rows"] if r["algorithm"] == "maml" and r["metric"] == "mse@10")
    # the gate row shows the latest version: the regressed copy, no longer first
    assert maml["published"] == 0.35 and maml["runs"] == ["gate-lr0"] and maml["commit"] == "4" * 40
    assert maml["rank"] > 1 and maml["difference"] == pytest.approx(maml["mean"] - 0.35)
    series = next(s for s in doc["series"]
                  if (s["benchmark"], s["algorithm"], s["profile"]) == ("sine-k5", "maml", "gate"))
    assert [p["verdict"] for p in series["points"]] == [None, "same", "worse"]
    assert series["points"][-1]["commit"] == "4" * 40 and series["points"][-1]["compared_with"] == "3333333333"
    # byte-stable: rebuilding from the same database changes nothing
    before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    assert main(["leaderboard", "--db", f"sqlite:///{site.parent / 'results.sqlite'}", "--out", str(site)]) == 0
    assert {p: p.read_bytes() for p in site.rglob("*") if p.is_file()} == before


# ---------------------------------------------------------------------------------------------------------
# in a real browser


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the browser tests need the playwright package: pip install 'metabench[browser]'")
    executable = os.environ.get("METABENCH_CHROMIUM") or next(
        (p for p in CHROMIUM_CANDIDATES if Path(p).is_file()), None) or shutil.which("chromium")
    if not executable:
        pytest.skip("no Chromium found; install the distribution's chromium package (.ci/system-packages.sh does) "
                    "or point METABENCH_CHROMIUM at a Chromium binary")
    with sync_playwright() as p:
        try:
            # the distribution's Chromium, not a downloaded build: CI has no network beyond package registries
            chromium = p.chromium.launch(executable_path=executable,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        except Exception as exc:  # noqa: BLE001 — any launch failure is a reason to skip, printed in full
            pytest.skip(f"Chromium at {executable} did not start: {str(exc).splitlines()[0]}")
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    yield page
    context.close()


def _table_rows(page, table_id: str) -> list[list[str]]:
    return page.eval_on_selector(
        f"table#{table_id}",
        "t => Array.from(t.tBodies[0].rows).map(r => Array.from(r.cells).map(c => c.textContent.trim()))")


def _images_loaded(page) -> list[str]:
    return page.eval_on_selector_all(
        "img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")


def test_index_tables_ranks_and_sorting(site, page, tmp_path):
    doc = results(site)
    page.goto((site / "index.html").as_uri())
    tables = page.locator("table.leaderboard")
    assert tables.count() == sum(len(b["profiles"]) for b in doc["benchmarks"])
    for bench in doc["benchmarks"]:  # every benchmark has its table, with the published column
        assert page.locator(f"h2#{bench['name']}").count() == 1
    headers = page.eval_on_selector(
        "table#sine-k5--gate", "t => Array.from(t.tHead.rows[0].cells).map(c => c.textContent.trim())")
    assert headers[:6] == ["Rank", "Algorithm", "Metric", "Mean ± 95% CI", "n", "Published ± CI"]
    gate = next(p for b in doc["benchmarks"] if b["name"] == "sine-k5" for p in b["profiles"] if p["profile"] == "gate")
    rows = _table_rows(page, "sine-k5--gate")
    assert len(rows) == len(gate["rows"]) == 4 * 3  # four algorithms × the paper's mse@1, mse@5, mse@10
    assert [r[0].split()[0] for r in rows] == [str(r["rank"]) for r in gate["rows"]]
    assert [r[1] for r in rows] == [r["algorithm"] for r in gate["rows"]] and rows[0][0].startswith("1")
    ranks = [int(r[0].split()[0]) for r in rows]
    assert ranks == sorted(ranks) and ranks[0] == 1
    # click "Mean ± 95% CI": ascending by the mean, then descending
    means = lambda: [float(v) for v in page.eval_on_selector(
        "table#sine-k5--gate", "t => Array.from(t.tBodies[0].rows).map(r => r.cells[3].dataset.sort)")]
    header = page.locator("table#sine-k5--gate thead th", has_text="Mean").locator("button")
    header.click()
    assert means() == sorted(means()) and means() != [float(r["mean"]) for r in gate["rows"]]
    assert page.locator("table#sine-k5--gate thead th", has_text="Mean").get_attribute("aria-sort") == "ascending"
    header.click()
    assert means() == sorted(means(), reverse=True)
    page.locator("table#sine-k5--gate thead th", has_text="Algorithm").locator("button").click()
    algos = [r[1] for r in _table_rows(page, "sine-k5--gate")]
    assert algos == sorted(algos)
    assert _images_loaded(page) == []
    page.screenshot(path=str(tmp_path / "index.png"), full_page=True)
    assert (tmp_path / "index.png").stat().st_size > 10_000
    assert page.console_errors == []


def test_benchmark_page_marks_the_regression(site, page, tmp_path):
    page.goto((site / "benchmarks" / "sine-k5.html").as_uri())
    assert page.locator("img.chart").count() >= 4 and _images_loaded(page) == []
    section = page.locator('section[aria-labelledby="maml--gate"]')
    assert section.locator("h2 .badge", has_text="1 regression").count() == 1
    flagged = section.locator("tr.regression")
    assert flagged.count() == 1 and "4444444444" in flagged.inner_text() and "regression" in flagged.inner_text()
    chart = section.locator("img.chart").get_attribute("src")
    assert "significant regression" in (site / "benchmarks" / chart).resolve().read_text()
    # the other algorithms of that run are unchanged
    other = page.locator('section[aria-labelledby="pretrain--gate"]')
    assert other.locator("tr.regression").count() == 0
    # the run link leads to the run page with its provenance and reproduce command
    section.locator("tr.regression a", has_text="gate-lr0").click()
    assert page.url.endswith("/runs/gate-lr0.html")
    assert "git checkout 4444444444444444444444444444444444444444" in page.locator("pre").inner_text()
    assert page.locator("dl.provenance").count() == 1
    page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
    assert page.console_errors == []


def test_pages_load_without_console_errors(site, page):
    # every kind of page (the link check above covers every file): index, benchmarks, a few runs
    runs = sorted((site / "runs").glob("*.html"))
    for path in [site / "index.html", *sorted((site / "benchmarks").glob("*.html")), *runs[:3], *runs[-2:]]:
        page.goto(path.as_uri())
        assert page.locator("h1").count() == 1, path
        assert _images_loaded(page) == [], path
    assert page.console_errors == []


def test_readable_on_a_phone(site, browser, tmp_path):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    page = context.new_page()
    page.goto((site / "index.html").as_uri())
    # the page itself does not scroll sideways: wide tables scroll inside their own box
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.screenshot(path=str(tmp_path / "phone.png"))
    context.close()


def test_values_are_escaped_and_the_reproduce_command_is_exact(tmp_path):
    from bench.site.build import reproduce_command

    evil = '<img src=x onerror="alert(1)">`x`'
    run = copy_run(tmp_path / "evil", evil, "6" * 40, LATER)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.update(suite=evil, invocation={"suite": "gate", "benchmarks": [], "algorithms": ["maml"], "seeds": [0],
                                            "profile": None, "sets": ["maml.inner_lr=0", "a b=c d"], "config": None,
                                            "device": "cpu", "plugins": [], "data_root": "/data"})
    (run / "manifest.json").write_text(json.dumps(manifest))
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    assert main(["db", "add", str(run), "--db", url]) == 0
    assert main(["leaderboard", "--db", url, "--out", str(tmp_path / "site")]) == 0
    for page in (tmp_path / "site").rglob("*.html"):
        text = page.read_text()
        assert "<img src=x" not in text and "`" not in text, page
    page = next((tmp_path / "site" / "runs").glob("*.html"))
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page.read_text()
    stored = {"run_id": "r1", "commit_sha": "6" * 40, "manifest": manifest, "cells": []}
    assert reproduce_command(stored) == (f"git checkout {'6' * 40}\nmetabench run gate --algorithm maml --seed 0 "
                                         f"--set maml.inner_lr=0 --set 'a b=c d' --out results/runs/r1")
