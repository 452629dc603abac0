"""The local Argilla server (`distill review serve`): real argilla-server 2.8.0 with
distill's SQLite search engine, Redis and the worker; driven through the argilla SDK
as the owner and through the REST API as the annotator, as the web UI does (slow:
the first run installs argilla-server in its own venv)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def server(argilla_server: dict) -> dict:
    return argilla_server


def test_serve_prints_address_and_credentials_and_is_idempotent(
    server: dict, tmp_path: Path
) -> None:
    from distill.review.server import credentials, serve, state_dir

    assert server["url"].startswith("http://127.0.0.1:")
    assert server["owner"]["username"] == "argilla" and server["annotator"]["password"]
    assert (state_dir() / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert credentials()["api_key"] == server["api_key"]
    port = int(server["url"].rsplit(":", 1)[1])
    t0 = time.monotonic()
    assert serve(port)["url"] == server["url"]  # already running: nothing restarted
    assert time.monotonic() - t0 < 5


def test_sdk_flow_with_filters_and_annotator_responses(server: dict) -> None:
    import argilla as rg
    import requests

    client = rg.Argilla(api_url=server["url"], api_key=server["api_key"])
    settings = rg.Settings(
        fields=[rg.TextField(name="instruction"), rg.TextField(name="response")],
        questions=[
            rg.LabelQuestion(name="verdict", labels=["accept", "reject"]),
            rg.TextQuestion(name="corrected_response", required=False),
        ],
        metadata=[rg.TermsMetadataProperty(name="task"), rg.FloatMetadataProperty(name="support")],
    )
    ds = rg.Dataset(name="spot-check", workspace="argilla", settings=settings, client=client)
    ds.create()
    records = [
        rg.Record(
            id=f"s{i}",
            fields={"instruction": f"Question {i}?", "response": f"Answer {i}."},
            metadata={"task": "qa" if i % 2 else "raft", "support": i / 10},
            suggestions=[rg.Suggestion("verdict", "accept", score=0.9)],
        )
        for i in range(6)
    ]
    ds.records.log(records)
    assert sorted(r.id for r in ds.records) == [f"s{i}" for i in range(6)]
    qa = rg.Query(filter=rg.Filter(("metadata.task", "==", "qa")))
    assert sorted(r.id for r in ds.records(query=qa)) == ["s1", "s3", "s5"]
    high = rg.Query(filter=rg.Filter(("metadata.support", ">=", 0.3)))
    assert sorted(r.id for r in ds.records(query=high)) == ["s3", "s4", "s5"]
    ds.records.log(records[:2])  # the same ids again: updated, not duplicated
    assert len(list(ds.records)) == 6

    # The annotator answers through the REST API, as the web UI does.
    token = requests.post(
        f"{server['url']}/api/v1/token",
        data={"username": "annotator", "password": server["annotator"]["password"]},
        timeout=10,
    ).json()["access_token"]
    by_id = {r.id: r for r in ds.records}
    answers = {
        "s1": {"verdict": {"value": "reject"}},
        "s2": {"verdict": {"value": "accept"}, "corrected_response": {"value": "Fixed."}},
    }
    for rid, values in answers.items():
        resp = requests.post(
            f"{server['url']}/api/v1/records/{by_id[rid]._server_id}/responses",
            json={"values": values, "status": "submitted"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert resp.status_code == 201, resp.text
    got = {
        r.id: {name: [x.value for x in r.responses[name]] for name in ("verdict",)}
        for r in ds.records(with_responses=True)
        if r.responses
    }
    assert got == {"s1": {"verdict": ["reject"]}, "s2": {"verdict": ["accept"]}}
    submitted = rg.Query(filter=rg.Filter(("response.status", "==", "submitted")))
    assert sorted(r.id for r in ds.records(query=submitted)) == ["s1", "s2"]
    assert ds.progress()["total"] == 6
    client.http_client.close()  # its keep-alive connections would outlive the server


def test_cli_stop_and_help(server: dict) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "distill", "review", "--help"], capture_output=True, text=True
    ).stdout
    for command in ("run", "serve", "stop"):
        assert f" {command} " in out


def test_stop_then_serve_again_keeps_data_and_credentials(server: dict) -> None:
    import argilla as rg

    from distill.review.server import serve, stop

    assert set(stop()) == {"redis", "server", "worker"}
    port = int(server["url"].rsplit(":", 1)[1])
    again = serve(port, server["redis_port"])
    assert again["api_key"] == server["api_key"]
    client = rg.Argilla(api_url=again["url"], api_key=again["api_key"])
    ds = client.datasets(name="spot-check", workspace="argilla")
    assert ds is not None and len(list(ds.records)) == 6  # the SQLite database survived
    client.http_client.close()
