"""Property-based fuzzing of the command line (issue 26): arguments, --set values and YAML overlays drawn by
hypothesis, each run in-process through bench.cli.main (a subprocess per example would cost seconds).

Properties, for every example: the exit status is 0, 1 or 2; stderr holds no Python traceback; nothing outside the
example's --out folder is created, changed or removed; and a finished run folder is never changed — its files stay
byte-identical in place or, when a run of the same cells replaces it, in the `<DIR>.old-<time>` folder it was
moved to (nothing lost). Bounded: a few dozen examples per property, no deadline, about a minute in all on two
cores; every `run` is capped to a one-iteration sine cell so that no drawn value can start a long training.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import shutil
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis: pip install -e '.[test]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bench.cli import main  # noqa: E402

FUZZ = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# one fast cell: every drawn `run` starts from these, so no drawn flag or value can make it long
CAPS = ["--profile", "smoke", "--set", "budget.meta_iters=1", "--set", "budget.test_episodes=2",
        "--set", "budget.validation_tasks=1", "--set", "pretrain.head_epochs=1", "--set", "pretrain.test_inner_steps=1",
        "--set", "pretrain.finetune_lrs=[0.01]", "--no-progress", "--no-figures", "-q"]
CELL = ["--benchmark", "sine-k5", "--algorithm", "pretrain"]
COUNTER = itertools.count()


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    """A working folder with a finished run, a user's folder and a file, all of which must survive."""
    root = tmp_path_factory.mktemp("fuzz")
    finished = root / "finished"
    code, err = _call(["run", *CELL, *CAPS, "--out", str(finished)])
    assert code == 0, err
    (root / "users-folder").mkdir()
    (root / "users-folder" / "summary.csv").write_text("mine\n")
    (root / "a-file").write_text("x")
    return root


def _call(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors, --help, --version
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return code, err.getvalue()


def _snapshot(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _check(arena: Path, argv: list[str], monkeypatch) -> tuple[int, str]:
    """Run argv with a fresh --out inside the arena (cwd = the arena, so a stray default output is caught)
    and assert every property."""
    monkeypatch.chdir(arena)
    out = arena / "outs" / f"out{next(COUNTER)}"
    before = _snapshot(arena)
    code, err = _call([*argv, "--out", str(out)] if argv[:1] == ["run"] or "--out" in argv else argv)
    assert code in (0, 1, 2), (argv, code, err)
    hypothesis.event(f"exit {code}")  # --hypothesis-show-statistics: how often each outcome was reached
    assert "Traceback" not in err, (argv, err)
    after = _snapshot(arena)
    finished = {k: v for k, v in before.items() if k.parts[0] == "finished"}
    moved = {Path("finished", *k.parts[1:]): v for k, v in after.items() if k.parts[0].startswith("finished.old-")}
    for key, content in finished.items():  # in place or moved aside, byte for byte
        assert after.get(key) == content or moved.get(key) == content, (argv, key)
    for key, content in before.items():
        if key.parts[0] in ("finished", "outs") or key.parts[0].startswith("finished.old-"):
            continue
        assert after.get(key) == content, (argv, f"{key} changed outside --out")
    stray = [k for k in after if k not in before and k.parts[0] not in ("outs",)
             and not k.parts[0].startswith(("finished", "outs"))]
    assert not stray, (argv, stray)
    shutil.rmtree(arena / "outs", ignore_errors=True)
    return code, err


# -- values --------------------------------------------------------------------------------------------------

small_ints = st.integers(-5, 5) | st.sampled_from([2**31, 2**63, 2**70, -(2**70)])
junk = st.sampled_from(["", "null", "~", "true", "no", ".nan", ".inf", "-.inf", "1e309", "0x10", "[]", "{}", "[1, 2]",
                        "[sine]", "{a: 1}", "'", '"', "[", "&a [*a]", "!!python/object:os.system", "bf16", "fp8",
                        "sine", "omniglot", "conv4", "é", "\x00", "a=b", "1_000", "0.5", "-0.0"])
values = small_ints.map(str) | st.floats(allow_nan=True, allow_infinity=True).map(repr) | junk | \
    st.text(max_size=12)
keys = st.sampled_from([
    "budget.meta_iters", "budget.test_episodes", "budget.cpus", "budget.log_every", "budget.checkpoint_every",
    "budget.eval_batch", "budget.validation_tasks", "budget.autocast", "budget.gpus", "budget.nope",
    "sine-k5.shots", "sine-k5.test_query", "sine-k5.train_query", "sine-k5.eval_steps", "sine-k5.amplitude",
    "sine-k5.x_range", "sine-k5.dataset", "sine-k5.kind", "sine-k5.backbone", "sine-k5.eval_seed",
    "sine-k5.test_episodes", "sine-k5", "pretrain.lr", "pretrain.meta_batch", "pretrain.batch_size",
    "pretrain.head_batch", "pretrain.finetune_lr", "pretrain.backbone", "pretrain.nope", "profiles.smoke.meta_iters",
    "suites.smoke.seeds", "nope", "", ".", "sine-k5..shots", "budget"])
sets = st.lists(st.tuples(keys, values).map(lambda kv: f"{kv[0]}={kv[1]}") | st.text(max_size=10), max_size=3)


@FUZZ
@given(sets=sets)
def test_set_values_are_validated_or_run(arena, monkeypatch, sets):
    argv = ["run", *CELL, *CAPS]
    for item in sets:
        argv += ["--set", item]
    _check(arena, argv, monkeypatch)


@settings(FUZZ, max_examples=60)
@given(sets=sets)
def test_config_show_explains_or_refuses_any_set(arena, monkeypatch, sets):
    argv = ["config", "show", "--cell", "sine-k5/pretrain/0", "--profile", "smoke"]
    for item in sets:
        argv += ["--set", item]
    code, _ = _check(arena, argv, monkeypatch)
    assert code in (0, 2)


# -- arguments -----------------------------------------------------------------------------------------------

PATHS = ["finished", "users-folder", "a-file", "no-such-dir", "", ".", "/", "finished/manifest.json"]
flag_values = {
    "--benchmark": ["sine-k5", "sine-*", "nope", "", "[", "omniglot-5w1s"],
    "--algorithm": ["pretrain", "maml", "nope", "*", "sgd", "pretrain,maml"],
    "--seed": ["0", "1", "0-1", "-1", "x", "3-1", "99999999999999999999", "0,0"],
    "--profile": ["smoke", "nope", "", "paper"],
    "--set": ["budget.meta_iters=-1", "budget.meta_iters=2", "x", "=", "sine-k5.shots=[1]"],
    "--config": ["a-file", "no-such-dir", "finished/manifest.json", "users-folder/summary.csv", "."],
    "--jobs": ["0", "-1", "x", "1"],
    "--device": ["cpu", "cuda", "cuda:7", "tpu", "", "meta"],
    "--executor": ["local", "nope"],
    "--resume": PATHS,
    "--data-root": PATHS,
    "--plugin": ["no_such_plugin_xyz", "bench.nope", ""],
    "--force": None, "--break-lock": None, "--no-figures": None, "-q": None,
}
flags = st.sampled_from(sorted(flag_values)).flatmap(
    lambda f: st.just([f]) if flag_values[f] is None else st.sampled_from(flag_values[f]).map(lambda v: [f, v]))
commands = st.sampled_from([
    ["run"], ["run", "smoke"], ["run", "nope"], ["list"], ["list", "algorithms", "p*"], ["list", "nope", "x"],
    ["config", "show"], ["data", "where"], ["data", "check", "nope"], ["report"], ["report", "finished"],
    ["report", "no-such-dir"], ["report", "a-file"], ["report", "users-folder"], ["compare", "finished", "finished"],
    ["compare", "finished", "users-folder"], ["compare", "a-file", "/"], ["figures", "--list"],
    ["figures", "all", "--from", "users-folder"], ["verify", "users-folder"], ["nope"], [], ["--version"]])


@FUZZ
@given(command=commands, extra=st.lists(flags, max_size=4))
def test_any_command_line_exits_0_1_or_2_without_a_traceback(arena, monkeypatch, command, extra):
    argv = list(command)
    if argv[:1] == ["run"]:
        argv += CAPS + (CELL if not any(f[0] in ("--benchmark", "--resume") for f in extra) else [])
        extra = [f for f in extra if f[0] not in ("--benchmark", "--algorithm") or f[1].startswith("sine")
                 or f[1] in ("pretrain", "nope", "")]
        argv += [x for f in extra for x in f]
    elif argv[:2] == ["report", "finished"] or argv[:1] == ["compare"]:
        argv += [x for f in extra if f[0] in ("-q",) for x in f]
    _check(arena, argv, monkeypatch)


# -- YAML overlays -------------------------------------------------------------------------------------------

leaf = st.one_of(small_ints, st.floats(allow_nan=True), st.booleans(), st.none(), st.text(max_size=6),
                 st.lists(small_ints, max_size=3))
schema_words = st.sampled_from(["benchmarks", "profiles", "suites", "algorithms", "version", "sine-k5", "smoke",
                                "meta_iters", "test_episodes", "shots", "dataset", "kind", "defaults", "overrides",
                                "pretrain", "lr", "seeds", "benchmarks", "algorithms", "cpus", "nope", "mine"])
trees = st.recursive(leaf, lambda children: st.dictionaries(schema_words, children, max_size=4), max_leaves=12)
documents = trees.map(lambda t: yaml.safe_dump(t, allow_unicode=True)) | st.text(max_size=80) | st.sampled_from([
    "a: 1\na: 2\n", "a: &a [*a]\n", "[" * 2000, "\t\n", "--- !!python/name:os.system\n", "benchmarks: []\n",
    "suites:\n  mine: {benchmarks: [sine-k5], algorithms: [pretrain], seeds: [-1]}\n"])


@settings(FUZZ, max_examples=60)
@given(document=documents, encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]))
def test_any_yaml_overlay_is_merged_or_refused_in_one_line(arena, monkeypatch, document, encoding):
    path = arena / "outs-overlay.yaml"
    try:
        path.write_bytes(document.encode(encoding))
    except UnicodeEncodeError:
        path.write_bytes(document.encode("utf-8"))
    try:
        code, err = _check(arena, ["config", "show", "--config", str(path)], monkeypatch)
    finally:
        path.unlink()
    assert code in (0, 2)
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
