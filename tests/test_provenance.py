"""Every manifest says what besides code and configuration made its numbers, and compare/report point out the
differences between two runs (kernel, threads, plugins, uncommitted changes)."""
import copy
import json
import subprocess
import sys

import pytest

from bench.rundir import git_commit, provenance, provenance_differences


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    out = tmp_path_factory.mktemp("provenance") / "run"
    subprocess.run([sys.executable, "-m", "bench", "run", "--benchmark", "sine-k5", "--algorithm", "maml",
                    "--profile", "smoke", "--out", str(out), "--no-progress", "--no-figures"],
                   check=True, capture_output=True, env={**__import__("os").environ, "OMP_WAIT_POLICY": "passive"})
    return json.loads((out / "manifest.json").read_text())


def test_the_manifest_records_kernel_threads_plugins_and_changed_files(manifest):
    p = manifest["provenance"]
    assert set(p["native_kernel"]) >= {"enabled", "available", "compiler", "flags", "cpu_features"}
    assert isinstance(p["threads"], int) and p["thread_env"]["OMP_WAIT_POLICY"] == "passive"
    assert p["plugins"] == []
    assert manifest["dirty"] == bool(manifest["dirty_files"])
    assert manifest["cells"][0]["native_kernel_used"] is False  # an MLP has no pooled first layer


def test_dirty_files_are_the_tracked_files_that_differ_from_the_commit():
    info = git_commit()
    if info["commit"] is None:
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "diff", "--name-only", "HEAD"], capture_output=True, text=True,
                            cwd=__import__("pathlib").Path(__file__).parent).stdout.split()
    assert info["dirty_files"] == listed and info["dirty"] == bool(listed)


def test_differences_are_named(manifest):
    other = copy.deepcopy(manifest)
    other["provenance"]["threads"] = 7
    other["provenance"]["native_kernel"]["available"] = not manifest["provenance"]["native_kernel"]["available"]
    other["cells"][0]["native_kernel_used"] = True
    other["provenance"]["plugins"] = [{"name": "mine", "module": "mine", "distribution": "mine", "version": "1.0"}]
    other["dirty"], other["dirty_files"] = True, ["algorithms/maml.py"]
    lines = provenance_differences(manifest, other)
    text = "\n".join(lines)
    for expected in ("threads differs", "native kernel available differs", "native kernel used by some cell",
                     "plugins differs", "new was made on a checkout with uncommitted changes (algorithms/maml.py)"):
        assert expected in text, text
    clean = copy.deepcopy(manifest)
    clean["dirty"] = False
    assert provenance_differences(clean, copy.deepcopy(clean)) == []


def test_an_old_manifest_without_provenance_is_said_to_be_one(manifest):
    old = {k: v for k, v in manifest.items() if k != "provenance"}
    assert any("does not record provenance" in line for line in provenance_differences(old, manifest))


def test_provenance_of_this_process_lists_loaded_plugins():
    import algorithms

    @algorithms.register("provenance-test-plugin")
    class Plugin(algorithms.get("protonet")):
        pass
    Plugin.__module__ = "some_lab_package.learners"
    try:
        entries = [p for p in provenance()["plugins"] if p["name"] == "provenance-test-plugin"]
        assert entries == [{"name": "provenance-test-plugin", "module": "some_lab_package.learners",
                            "distribution": None, "version": None}]
    finally:
        algorithms._REGISTRY.pop("provenance-test-plugin")
