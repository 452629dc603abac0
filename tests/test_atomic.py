"""Nothing half-written (issue 16): plots and credentials are replaced whole or not at all."""

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
