"""`distill doctor`: one line per part, fixes for what is missing, key
variables by name and never by value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_doctor_names_keys_never_values_and_gives_fixes(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OPENAI_API_KEY": "sk-doctor-secret-value-12345",
        "ARGILLA_API_URL": "http://u:argilla-pw@127.0.0.1:9",  # nothing listens on port 9
        "DISTILL_CACHE": str(tmp_path / "empty-cache"),  # no offline model assembled there
        "PATH": "/nonexistent",  # no redis-server on this PATH
    }
    got = subprocess.run(
        [sys.executable, "-m", "distill", "doctor"], env=env, capture_output=True, text=True
    )
    assert got.returncode == 0, got.stderr  # nothing *needed* is missing
    lines = {ln.split()[1]: ln for ln in got.stdout.splitlines() if ln[:3] in ("ok ", "-- ", "ERR")}
    assert {"python", "torch", "cpu", "gpu", "llama.cpp", "redis", "argilla", "api", "disk"} <= set(
        lines
    )
    assert "OPENAI_API_KEY" in lines["api"] and "sk-doctor" not in got.stdout
    assert lines["redis"].startswith("-- ") and "apt-get install -y redis-server" in lines["redis"]
    assert lines["argilla"].startswith("-- ") and "argilla-pw" not in got.stdout
    assert "cannot connect" in lines["argilla"]
    assert "Traceback" not in got.stderr
