"""The local Argilla server (`distill review serve`): real argilla-server 2.8.0 with
distill's SQLite search engine, Redis and the worker; driven through the argilla SDK
as the owner and through the REST API as the annotator, as the web UI does (slow:
the first run installs argilla-server in its own venv)."""

from __future__ import annotations

import os
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
    """`distill review stop` stops what `serve` started (the test stopped nothing)."""
    from distill.review.server import _ready, serve

    def distill(*args: str) -> str:
        got = subprocess.run(
            [sys.executable, "-m", "distill", "review", *args], capture_output=True, text=True
        )
        assert got.returncode == 0, got.stderr
        return got.stdout

    out = distill("--help")
    for command in ("run", "serve", "stop"):
        assert f" {command} " in out
    port = int(server["url"].rsplit(":", 1)[1])
    assert _ready(port, server["api_key"])
    stopped = distill("stop")
    assert stopped.startswith("stopped: ") and {"redis", "server", "worker"} == set(
        stopped.removeprefix("stopped: ").strip().split(", ")
    )
    assert not _ready(port, server["api_key"])
    assert distill("stop").strip() == "nothing was running"
    assert serve(port)["api_key"] == server["api_key"]  # back for the tests after this one


def test_stop_then_serve_again_keeps_data_and_credentials(server: dict) -> None:
    import argilla as rg

    from distill.review.server import serve, stop

    assert set(stop()) == {"redis", "server", "worker"}
    port = int(server["url"].rsplit(":", 1)[1])
    again = serve(port)
    assert again["api_key"] == server["api_key"]
    client = rg.Argilla(api_url=again["url"], api_key=again["api_key"])
    ds = client.datasets(name="spot-check", workspace="argilla")
    assert ds is not None and len(list(ds.records)) == 6  # the SQLite database survived
    client.http_client.close()


def test_redis_is_private_and_argilla_gets_no_secrets(
    server: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis listened on TCP 6379 with no password, and `serve` reused any Redis found
    there: Argilla's worker runs the (pickled) jobs queued in it, so another user of the
    machine could run code as the reviewer. Now: a unix socket in the 0700 state folder,
    and Argilla's processes get only the environment they need."""
    import stat

    from distill.review.server import _pids, redis_socket, state_dir

    sock = redis_socket()
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(state_dir().stat().st_mode) == 0o700
    assert stat.S_IMODE(sock.stat().st_mode) & 0o077 == 0
    pids = _pids()
    for name in ("redis", "server", "worker"):
        cmdline = Path(f"/proc/{pids[name]}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pids[name]}/environ").read_bytes().split(b"\0")
        names = {e.split(b"=", 1)[0].decode() for e in environ if e}
        assert not {n for n in names if "KEY" in n or "TOKEN" in n or "SECRET" in n}, names
        if name == "redis":  # redis-server names what it listens on in its title
            assert b"unixsocket:" in cmdline[0] and b":6379" not in cmdline[0], cmdline
    # No TCP listener of Redis's: its process holds no listening inet socket.
    listening = Path("/proc/net/tcp").read_text() + Path("/proc/net/tcp6").read_text()
    inodes = {ln.split()[9] for ln in listening.splitlines()[1:] if ln.split()[3] == "0A"}
    fds = Path(f"/proc/{pids['redis']}/fd")
    held = {
        os.readlink(fd).removeprefix("socket:[").rstrip("]")
        for fd in fds.iterdir()
        if os.readlink(fd).startswith("socket:")
    }
    assert not held & inodes
