"""Runs `mirrored_checks.py` once, in a fresh process, and hands each test its check's result."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("mirrored_checks.py")


@pytest.fixture(scope="session")
def mirrored_results():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    lines = [json.loads(line[len("RESULT "):]) for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    return {line.pop("check"): line for line in lines}


@pytest.fixture()
def mirrored_check(mirrored_results):
    """`mirrored_check(name)`: the named check's result; fails with the check's traceback if it raised."""
    def get(name):
        out = mirrored_results.get(name)
        assert out is not None, f"mirrored_checks.py printed no result for {name!r}"
        assert "error" not in out, f"check {name!r} failed in the MirroredStrategy process:\n{out['error']}"
        return out["result"]
    return get
