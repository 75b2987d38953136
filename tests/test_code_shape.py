"""The harness stays readable: no function in bench/ longer than MAX_LINES lines (ruff, run by tox, checks the
rest of the style; it counts statements, not lines, so the length rule lives here)."""
import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
MAX_LINES = 60


def long_functions(root: Path, limit: int) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_in_bench_is_longer_than_the_limit():
    too_long = long_functions(BENCH, MAX_LINES)
    assert not too_long, f"split these functions (at most {MAX_LINES} lines): " + "; ".join(too_long)


def test_the_check_finds_a_long_function(tmp_path):
    package = tmp_path / "bench"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (package / "long.py").write_text(f"def short():\n    return 1\n\n\ndef too_long():\n{body}\n")
    assert long_functions(package, MAX_LINES) == [f"bench/long.py:5 too_long ({MAX_LINES + 1} lines)"]

