"""A suite's `reuse:` folders: a grid cell whose configuration hash equals an ok cell of an earlier run folder made
on a clean commit is taken from that folder (not trained again), its rows are the folder's own, and its manifest
entry says where it came from; a dirty or missing folder is named and its cells are run."""
import json

import pytest

from bench.cli import main

SUITE = """\
suites:
  table:
    description: a grid that reuses an earlier run's cells
    benchmarks: [sine-k5]
    algorithms: [pretrain, fomaml, maml]
    seeds: [0]
    profile: smoke
    reuse: [{earlier}]
"""
TINY = ["--set", "budget.meta_iters=4", "--set", "budget.test_episodes=6", "--no-progress", "--no-figures"]


def rows(path, algorithm):
    return [line for line in path.read_text().splitlines() if f",{algorithm}," in line]


@pytest.fixture
def earlier(tmp_path):
    folder = tmp_path / "earlier"
    assert main(["run", "--benchmark", "sine-k5", "--algorithm", "pretrain", "--algorithm", "fomaml",
                 "--profile", "smoke", "--out", str(folder), *TINY]) == 0
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["dirty"] = False  # as if made on a clean commit (this test's checkout may have edits)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_cells_of_a_clean_earlier_run_are_taken_not_run(tmp_path, earlier, capsys):
    overlay = tmp_path / "suite.yaml"
    overlay.write_text(SUITE.format(earlier=earlier.name))  # relative: read against the overlay's folder
    out = tmp_path / "table"
    assert main(["run", "table", "--config", str(overlay), "--out", str(out), *TINY]) == 0
    err = capsys.readouterr().err
    assert "reuse: sine-k5/pretrain/seed0 from" in err and "reuse: sine-k5/maml" not in err
    manifest = json.loads((out / "manifest.json").read_text())
    entries = {e["algorithm"]: e for e in manifest["cells"]}
    earlier_manifest = json.loads((earlier / "manifest.json").read_text())
    for algorithm in ("pretrain", "fomaml"):
        assert entries[algorithm]["reused_from"]["run_id"] == earlier_manifest["run_id"]
        assert entries[algorithm]["test_episode_digest"] == \
            {e["algorithm"]: e for e in earlier_manifest["cells"]}[algorithm]["test_episode_digest"]
        for name in ("episodes.csv", "curves.csv"):
            assert rows(out / name, algorithm) == rows(earlier / name, algorithm) != []
        # summary.csv is recomputed from those 10-digit episode values: equal to the last digit or so
        for new, old in zip(rows(out / "summary.csv", algorithm), rows(earlier / "summary.csv", algorithm),
                            strict=True):
            for a, b in zip(new.split(",")[4:6], old.split(",")[4:6], strict=True):
                assert (a == b == "") or float(a) == pytest.approx(float(b), rel=1e-8, abs=1e-12)
    assert "reused_from" not in entries["maml"] and rows(out / "episodes.csv", "maml")
    # resuming the finished run keeps the taken cells as they are
    before = (out / "episodes.csv").read_text()
    assert main(["run", "--resume", str(out), "--no-progress", "--no-figures"]) == 0
    assert (out / "episodes.csv").read_text() == before


def test_a_cell_copied_twice_keeps_the_run_that_trained_it(tmp_path, earlier, capsys):
    # a grid restarted over sessions: the second start copies the first's cells, the third copies the second's
    overlay = tmp_path / "suite.yaml"
    overlay.write_text(SUITE.format(earlier=earlier))
    second = tmp_path / "second"
    assert main(["run", "table", "--config", str(overlay), "--out", str(second), *TINY]) == 0
    manifest = json.loads((second / "manifest.json").read_text())
    manifest["dirty"] = False
    (second / "manifest.json").write_text(json.dumps(manifest))
    overlay.write_text(SUITE.format(earlier=second))
    third = tmp_path / "third"
    capsys.readouterr()
    assert main(["run", "table", "--config", str(overlay), "--out", str(third), *TINY]) == 0
    assert f"reuse: sine-k5/pretrain/seed0 from {second}" in capsys.readouterr().err
    entries = {e["algorithm"]: e for e in json.loads((third / "manifest.json").read_text())["cells"]}
    trained_first = json.loads((earlier / "manifest.json").read_text())["run_id"]
    assert entries["pretrain"]["reused_from"]["run_id"] == trained_first
    assert entries["pretrain"]["reused_from"]["folder"] == str(earlier)
    assert [v["folder"] for v in entries["pretrain"]["reused_from"]["via"]] == [str(second)]
    # maml was trained by the second run: copied once, no chain
    assert entries["maml"]["reused_from"]["run_id"] == manifest["run_id"]
    assert "via" not in entries["maml"]["reused_from"]


def test_a_dirty_or_missing_folder_is_named_and_its_cells_run(tmp_path, earlier, capsys):
    manifest = json.loads((earlier / "manifest.json").read_text())
    manifest["dirty"] = True
    (earlier / "manifest.json").write_text(json.dumps(manifest))
    overlay = tmp_path / "suite.yaml"
    overlay.write_text(SUITE.format(earlier=f"[{earlier}, {tmp_path / 'nowhere'}]").replace("[[", "[").replace(
        "]]", "]"))
    out = tmp_path / "table"
    assert main(["run", "table", "--config", str(overlay), "--out", str(out), *TINY]) == 0
    err = capsys.readouterr().err
    assert f"reuse: {earlier} was made on a dirty checkout" in err
    assert f"reuse: {tmp_path / 'nowhere'} holds no run" in err
    entries = json.loads((out / "manifest.json").read_text())["cells"]
    assert all("reused_from" not in e and e["status"] == "ok" for e in entries)


def test_a_changed_configuration_is_not_reused(tmp_path, earlier):
    overlay = tmp_path / "suite.yaml"
    overlay.write_text(SUITE.format(earlier=earlier))
    out = tmp_path / "table"
    assert main(["run", "table", "--config", str(overlay), "--out", str(out), "--set", "pretrain.test_inner_steps=3",
                 *TINY]) == 0
    entries = {e["algorithm"]: e for e in json.loads((out / "manifest.json").read_text())["cells"]}
    assert "reused_from" not in entries["pretrain"] and "reused_from" in entries["fomaml"]


def test_the_omniglot_table_suite_reuses_the_committed_5w1s_cells():
    from bench.config import Config
    config = Config.load()
    cells, _, label = config.grid("omniglot-table", [], [], [], None)
    assert len(cells) == 56
    committed = json.loads((config.suite_reuse(label)[0] / "manifest.json").read_text())
    assert not committed["dirty"]
    hashes = {e["key"]: e["config_hash"] for e in committed["cells"]}
    same = [c.key for c in cells if hashes.get(c.key) == c.config_hash]
    assert len(same) == len(hashes) == 5
