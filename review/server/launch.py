"""Run Argilla's own command line with distill's SQLite search engine registered.

Runs inside argilla-server's virtual environment: `python launch.py start ...`,
`python launch.py database migrate`, and so on (the arguments are Argilla's).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlite_engine  # noqa: E402,F401  (registers the "sqlite" search engine)
from argilla_server.cli import app  # noqa: E402

if __name__ == "__main__":
    app()
