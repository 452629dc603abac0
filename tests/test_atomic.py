"""Nothing half-written: plots, credentials and the run manifest are replaced whole or not
at all. Kept flat: one property of io, review's server and the run folder together."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.io import save_figure


class Crash(Exception):
    pass


class HalfFigure:
    """A figure whose save writes a few bytes and then dies (a kill, a full disk)."""

    def savefig(self, target: Path, **kw: object) -> None:
        Path(target).write_bytes(b"\x89PNG half")
        raise Crash


class GoodFigure:
    def savefig(self, target: Path, **kw: object) -> None:
        assert kw["format"] == "png"
        Path(target).write_bytes(b"\x89PNG new plot")


def test_a_crash_while_saving_a_plot_keeps_the_old_one(tmp_path: Path) -> None:
    plot = tmp_path / "quality.png"
    plot.write_bytes(b"\x89PNG old plot")
    with pytest.raises(Crash):
        save_figure(HalfFigure(), plot)
    assert plot.read_bytes() == b"\x89PNG old plot"
    assert [p.name for p in tmp_path.iterdir()] == ["quality.png"]  # no temporary left
    save_figure(GoodFigure(), plot, dpi=100)
    assert plot.read_bytes() == b"\x89PNG new plot"


def test_credentials_are_written_whole_and_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from distill.review import server as review_server

    monkeypatch.setenv("DISTILL_ARGILLA_DIR", str(tmp_path))

    def crash(obj: object, f: object) -> None:
        raise Crash

    monkeypatch.setattr(review_server.json, "dump", crash)
    with pytest.raises(Crash):
        review_server.credentials()
    assert list(tmp_path.iterdir()) == []  # no half-written credentials.json
    monkeypatch.undo()
    monkeypatch.setenv("DISTILL_ARGILLA_DIR", str(tmp_path))
    creds = review_server.credentials()
    path = tmp_path / "credentials.json"
    assert json.loads(path.read_text()) == creds and path.stat().st_mode & 0o777 == 0o600


def test_two_commands_on_one_run_keep_each_others_manifest_changes(tmp_path: Path) -> None:
    """`distill export` wrote back the manifest it read at start, so eval's "done" (written
    meanwhile by another process) went back to "running"."""
    import subprocess
    import sys

    from distill.runfolder import RunFolder

    root = tmp_path / "run"
    export = RunFolder(root)  # the export command, started while eval runs
    export.update_stage("train", status="done")
    child = (
        "import sys; from pathlib import Path; from distill.runfolder import RunFolder; "
        "RunFolder(Path(sys.argv[1])).update_stage('eval', status='done', counts={'n': 3})"
    )
    subprocess.run([sys.executable, "-c", child, str(root)], check=True)  # eval finishes
    export.change(lambda m: m.setdefault("exports", {}).update(gguf={"path": "x.gguf"}))
    on_disk = RunFolder(root).manifest
    assert on_disk["stages"]["eval"] == {"status": "done", "counts": {"n": 3}}
    assert on_disk["stages"]["train"]["status"] == "done"
    assert on_disk["exports"] == {"gguf": {"path": "x.gguf"}}
    assert export.manifest["stages"]["eval"]["status"] == "done"  # and it sees eval's now
