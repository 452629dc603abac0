"""Secrets stay where they belong: tokens go only to the hosts meant for them. Kept flat:
one property across redact, export, the pipeline, review, publish and the train report."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.errors import TeacherError, UserError
from distill.redact import redact, scrub
from distill.review import argilla as argilla_io
from distill.runfolder import RunFolder, RunOptions


@pytest.mark.parametrize(
    ("url", "sends"),
    [
        ("https://team-argilla.hf.space", True),
        ("https://team-argilla.hf.space/", True),
        ("https://TEAM-argilla.HF.space:443/api", True),
        ("https://x.hf.space.evil.example", False),  # contains ".hf.space", is not one
        ("https://evil.example/?u=.hf.space", False),
        ("https://evil.example#.hf.space", False),
        ("https://user@evil.example:.hf.space@evil.example", False),
        ("http://team-argilla.hf.space", False),  # the token never travels in clear text
        ("https://hf.space", False),
        ("https://evilhf.space", False),
        ("http://localhost:6900", False),
    ],
)
def test_hf_token_goes_only_to_https_spaces(
    url: str, sends: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    auth = argilla_io._space_auth(url)
    assert bool(auth) is sends
    if sends:
        assert auth["headers"]["Authorization"] == "Bearer hf_secret_value"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:pa55@proxy.example/v1", "https://<redacted>@proxy.example/v1"),
        ("see http://tok@h.example:8080/x.", "see http://<redacted>@h.example:8080/x."),
        ("https://a:b@c@host.example/", "https://<redacted>@host.example/"),
        (
            "https://h.example/v1?api-key=abc123&model=m",
            "https://h.example/v1?api-key=<redacted>&model=m",
        ),
        ("https://h.example/?key=abc", "https://h.example/?key=<redacted>"),
        ("https://h.example/?x=1&token=abc#frag", "https://h.example/?x=1&token=<redacted>#frag"),
        ("https://blob.example/f?sv=1&sig=Zm9v%3D", "https://blob.example/f?sv=1&sig=<redacted>"),
        ("https://h.example/?API_KEY=abc", "https://h.example/?API_KEY=<redacted>"),
        ("https://h.example/v1?model=m", "https://h.example/v1?model=m"),  # nothing secret
        ("max_new_tokens=160 and a monkey=banana", "max_new_tokens=160 and a monkey=banana"),
    ],
)
def test_redact_removes_credentials_in_urls(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_removes_env_secret_values_and_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_API_KEY", "correct-horse-battery")
    hf = "hf_" + "A" * 34
    out = redact(f"key correct-horse-battery and {hf} and sk-proj-{'b' * 24}")
    assert out == "key <redacted> and <redacted> and <redacted>"


def test_scrub_keeps_counts_named_like_tokens() -> None:
    # The published recipe had `chunk_tokens: <redacted>`: "token" matched any field.
    out = scrub(
        {
            "chunk_tokens": 256,
            "max_new_tokens": 160,
            "hf_token": "abc",
            "api_key": "abc",
            "api_key_env": "OPENAI_API_KEY",
            "password_env": "ARGILLA_PASSWORD",
            "headers": {"Authorization": "Bearer x"},
            "base_url": "https://u:p@h.example/v1?key=k",
        }
    )
    assert out == {
        "chunk_tokens": 256,
        "max_new_tokens": 160,
        "hf_token": "<redacted>",
        "api_key": "<redacted>",
        "api_key_env": "OPENAI_API_KEY",
        "password_env": "ARGILLA_PASSWORD",
        "headers": {"Authorization": "<redacted>"},
        "base_url": "https://<redacted>@h.example/v1?key=<redacted>",
    }


def test_teacher_errors_and_cli_errors_carry_no_url_credentials(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    e = TeacherError(
        "openai:m: cannot connect (https://u:hunter22@h.example/v1?key=abc)",
        body='{"url": "https://h.example/?token=abc"}',
    )
    assert "hunter22" not in str(e) and "abc" not in str(e) and "abc" not in (e.body or "")
    from distill import cli

    def boom() -> None:
        raise UserError("cannot reach https://h.example/v1?api-key=s3cr3t-value")

    monkeypatch.setattr(cli, "app", boom)
    assert cli.main() == 2
    err = capsys.readouterr().err
    assert "cannot reach" in err and "s3cr3t" not in err


def test_manifest_on_disk_carries_no_credentials(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    recipe = {
        "teacher": {"options": {"base_url": "https://u:pw-123@h.example/v1?key=k1"}},
        "ingest": {"chunk_tokens": 256},
    }
    run.change(lambda m: m.update(recipe=recipe))
    text = (tmp_path / "run" / "manifest.json").read_text()
    assert "pw-123" not in text and "k1" not in text
    assert '"chunk_tokens": 256' in text
    assert run.manifest["recipe"]["teacher"]["options"]["base_url"].startswith(
        "https://u:pw-123@"
    )  # the running process keeps what the recipe says


def test_secret_scan_says_when_it_could_not_read_the_hub_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    from distill.publish.secrets import find_secrets

    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "README.md").write_text("nothing secret\n")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "missing"))
    assert find_secrets(folder) == []  # no login cache: nothing to look for
    unreadable = tmp_path / "token"
    unreadable.mkdir()  # reading it fails (a folder), as an unreadable file would
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(unreadable))
    found = find_secrets(folder)
    assert len(found) == 1 and "could not be read" in found[0] and "not looked for" in found[0]


def test_a_stopped_publish_leaves_the_earlier_folder_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real `write_dataset` over rows with a key in an answer: the scan stops it before
    the staged folder replaces the one published before, and no staging is left."""
    from distill.pipeline import RunOptions
    from distill.publish.stage import write_dataset
    from tests.review.test_stage import publishable_run, sample

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    leaky = sample(2)
    leaky["messages"][-1]["content"] = "Use the key sk-proj-" + "x" * 30 + " to log in."
    recipe, run = publishable_run(tmp_path, [sample(1), leaky], [], "sft")
    dest = tmp_path / "publish" / "dataset"
    dest.mkdir(parents=True)
    (dest / "README.md").write_text("the earlier, clean card\n")
    with pytest.raises(UserError, match="not written, the secret scan stopped it.*OpenAI"):
        write_dataset(recipe, run, dest, "me/r", RunOptions())
    assert (dest / "README.md").read_text() == "the earlier, clean card\n"
    assert [p.name for p in dest.parent.iterdir()] == ["dataset"]  # no staging left behind
    # Without the key the same publish goes through and replaces the folder.
    _, clean = publishable_run(tmp_path / "b", [sample(1), sample(2)], [], "sft")
    write_dataset(recipe, clean, dest, "me/r", RunOptions())
    assert "the earlier, clean card" not in (dest / "README.md").read_text()


def test_argilla_credentials_never_reach_a_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    from distill.review import server as review_server

    monkeypatch.setenv("DISTILL_ARGILLA_DIR", str(tmp_path / "argilla"))
    creds = review_server.credentials()
    assert (tmp_path / "argilla" / "credentials.json").stat().st_mode & 0o777 == 0o600
    seen: list[list[str]] = []

    def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        seen.append(list(cmd))
        assert isinstance(kw.get("env"), dict)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(review_server.subprocess, "run", run)
    env = review_server._env()
    review_server._argilla(
        ["database", "users", "create_default", "--api-key", review_server.secret_arg("api_key")],
        env,
    )
    review_server._create_annotator(env)
    argv = " ".join(" ".join(c) for c in seen)
    assert not any(v in argv for v in creds.values())
    assert "@credentials:annotator_password" in argv
    # The launcher, inside the server's venv, puts the values back into its sys.argv.
    source = review_server.LAUNCHER.read_text()
    namespace: dict[str, object] = {}
    exec(source.split("sys.argv = fill(sys.argv)")[0], namespace)  # the fill(), not argilla
    fill = namespace["fill"]
    monkeypatch.setenv("DISTILL_ARGILLA_CREDENTIALS", env["DISTILL_ARGILLA_CREDENTIALS"])
    assert fill(["x", "--password", "@credentials:owner_password"]) == [  # type: ignore[operator]
        "x",
        "--password",
        creds["owner_password"],
    ]


def test_review_stop_never_signals_a_reused_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import subprocess

    from distill.review import server as review_server

    monkeypatch.setenv("DISTILL_ARGILLA_DIR", str(tmp_path / "argilla"))
    (tmp_path / "argilla").mkdir()
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    ours = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        pids = {
            # the pid distill saved, now another program's: its start time differs
            "server": {"pid": stranger.pid, "started": "1"},
            "worker": {"pid": ours.pid, "started": review_server.started_at(ours.pid)},
        }
        (tmp_path / "argilla" / "pids.json").write_text(json.dumps(pids))
        assert review_server.stop() == ["worker"]
        assert ours.wait(timeout=10) is not None
        assert stranger.poll() is None  # still running: not ours, not signalled
    finally:
        stranger.kill()
        ours.kill()
        stranger.wait()
        ours.wait()


def _sdist(tmp_path: Path, members: dict[str, bytes]) -> Path:
    import io
    import tarfile

    path = tmp_path / "built" / "llama_cpp_python-0.3.36.tar.gz"
    path.parent.mkdir()
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _fake_pip(monkeypatch: pytest.MonkeyPatch, archive: Path, digest: str) -> list[list[str]]:
    import shutil
    import subprocess

    from distill import export

    calls: list[list[str]] = []

    def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        calls.append(list(cmd))
        shutil.copy(archive, cmd[cmd.index("-d") + 1])
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(export.subprocess, "run", run)
    monkeypatch.setattr(export, "SDIST_SHA256", {"0.3.36": digest})
    monkeypatch.setattr(export.metadata, "version", lambda name: "0.3.36")
    monkeypatch.delenv("DISTILL_LLAMA_CPP", raising=False)
    return calls


PREFIX = "llama_cpp_python-0.3.36/vendor/llama.cpp/"


def test_converter_sources_are_pinned_by_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from distill import export

    monkeypatch.setenv("DISTILL_TOOLS", str(tmp_path / "cache"))
    archive = _sdist(tmp_path, {PREFIX + "convert_hf_to_gguf.py": b"print('converter')\n"})
    good = hashlib.sha256(archive.read_bytes()).hexdigest()
    calls = _fake_pip(monkeypatch, archive, "0" * 64)  # not this archive's hash
    with pytest.raises(UserError, match="do not match their pinned sha256"):
        export.converter_dir()
    assert not (tmp_path / "cache" / "llama.cpp-converters-0.3.36").exists()
    assert "--require-hashes" in calls[0]
    monkeypatch.setattr(export, "SDIST_SHA256", {"0.3.36": good})
    out = export.converter_dir()
    assert (out / "convert_hf_to_gguf.py").read_bytes() == b"print('converter')\n"


@pytest.mark.parametrize(
    "evil",
    ["conversion/../../../escaped.py", "gguf-py/../../../../escaped.py"],
)
def test_converter_extraction_refuses_members_that_escape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, evil: str
) -> None:
    import hashlib

    from distill import export

    monkeypatch.setenv("DISTILL_TOOLS", str(tmp_path / "cache"))
    archive = _sdist(
        tmp_path,
        {PREFIX + "convert_hf_to_gguf.py": b"ok\n", PREFIX + evil: b"import os  # evil\n"},
    )
    _fake_pip(monkeypatch, archive, hashlib.sha256(archive.read_bytes()).hexdigest())
    with pytest.raises(UserError, match="would be written outside"):
        export.converter_dir()
    assert not list(tmp_path.rglob("escaped.py"))
    assert not (tmp_path / "cache" / "llama.cpp-converters-0.3.36").exists()


def test_an_export_from_an_adapter_since_retrained_is_stale(tmp_path: Path) -> None:
    from distill.export import _record_source, current_adapter_id, made_from_current_adapter

    run = RunFolder(tmp_path / "run")
    adapter = run.adapter_dir
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v1")
    run.update_stage("train", status="done")
    merged = run.export_dir / "merged"
    merged.mkdir(parents=True)
    (merged / "config.json").write_text("{}")
    assert not made_from_current_adapter(merged, run)  # no record of its source: not trusted
    _record_source(merged, current_adapter_id(run))
    assert made_from_current_adapter(merged, run)
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v2")  # retrained
    assert not made_from_current_adapter(merged, run)
    lora = run.export_dir / "r-lora-f16.gguf"
    lora.write_bytes(b"GGUF")
    _record_source(lora, current_adapter_id(run))
    assert made_from_current_adapter(lora, run)
    (adapter / "adapter_model.safetensors").write_bytes(b"weights v3")
    assert not made_from_current_adapter(lora, run)


def test_curate_reruns_when_what_it_reads_from_other_stages_changes(tmp_path: Path) -> None:
    from distill.pipeline import default_stages

    def extra(text: str) -> dict[str, object]:
        path = tmp_path / "r.yaml"
        if "ingest:" not in text:
            text += "ingest: {paths: [docs]}\n"
        path.write_text(f"name: r\nteacher: 'fake:'\ngenerate: {{prompts_dir: p}}\n{text}")
        from distill.recipe import load_recipe

        return default_stages()["curate"].extra(load_recipe(path))

    base = extra("curate: {judge: 'fake:'}\n")
    assert extra("curate: {judge: 'fake:'}\ntrain: {max_seq_length: 300}\n") != base
    assert (
        extra("curate: {judge: 'fake:'}\ningest: {paths: [docs], embedding_model: ./e}\n") != base
    )
    (tmp_path / "p" / "judge").mkdir(parents=True)
    (tmp_path / "p" / "judge" / "v1.j2").write_text("[system]\nmine\n[user]\n{{ question }}\n")
    assert extra("curate: {judge: 'fake:'}\n") != base  # the judge template's text changed


def test_publish_refuses_an_adapter_retrained_after_eval(tmp_path: Path) -> None:
    from distill.io import write_json
    from distill.publish.stage import write
    from distill.recipe import load_recipe
    from tests.evaluate.test_metrics import metrics_for, scripted_rows

    (tmp_path / "r.yaml").write_text(
        f"name: r\nrun_dir: {tmp_path / 'runs'}\ningest: {{paths: [docs]}}\nteacher: 'fake:'\n"
    )
    recipe = load_recipe(tmp_path / "r.yaml")
    run = RunFolder(recipe.run_path)
    adapter = run.adapter_dir
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(b"retrained weights")
    (run.stage_dir("train") / "metrics.json").write_text("{}")
    measured = metrics_for(scripted_rows(), adapter_sha256="0" * 64)
    write_json(run.stage_dir("eval") / "metrics.json", measured.model_dump(mode="json"))
    for stage in ("train", "eval"):
        run.update_stage(stage, status="done")
    with pytest.raises(UserError, match="retrained after eval measured it"):
        write(recipe, run, "adapter", RunOptions())
    assert not (run.root / "publish" / "adapter").exists()


def test_the_training_report_redacts_a_served_teachers_credentials(tmp_path: Path) -> None:
    from distill.train.config import TrainConfig
    from distill.train.report import report as _report
    from distill.train_results import TrainMetrics
    from tests.test_train_results import gkd_pass

    url = "https://trainer:s3cret-pass@teacher.internal/v1?api_key=abcdef123456"
    served = {"model": "openai:big", "options": {"base_url": url}}
    cfg = TrainConfig.model_validate({"method": "gkd", "gkd": {"served_teacher": served}})
    metrics = TrainMetrics(method="gkd", examples=8, gkd=gkd_pass(served=True))
    text = _report("student", cfg, metrics, tmp_path)
    assert "teacher.internal" in text  # the setting is there
    assert "s3cret-pass" not in text and "abcdef123456" not in text


def test_argillas_processes_get_a_private_redis_and_no_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distill.review import server as review_server

    monkeypatch.setenv("DISTILL_ARGILLA_DIR", str(tmp_path / "argilla"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-for-argilla-123")
    monkeypatch.setenv("HF_TOKEN", "hf_not_for_argilla")
    monkeypatch.setenv("ARGILLA_API_URL", "http://elsewhere:6900")
    env = review_server._env()
    assert env["ARGILLA_REDIS_URL"] == f"unix://{tmp_path / 'argilla' / 'redis.sock'}?db=0"
    assert not {"OPENAI_API_KEY", "HF_TOKEN", "ARGILLA_API_URL"} & set(env)
    assert set(env) - set(review_server.PASSED_ENV) == {
        "ARGILLA_HOME_PATH", "ARGILLA_SEARCH_ENGINE", "ARGILLA_REDIS_URL",
        "ARGILLA_ENABLE_TELEMETRY", "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_OFFLINE",
        "DISTILL_ARGILLA_CREDENTIALS", "TMPDIR",
    }  # fmt: skip


def test_a_python_subprocess_of_the_tests_cannot_reach_the_network() -> None:
    """The in-process guard covered the test process only: a child (the CLI, a server, a
    training worker) could reach the network where no namespace could be made."""
    import subprocess
    import sys

    probe = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('203.0.113.7', 443), timeout=2)\n"
        "except OSError as e:\n"
        "    print(e)\n"
    )
    got = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "tests must not reach the network" in got.stdout
    # Loopback stays open to children (the servers the tests start).
    loop = "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print('ok')"
    assert subprocess.run([sys.executable, "-c", loop], capture_output=True, text=True).stdout
