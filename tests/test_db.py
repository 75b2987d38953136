"""`metabench db`: ingesting the committed run folders, idempotency, atomicity under SIGKILL, history over
commits and the regression query, on SQLite and (where a PostgreSQL server can be started here) PostgreSQL.
No training: runs at other commits are copies of results/baseline with edited manifests and episodes."""
import glob
import json
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from itertools import count
from pathlib import Path

import pandas as pd
import pytest

from bench import stats
from bench.cli import main

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "results" / "baseline"
BASE_MANIFEST = json.loads((BASELINE / "manifest.json").read_text())
BASE_COMMIT = BASE_MANIFEST["commit"]
BASE_VERSION = BASE_COMMIT[:10] + ("+dirty" if BASE_MANIFEST["dirty"] else "")  # how history labels a version
REFERENCE = REPO / "results" / "reference"
LATER = "2099-12-01T10:00:00+00:00"


# ---------------------------------------------------------------------------------------------------------
# run folders made from the committed baseline


def copy_run(dest: Path, run_id: str, commit: str, date: str, dirty: bool = False, worse: dict | None = None,
             source: Path = BASELINE) -> Path:
    """A copy of `source` as if made at `commit`; `worse` maps a cell key 'bench/algo/seedS' to a factor applied
    to its per-episode values (and its summary rows, recomputed), e.g. 1.5 = 50% larger errors."""
    shutil.copytree(source, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest.update(run_id=run_id, commit=commit, commit_date=date, dirty=dirty, started=date, finished=date)
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1))
    for key, factor in (worse or {}).items():
        bench, algo, seed = key.split("/")
        episodes = pd.read_csv(dest / "episodes.csv", dtype={"seed": str})
        mask = (episodes["benchmark"] == bench) & (episodes["algorithm"] == algo) & (episodes["seed"] == seed[4:])
        episodes.loc[mask, "value"] *= factor
        episodes.to_csv(dest / "episodes.csv", index=False)
        summary = pd.read_csv(dest / "summary.csv", dtype={"seed": str}, keep_default_na=False, na_values=[""])
        fresh = stats.summarize_episodes(episodes[mask]).set_index("metric")
        rows = (summary["benchmark"] == bench) & (summary["algorithm"] == algo) & (summary["seed"] == seed[4:])
        for i in summary.index[rows]:
            summary.loc[i, ["mean", "ci95"]] = fresh.loc[summary.at[i, "metric"], ["mean", "ci95"]].to_numpy()
        summary.to_csv(dest / "summary.csv", index=False)
    return dest


# ---------------------------------------------------------------------------------------------------------
# the two backends


def _postgres_bin() -> Path | None:
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if Path(folder, "initdb").is_file() and Path(folder, "pg_ctl").is_file():
            return Path(folder)
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb and shutil.which("pg_ctl") else None


@pytest.fixture(scope="session")
def postgres_server():
    """A throw-away PostgreSQL server on a Unix socket in a temporary folder (no TCP port); yields a function
    that returns the URL of a new, empty database."""
    binaries = _postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; install the distribution's "
                    "postgresql package (.ci/system-packages.sh does)")
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed; pip install 'metabench[db]'")
    user = {}
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as the distribution's postgres user
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the PostgreSQL server as")
        user = {"user": entry.pw_uid, "group": entry.pw_gid}
    root = Path(tempfile.mkdtemp(prefix="metabench-pg-"))
    if user:
        os.chown(root, user["user"], user["group"])
    data = root / "data"
    init = subprocess.run([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                           "--no-sync"], capture_output=True, text=True, **user)
    if init.returncode:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed: {init.stderr.strip().splitlines()[-1:]}")
    options = f"-k {root} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    start = subprocess.run([str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w",
                            "-t", "60", "start"], capture_output=True, text=True, **user)
    if start.returncode:
        log = (root / "log").read_text() if (root / "log").exists() else start.stderr
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"the PostgreSQL server did not start: {log.strip().splitlines()[-1:]}")
    numbers = count()

    def new_database() -> str:
        name = f"metabench_test_{next(numbers)}"
        with psycopg.connect(f"postgresql:///postgres?host={root}&user=postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql:///{name}?host={root}&user=postgres"

    yield new_database
    subprocess.run([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True, **user)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def new_db(request, tmp_path):
    """A function returning the URL of a new, empty database of the parametrized kind."""
    if request.param == "sqlite":
        names = count()
        return lambda: f"sqlite:///{tmp_path / f'results-{next(names)}.sqlite'}"
    return request.getfixturevalue("postgres_server")


def query(url: str, sql: str) -> list[tuple]:
    from bench.db.backend import Database

    with Database(url) as db:
        return [tuple(r.values()) for r in db.rows(sql)]


def one(url: str, sql: str):
    return query(url, sql)[0][0]


def table_counts(url: str) -> dict[str, int]:
    return {t: one(url, f"SELECT count(*) FROM {t}") for t in ("runs", "cells", "summaries", "episodes")}


def baseline_sizes() -> dict[str, int]:
    return {"runs": 1, "cells": len(json.loads((BASELINE / "manifest.json").read_text())["cells"]),
            "summaries": len(pd.read_csv(BASELINE / "summary.csv")),
            "episodes": len(pd.read_csv(BASELINE / "episodes.csv"))}


# ---------------------------------------------------------------------------------------------------------


def test_ingests_every_committed_run_folder(new_db, capsys):
    url = new_db()
    # a glob over the topic folders, as in docs/leaderboard.md: nested run folders are found, folders of
    # perf.csv files without a manifest are skipped with a note
    assert main(["db", "add", *sorted(map(str, REFERENCE.glob("*/"))), str(BASELINE), "--db", url]) == 0
    captured = capsys.readouterr()
    manifests = sorted(REFERENCE.rglob("manifest.json")) + [BASELINE / "manifest.json"]
    assert f"{len(manifests)} added, 0 replaced, 0 unchanged" in captured.err
    counts = table_counts(url)
    assert counts["runs"] == len(manifests)
    assert counts["cells"] == sum(len(json.loads(m.read_text())["cells"]) for m in manifests)
    assert counts["episodes"] == sum(len(pd.read_csv(m.parent / "episodes.csv")) for m in manifests
                                     if (m.parent / "episodes.csv").is_file())
    # provenance columns, and the whole manifest kept for the run pages
    row = query(url, "SELECT profile, commit_sha, dirty, torch, device, threads FROM runs WHERE run_id = 'baseline'")[0]
    env = BASE_MANIFEST["environment"]
    assert row == ("gate", BASE_COMMIT, int(BASE_MANIFEST["dirty"]), env["torch"], "cpu", env["cpu_threads"])
    # a stored value reads back exactly
    value = one(url, "SELECT e.value FROM episodes e JOIN cells c ON c.id = e.cell JOIN runs r ON r.id = c.run "
                     "WHERE r.run_id = 'baseline' AND c.cell_key = 'sine-k5/pretrain/seed0' AND e.metric = 'mse@0' "
                     "AND e.episode = 0")
    episodes = pd.read_csv(BASELINE / "episodes.csv")
    assert value == episodes.query("benchmark == 'sine-k5' and algorithm == 'pretrain' and metric == 'mse@0' "
                                   "and episode == 0")["value"].item()
    assert main(["db", "ls", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "baseline" in out and BASE_VERSION in out and len(out.strip().splitlines()) == len(manifests) + 1
    assert main(["db", "ls", "--format", "json", "--db", url]) == 0
    listed = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert len(listed) == len(manifests) and listed["baseline"]["ok"] == listed["baseline"]["cells"] == 8


def test_adding_a_run_twice_changes_nothing(new_db, tmp_path, capsys):
    url = new_db()
    assert main(["db", "add", str(BASELINE), "--db", url]) == 0
    before = table_counts(url)
    assert before == baseline_sizes()
    assert main(["db", "add", str(BASELINE), str(BASELINE), "--db", url]) == 0
    assert "0 added, 0 replaced, 1 unchanged" in capsys.readouterr().err  # a folder named twice is one folder
    assert table_counts(url) == before
    # the same id with other content is refused (one line naming the fix), or replaced on request
    edited = copy_run(tmp_path / "edited", "baseline", BASE_COMMIT,
                      BASE_MANIFEST["commit_date"], dirty=True, worse={"sine-k5/maml/seed0": 1.1})
    assert main(["db", "add", str(edited), "--db", url]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'baseline'" in err and "--replace" in err
    assert table_counts(url) == before
    assert main(["db", "add", str(edited), "--replace", "--db", url]) == 0
    assert "1 replaced" in capsys.readouterr().err
    assert table_counts(url) == before


def test_sigkill_mid_ingest_leaves_all_or_nothing(new_db):
    url = new_db()
    env = {**os.environ, "METABENCH_DB_TEST_PAUSE": "60", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bench", "db", "add", str(BASELINE), "--db", url], cwd=REPO,
                            env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while "paused mid-ingest" not in line:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "metabench db add exited before pausing"
            assert time.monotonic() < deadline, "metabench db add never reached the pause"
        # half of the run's episodes are written inside the open transaction at this point
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    if url.startswith("sqlite"):
        path = url[len("sqlite:///"):]
        with sqlite3.connect(path) as conn:  # opening it rolls the hot journal back
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert table_counts(url) == {"runs": 0, "cells": 0, "summaries": 0, "episodes": 0}
    assert main(["db", "add", str(BASELINE), "--db", url]) == 0
    assert table_counts(url) == baseline_sizes()


def test_history_pools_runs_of_one_commit(new_db, tmp_path, capsys):
    url = new_db()
    c1, c2 = "1" * 40, "2" * 40
    runs = [copy_run(tmp_path / "a", "a", c1, "2099-11-28T00:00:00+00:00"),
            copy_run(tmp_path / "b", "b", c1, "2099-11-28T00:00:00+00:00"),
            copy_run(tmp_path / "c", "c", c2, "2099-11-29T00:00:00+00:00")]
    assert main(["db", "add", str(BASELINE), *map(str, runs), "--db", url]) == 0
    capsys.readouterr()
    from bench.db.backend import Database
    from bench.db.history import history

    with Database(url) as db:
        series = history(db, "sine-k5", "maml")
    points = series[("sine-k5", "maml", "gate")]
    # one x position per version, in commit-date order; the two runs of c1 pooled into one point
    assert [p.version for p in points] == [BASE_VERSION, "1111111111", "2222222222"]
    assert [p.runs for p in points] == [["baseline"], ["a", "b"], ["c"]]
    assert points[1].n == 2 and points[1].ci_method == "t-seeds" and points[2].n == 600
    assert points[1].mean == pytest.approx(points[0].mean)
    assert [p.verdict for p in points] == ["", "same", "same"]
    assert main(["db", "history", "--benchmark", "sine-k5", "--algorithm", "maml", "--db", url]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()[2:5]] == [BASE_VERSION, "1111111111", "2222222222"]
    assert "mse@10" in out
    # an unknown pair names what is stored
    assert main(["db", "history", "--benchmark", "sine-k5", "--algorithm", "nope", "--db", url]) == 2
    assert "sine-k5/maml" in capsys.readouterr().err


def test_a_cell_copied_by_reuse_counts_once_at_the_run_that_made_it(new_db, tmp_path, capsys):
    """A suite's `reuse` copies finished cells into a new run folder (manifest entry `reused_from`): history must
    not show the copy as a second measurement at the new commit while the run it came from is stored too."""
    url = new_db()
    c1, c2 = "1" * 40, "2" * 40
    made = copy_run(tmp_path / "a", "a", c1, "2099-11-28T00:00:00+00:00")
    copying = copy_run(tmp_path / "c", "c", c2, "2099-11-29T00:00:00+00:00")
    manifest = json.loads((copying / "manifest.json").read_text())
    for cell in manifest["cells"]:
        if cell["key"] == "sine-k5/maml/seed0":
            cell["reused_from"] = {"folder": str(made), "run_id": "a", "commit": c1, "started": "2099-11-28"}
    (copying / "manifest.json").write_text(json.dumps(manifest, indent=1))
    from bench.db.backend import Database
    from bench.db.history import history

    assert main(["db", "add", str(copying), "--db", url]) == 0   # alone, the copy is all there is of it
    with Database(url) as db:
        assert [p.runs for p in history(db, "sine-k5", "maml")[("sine-k5", "maml", "gate")]] == [["c"]]
    assert main(["db", "add", str(made), "--db", url]) == 0
    capsys.readouterr()
    with Database(url) as db:
        maml = history(db, "sine-k5", "maml")[("sine-k5", "maml", "gate")]
        pretrain = history(db, "sine-k5", "pretrain")[("sine-k5", "pretrain", "gate")]
    assert [p.runs for p in maml] == [["a"]]                      # measured once, at c1
    assert [p.runs for p in pretrain] == [["a"], ["c"]]           # cells the copying run trained itself stay


def test_regressions_name_the_worse_cell_and_exit_1(new_db, tmp_path, capsys):
    url = new_db()
    same = copy_run(tmp_path / "same", "same", "3" * 40, "2099-11-30T00:00:00+00:00")
    assert main(["db", "add", str(BASELINE), str(same), "--db", url]) == 0
    assert main(["db", "regressions", "--db", url]) == 0
    assert "8 paired comparison(s) with the previous version, 0 regression(s)" in capsys.readouterr().err
    worse = copy_run(tmp_path / "worse", "worse", "4" * 40, LATER, worse={"sine-k5/maml/seed0": 1.5})
    assert main(["db", "add", str(worse), "--db", url]) == 0
    capsys.readouterr()
    assert main(["db", "regressions", "--db", url]) == 1
    captured = capsys.readouterr()
    assert "sine-k5/maml (profile gate) mse@10 at 4444444444 vs 3333333333" in captured.err
    assert "16 paired comparison(s) with the previous version, 1 regression(s)" in captured.err
    flagged = [line for line in captured.out.splitlines() if "REGRESSION" in line]
    assert len(flagged) == 1 and flagged[0].split()[:2] == ["sine-k5", "maml"]
    assert main(["db", "regressions", "--format", "json", "--db", url]) == 1
    (found,) = json.loads(capsys.readouterr().out)
    assert (found["benchmark"], found["algorithm"], found["verdict"], found["runs"]) == (
        "sine-k5", "maml", "worse", ["worse"])
    assert found["rel"] == pytest.approx(0.5) and found["p"] < 1e-6
    # --since: by date, and by commit (only versions after it)
    assert main(["db", "regressions", "--since", "2099-12-01", "--db", url]) == 1
    assert main(["db", "regressions", "--since", "4444444", "--db", url]) == 0
    assert main(["db", "regressions", "--since", "3333333", "--db", url]) == 1
    capsys.readouterr()
    assert main(["db", "regressions", "--since", "zzz", "--db", url]) == 2
    assert "--since zzz" in capsys.readouterr().err
    # a fix at a later commit: compared with the regressed version it is better, not a regression
    fixed = copy_run(tmp_path / "fixed", "fixed", "5" * 40, "2099-12-02T00:00:00+00:00")
    assert main(["db", "add", str(fixed), "--db", url]) == 0
    assert main(["db", "regressions", "--since", "4444444", "--db", url]) == 0


def test_schema_is_versioned(tmp_path, capsys):
    from bench.db.backend import SCHEMA_VERSION, Database

    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with Database(url) as db:
        assert db.version() == SCHEMA_VERSION
    with Database(url) as db:  # reopening applies nothing twice
        assert len(db.rows("SELECT * FROM schema_migrations")) == SCHEMA_VERSION
        db.execute("INSERT INTO schema_migrations VALUES (999, 'from the future', '2030-01-01')")
    assert main(["db", "ls", "--db", url]) == 2
    err = capsys.readouterr().err
    assert "schema version 999" in err and "upgrade metabench" in err


@pytest.mark.parametrize("make, expected", [
    (lambda tmp: ["--db", "mysql://localhost/x", str(BASELINE)], "unsupported scheme 'mysql'"),
    (lambda tmp: ["--db", "sqlite://", str(BASELINE)], "sqlite:///"),
    (lambda tmp: [str(tmp / "nowhere")], "nowhere does not exist"),
    (lambda tmp: [str(tmp)], "no manifest.json"),
    (lambda tmp: [str(_broken(tmp, "{not json"))], "manifest.json is not valid JSON"),
    (lambda tmp: [str(_broken(tmp, json.dumps({"cells": []})))], "key 'run_id' is missing"),
    (lambda tmp: [str(_broken(tmp, json.dumps({"run_id": "x", "cells": [{"algorithm": "maml", "seed": 0}]})))],
     "key 'cells[0].benchmark' is missing"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, capsys, make, expected):
    args = make(tmp_path)
    if "--db" not in args:
        args += ["--db", f"sqlite:///{tmp_path / 'r.sqlite'}"]
    assert main(["db", "add", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("metabench: error:") and expected in err, err


def _broken(tmp: Path, manifest_text: str) -> Path:
    run = tmp / "run"
    shutil.copytree(BASELINE, run)
    (run / "manifest.json").write_text(manifest_text)
    return run


def test_postgres_url_without_a_server_is_a_one_line_error(capsys):
    pytest.importorskip("psycopg", reason="psycopg is not installed; pip install 'metabench[db]'")
    assert main(["db", "ls", "--db", "postgresql://nobody@/nodb?host=/nonexistent-socket-dir"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot connect" in err
