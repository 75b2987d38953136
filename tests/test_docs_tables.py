"""Every results table in README.md and docs/ is generated from committed run folders, and every committed
reference run is clean and says what made it (DESIGN.md "Results are data, documents are generated")."""
import json
import shutil
from pathlib import Path

import pytest

from bench import docs_tables

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_MANIFESTS = sorted((ROOT / "results").glob("reference/**/manifest.json")) + \
    [ROOT / "results" / "baseline" / "manifest.json"]


def check(*paths) -> int:
    class Args:
        action, files = "check", list(paths)
    return docs_tables.command(Args)


def test_every_generated_table_in_the_docs_is_what_its_run_folders_give(monkeypatch):
    monkeypatch.chdir(ROOT)  # block commands name run folders relative to the repository
    files = docs_tables.markdown_files([ROOT / "README.md", ROOT / "docs"])
    blocks = sum(len(docs_tables.BLOCK.findall(f.read_text())) for f in files)
    assert blocks >= 2, "README.md and docs/ should hold generated tables"
    assert check(ROOT / "README.md", ROOT / "docs") == 0


def test_a_number_edited_by_hand_inside_a_generated_table_fails_the_check(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    page = tmp_path / "page.md"
    page.write_text("Intro\n<!-- metabench: report results/reference/sine-default --format md -->\n"
                    "<!-- /metabench -->\nOutro\n")
    class Update:
        action, files = "update", [page]
    assert docs_tables.command(Update) == 0
    generated = page.read_text()
    assert "| maml |" in generated and generated.startswith("Intro\n") and generated.endswith("Outro\n")
    assert check(page) == 0
    row = next(line for line in generated.splitlines() if line.startswith("| maml |"))
    cells = row.split(" | ")
    cells[2] = "0.123 ± 0.01"  # the mean of the first metric, typed over
    page.write_text(generated.replace(row, " | ".join(cells)))
    assert check(page) == 1


def test_a_block_with_a_bad_command_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    page = tmp_path / "page.md"
    page.write_text("<!-- metabench: report results/reference/no-such-run --format md -->\n<!-- /metabench -->\n")
    with pytest.raises(docs_tables.DocsError, match=r"page\.md:1: .*no-such-run"):
        check(page)


@pytest.mark.parametrize("manifest", REFERENCE_MANIFESTS, ids=lambda p: str(p.parent.relative_to(ROOT)))
def test_reference_runs_are_clean_and_record_their_provenance(manifest):
    m = json.loads(manifest.read_text())
    assert m.get("commit"), f"{manifest}: no commit recorded"
    assert m.get("dirty") is False, f"{manifest}: made on a checkout with uncommitted changes {m.get('dirty_files')}"
    provenance = m.get("provenance") or {}
    for key in ("native_kernel", "threads", "plugins", "thread_env"):
        assert key in provenance, f"{manifest}: provenance does not record {key}"
    # a long grid may be resumed across sessions (the config hash check refuses changed cells), on its own code only
    for resumption in m.get("resumed_on", []):
        assert (resumption["commit"], resumption["dirty"]) == (m["commit"], False), \
            f"{manifest}: resumed on {resumption['commit']} (dirty: {resumption['dirty']}), started on {m['commit']}"
    assert len(m.get("resumed_on", [])) == len(m.get("resumed", [])), f"{manifest}: resumed without a recorded commit"
    assert all(c["status"] == "ok" for c in m["cells"]), f"{manifest}: unfinished or failed cells"


@pytest.mark.parametrize("manifest", REFERENCE_MANIFESTS, ids=lambda p: str(p.parent.relative_to(ROOT)))
def test_reference_runs_are_what_the_current_configuration_would_run(manifest):
    """A committed reference cell's configuration hash is the one benchmarks.yaml gives that cell today (with the
    run's own --set values): a changed budget or hyper-parameter without a re-run would leave the docs tables
    showing numbers of a configuration the suite no longer runs."""
    from bench.config import Config
    m = json.loads(manifest.read_text())
    config = Config.load(sets=list(m.get("set") or []))
    stale = [c["key"] for c in m["cells"]
             if config.cell(c["benchmark"], c["algorithm"], c["seed"], m["profile"]).config_hash != c["config_hash"]]
    assert not stale, (f"{manifest.parent.relative_to(ROOT)}: {len(stale)} cell(s) configured differently now, "
                       f"e.g. {stale[0]}; re-run the folder's command (its README) and replace the folder")


def test_results_holds_data_only_and_the_readme_is_a_guide():
    scripts = [p for p in (ROOT / "results").rglob("*") if p.suffix in (".py", ".sh", ".ipynb")]
    assert not scripts, f"scripts under results/ (move them to experiments/<topic>/): {scripts}"
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200
    assert (ROOT / "docs" / "regression-gate.md").is_file()


def test_docs_links_resolve():
    import re
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)}: broken link {target}"


def test_check_on_a_copy_of_the_repository_docs_needs_only_committed_files(monkeypatch, tmp_path):
    """The generated blocks read results/ only (no run of training, no network)."""
    shutil.copytree(ROOT / "results", tmp_path / "results")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    monkeypatch.chdir(tmp_path)
    assert check(tmp_path / "README.md") == 0
