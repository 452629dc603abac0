"""A local Argilla server for one team, without Elasticsearch: `distill review serve`.

Argilla 2.x normally searches through Elasticsearch or OpenSearch. distill runs
argilla-server 2.8.0 in its own virtual environment (its pins conflict with
distill's) with a search engine that reads Argilla's own SQLite database
(review/server/sqlite_engine.py), plus Redis and Argilla's background worker, all on
127.0.0.1. The venv is `argilla-venv/` in distill's cache (`$DISTILL_CACHE`, default
`~/.cache/distill`); the server's state is in `$DISTILL_ARGILLA_DIR` (default the
cache's `argilla/`): Argilla's home (its database), logs, the process ids, and
credentials.json (mode 0600) with the owner's API key and the owner's and an
annotator's passwords, generated on first start. Redis listens on a unix socket in that
folder (mode 0700), never on a TCP port: Argilla's worker runs whatever job is queued
(pickled), so a Redis other users of the machine can reach would let them run code as
the reviewer. A Redis distill did not start is never used.

`distill review push|status|pull` use this server unless $ARGILLA_API_URL (or
`review.api_url`) points at another one (distill/review/argilla.py).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from distill import assets
from distill.errors import UserError
from distill.io import write_text
from distill.models import cache_dir, tools_dir
from distill.ui import console

ARGILLA_SERVER = "argilla-server==2.8.0"
# typer 0.9 (argilla-server's pin) breaks with click 8.2+ ("Secondary flag is not
# valid for non-boolean flag").
PINS = [ARGILLA_SERVER, "click==8.1.8"]
LAUNCHER = assets.path("review", "server", "launch.py")
OWNER, ANNOTATOR = "argilla", "annotator"


def state_dir() -> Path:
    """The server's database, logs, process ids and credentials
    ($DISTILL_ARGILLA_DIR, default: the distill cache's `argilla/`)."""
    return Path(os.environ.get("DISTILL_ARGILLA_DIR") or cache_dir() / "argilla")


def _venv() -> Path:
    return tools_dir() / "argilla-venv"


def _python() -> Path:
    return _venv() / "bin" / "python"


def ensure_venv() -> Path:
    """argilla-server's own virtual environment, created on first use (~1 minute)."""
    py = _python()
    stamp = _venv() / ".distill-installed"
    if stamp.exists() and stamp.read_text() == " ".join(PINS):
        return py
    console.print(f"  installing {ARGILLA_SERVER} in {_venv()} (once)")
    subprocess.run([sys.executable, "-m", "venv", str(_venv())], check=True)
    result = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PINS],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise UserError(f"could not install {ARGILLA_SERVER}: {result.stderr.strip()[-500:]}")
    write_text(stamp, " ".join(PINS))
    return py


def _credentials_path() -> Path:
    return state_dir() / "credentials.json"


def secret_arg(name: str) -> str:
    """A command-line argument the launcher replaces with credential `name` (so no
    password or key is in any process's argv)."""
    return f"@credentials:{name}"


def credentials() -> dict[str, str]:
    """The local server's credentials, generated once and kept with mode 0600."""
    path = _credentials_path()
    if path.exists():
        return dict(json.loads(path.read_text()))
    creds = {
        "api_key": "argilla.apikey." + secrets.token_urlsafe(24),
        "owner_password": secrets.token_urlsafe(12),
        "annotator_password": secrets.token_urlsafe(12),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole or not at all, readable by this user only from its first byte.
    fd, tmp = tempfile.mkstemp(prefix=".credentials.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(creds, f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return creds


def redis_socket() -> Path:
    """Redis's unix socket, in the state folder (mode 0700)."""
    return state_dir() / "redis.sock"


# What Argilla's processes get of this one's environment: nothing else (no API keys,
# no tokens, no ARGILLA_* of another server).
PASSED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ")


def _env() -> dict[str, str]:
    tmp = state_dir() / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env.update(
        ARGILLA_HOME_PATH=str(state_dir() / "home"),
        ARGILLA_SEARCH_ENGINE="sqlite",
        ARGILLA_REDIS_URL=f"unix://{redis_socket()}?db=0",
        ARGILLA_ENABLE_TELEMETRY="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_OFFLINE="1",
        DISTILL_ARGILLA_CREDENTIALS=str(_credentials_path()),
        # Every import of argilla_server copies its web UI into a new temporary folder.
        TMPDIR=str(tmp),
    )
    return env


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# The processes this one started: kept so they are waited for, not garbage-collected
# while running.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _start(name: str, cmd: list[str], env: dict[str, str]) -> int:
    logs = state_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    _children[proc.pid] = proc
    return proc.pid


def _argilla(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(_python()), str(LAUNCHER), *args], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise UserError(f"argilla {' '.join(args[:3])} failed: {result.stderr.strip()[-500:]}")


def started_at(pid: int) -> str | None:
    """When process `pid` started, as an opaque token (None: no such process). A pid the
    system reused for another program has another start time."""
    try:  # Linux: field 22 of /proc/PID/stat, clock ticks since boot
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        if Path("/proc/self").exists():
            return None
    result = subprocess.run(  # elsewhere (macOS): ps prints the start time
        ["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True
    )
    return result.stdout.strip() or None


def _pids() -> dict[str, int]:
    """The processes `serve` started that are still those processes (not a reused pid)."""
    path = state_dir() / "pids.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    out = {}
    for name, entry in saved.items():
        if not isinstance(entry, dict):  # an older pids.json: no way to tell; leave it be
            continue
        pid = int(entry["pid"])
        if entry.get("started") is not None and started_at(pid) == entry["started"]:
            out[name] = pid
    return out


def _alive(pid: int) -> bool:
    if pid in _children:
        return _children[pid].poll() is None
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _start_redis(env: dict[str, str]) -> int:
    """distill's own Redis on the state folder's unix socket (no TCP port)."""
    sock = redis_socket()
    if len(str(sock)) > 100:
        raise UserError(
            f"the Redis socket path {sock} is too long for a unix socket; set "
            "DISTILL_ARGILLA_DIR to a shorter folder"
        )
    sock.unlink(missing_ok=True)  # left by a Redis that is gone
    cmd = ["redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
    pid = _start("redis", cmd + ["--save", "", "--appendonly", "no"], env)
    deadline = time.monotonic() + 10
    while not sock.exists():
        if not _alive(pid) or time.monotonic() > deadline:
            raise UserError(f"Redis did not start; see {state_dir() / 'logs' / 'redis.log'}")
        time.sleep(0.1)
    return pid


def serve(port: int = 6900, timeout_s: float = 120) -> dict[str, Any]:
    """Start Redis (on a unix socket), Argilla and its worker (on 127.0.0.1); return the
    URL and credentials."""
    if shutil.which("redis-server") is None:
        raise UserError("redis-server is not installed; run: apt-get install -y redis-server")
    running = {k: p for k, p in _pids().items() if _alive(p)}
    if "server" in running and _listening(port):
        return info(port)
    if _listening(port):
        raise UserError(f"port {port} is in use by another program; pass --port")
    ensure_venv()
    state_dir().mkdir(parents=True, exist_ok=True)
    state_dir().chmod(0o700)  # the socket, the database and the credentials: this user's
    creds = credentials()
    env = _env()
    pids: dict[str, int] = {}
    # Our own Redis when it still runs; never one distill did not start.
    pids["redis"] = running.get("redis") or _start_redis(env)
    _argilla(["database", "migrate"], env)
    _argilla(
        ["database", "users", "create_default", "--quiet"]
        + ["--api-key", secret_arg("api_key"), "--password", secret_arg("owner_password")],
        env,
    )
    _create_annotator(env)
    launch = [str(_python()), str(LAUNCHER)]
    pids["server"] = _start(
        "server", launch + ["start", "--host", "127.0.0.1", "--port", str(port)], env
    )
    pids["worker"] = _start("worker", launch + ["worker", "--num-workers", "1"], env)
    write_text(
        state_dir() / "pids.json",
        json.dumps({k: {"pid": p, "started": started_at(p)} for k, p in pids.items()}),
    )
    write_text(state_dir() / "server.json", json.dumps({"port": port}))
    deadline = time.monotonic() + timeout_s
    while not _ready(port, creds["api_key"]):
        if not _alive(pids["server"]):
            log = state_dir() / "logs" / "server.log"
            raise UserError(f"the Argilla server exited; see {log}")
        if time.monotonic() > deadline:
            raise UserError(f"the Argilla server did not answer in {timeout_s:.0f} s")
        time.sleep(0.5)
    return info(port)


def _create_annotator(env: dict[str, str]) -> None:
    args = ["database", "users", "create", "--username", ANNOTATOR, "--first-name", "Annotator"]
    args += ["--role", "annotator", "--password", secret_arg("annotator_password")]
    args += ["--workspace", "argilla"]
    result = subprocess.run(
        [str(_python()), str(LAUNCHER), *args], env=env, capture_output=True, text=True
    )
    if result.returncode != 0 and "already exists" not in result.stdout + result.stderr:
        raise UserError(f"could not create the annotator: {result.stderr.strip()[-500:]}")


def _ready(port: int, api_key: str) -> bool:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/me", headers={"X-Argilla-Api-Key": api_key}
    )
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def info(port: int = 6900) -> dict[str, Any]:
    creds = credentials()
    return {
        "url": f"http://127.0.0.1:{port}",
        "api_key": creds["api_key"],
        "owner": {"username": OWNER, "password": creds["owner_password"]},
        "annotator": {"username": ANNOTATOR, "password": creds["annotator_password"]},
    }


def local_server() -> dict[str, Any] | None:
    """The running local server's URL and credentials, or None when none is running."""
    path = state_dir() / "server.json"
    server = _pids().get("server")
    if not path.exists() or server is None or not _alive(server):
        return None
    return info(int(json.loads(path.read_text())["port"]))


def stop() -> list[str]:
    """Stop what `serve` started; return the names of what was stopped. A saved pid that
    now names another program (the pid was reused) is left alone."""
    stopped = []
    for name, pid in _pids().items():
        if not _alive(pid):
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            continue
        for _ in range(50):
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
        if pid in _children:
            _children.pop(pid).wait(timeout=10)
        stopped.append(name)
    (state_dir() / "pids.json").unlink(missing_ok=True)
    (state_dir() / "server.json").unlink(missing_ok=True)
    shutil.rmtree(state_dir() / "tmp", ignore_errors=True)
    return stopped
