"""`metabench verify` re-runs a folder's cells on the current code: `same` for an untouched run, the differences
(and exit 1) when the recorded values are not what the code gives."""
import io
import json
import subprocess
import sys

import pytest

from bench import verify
from bench.rundir import RunDirError


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "run"
    subprocess.run([sys.executable, "-m", "bench", "run", "--benchmark", "sine-k5", "--algorithm", "maml",
                    "--algorithm", "fomaml", "--profile", "smoke", "--out", str(out), "--no-progress",
                    "--no-figures"], check=True, capture_output=True)
    return out


def test_an_untouched_run_verifies_as_the_same(smoke_run):
    report = io.StringIO()
    assert verify.verify(smoke_run, count=1, out=report)
    assert report.getvalue() == "sine-k5/maml/seed0: same\n"


def test_a_changed_value_is_found_and_described(smoke_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(smoke_run, copy)
    lines = (copy / "episodes.csv").read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("sine-k5,fomaml,0,3,mse@1,"))
    lines[row] = "sine-k5,fomaml,0,3,mse@1,123.5"
    (copy / "episodes.csv").write_text("\n".join(lines) + "\n")
    report = io.StringIO()
    assert not verify.verify(copy, out=report)
    text = report.getvalue()
    assert "sine-k5/maml/seed0: same" in text
    assert "sine-k5/fomaml/seed0: mse@1: 1 of 100 episodes differ" in text


def test_the_command_line_exit_codes(smoke_run, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "bench", "verify", str(smoke_run), "--cells", "1"],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "verify: same" in ok.stderr, ok.stderr
    missing = subprocess.run([sys.executable, "-m", "bench", "verify", str(tmp_path / "nothing")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_a_hand_edited_configuration_is_refused(smoke_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(smoke_run, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["cells"][0]["config"]["hparams"]["inner_lr"] = 0.5
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RunDirError, match="does not hash to its config_hash"):
        verify.verify(copy, count=1, out=io.StringIO())
