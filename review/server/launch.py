"""Run Argilla's own command line with distill's SQLite search engine registered.

Runs inside argilla-server's virtual environment: `python launch.py start ...`,
`python launch.py database migrate`, and so on (the arguments are Argilla's).
"""

import json
import os
import sys
from pathlib import Path

# An argument `@credentials:NAME` stands for the value NAME in the 0600 credentials file
# named by $DISTILL_ARGILLA_CREDENTIALS: passwords and the API key never appear in a
# command line that `ps` shows every user (this process's own argv in /proc keeps the
# placeholder; only Python's sys.argv gets the value).
PLACEHOLDER = "@credentials:"


def fill(argv: list[str]) -> list[str]:
    if not any(a.startswith(PLACEHOLDER) for a in argv):
        return argv
    creds = json.loads(Path(os.environ["DISTILL_ARGILLA_CREDENTIALS"]).read_text())
    return [creds[a[len(PLACEHOLDER) :]] if a.startswith(PLACEHOLDER) else a for a in argv]


sys.argv = fill(sys.argv)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlite_engine  # noqa: E402,F401  (registers the "sqlite" search engine)
from argilla_server.cli import app  # noqa: E402

if __name__ == "__main__":
    app()
