"""Progress where no terminal shows it: under nohup, in CI or piped to a
file, long loops print a plain line every ~30 s and one at the end."""

from __future__ import annotations

import io
import subprocess
import sys

from rich.console import Console

from distill.ui import PlainProgress


def test_plain_lines_at_most_every_interval_and_at_the_end() -> None:
    out = io.StringIO()
    now = [0.0]
    bar = PlainProgress(Console(file=out, width=200), every=30, clock=lambda: now[0])
    with bar:
        task = bar.add_task("answers", total=100)
        for _ in range(100):
            now[0] += 1.0  # one item a second
            bar.update(task, advance=1, description="answers · $0.0123")
    lines = out.getvalue().splitlines()
    assert lines == [
        "  answers · $0.0123: 30/100 (30%), 1.00/s, 30 s elapsed",
        "  answers · $0.0123: 60/100 (60%), 1.00/s, 60 s elapsed",
        "  answers · $0.0123: 90/100 (90%), 1.00/s, 90 s elapsed",
        "  answers · $0.0123: 100/100 (100%), 1.00/s, 100 s elapsed",
    ]


def test_a_piped_run_chooses_plain_progress() -> None:
    code = (
        "from distill.ui import PlainProgress, progress, track\n"
        "assert isinstance(progress(), PlainProgress)\n"
        "print(sum(track(range(5), 'counting')))\n"
    )
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "10"
    assert "counting: 5/5 (100%)" in got.stderr  # the end line, in the log
