"""bench.allocator: malloc keeps freed blocks, unless the user chose malloc settings themselves."""
import os
import subprocess
import sys

import pytest

CHECK = "from bench.allocator import keep_freed_memory; print(keep_freed_memory())"


def applied(**env) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "METABENCH_MALLOC"}
    out = subprocess.run([sys.executable, "-c", CHECK], env={**base, **env}, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_settings_apply_by_default_and_yield_to_the_users_own():
    assert applied() == "True"
    assert applied(METABENCH_MALLOC="system") == "False"
    assert applied(MALLOC_ARENA_MAX="2") == "False"
