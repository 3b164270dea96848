"""``podium serve`` as a user runs it: a real process on a loopback port, driven over HTTP."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from podium.cli import app as cli_app
from podium.cli.serve import banner
from tests.api.support import FINAL, write_workflows
from tests.tls import self_signed

START_SECONDS = 60.0
PODIUM = (sys.executable, "-m", "podium.cli")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    def __init__(self, process: subprocess.Popen[bytes], base: str, out: Path, err: Path) -> None:
        self.process = process
        self.base = base
        self.out = out
        self.err = err

    def stdout(self) -> str:
        return self.out.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    workflows = write_workflows(tmp_path / "workflows")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "PODIUM_ADMIN_TOKEN"}
    env.update(
        PODIUM_HOME=str(tmp_path / ".podium"), COLUMNS="200", PYTHONUNBUFFERED="1", NO_COLOR="1"
    )
    env.pop("PODIUM_DATABASE_URL", None)
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [*PODIUM, "serve", "--port", str(port), "--workflows", str(workflows)],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=stderr,
            # as from a terminal: a test run started in the background (a CI job, `cmd &` in
            # a script) ignores SIGINT, and the server would inherit that
            preexec_fn=_default_sigint,
        )
    running = Server(process, f"http://127.0.0.1:{port}", out, err)
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"podium serve exited with {process.returncode}:\n{running.stderr()}")
            try:
                if httpx.get(f"{running.base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"podium serve did not come up:\n{running.stderr()}")
            time.sleep(0.05)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _poll(client: httpx.Client, run_id: str, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        body: dict[str, Any] = client.get(f"/api/runs/{run_id}").raise_for_status().json()
        if body["status"] in statuses:
            return body
        assert time.monotonic() < deadline, f"run {run_id} stuck in {body['status']}"
        time.sleep(0.02)


def test_podium_serve_runs_workflows_and_reviews_over_http(server: Server) -> None:
    found = re.findall(r"PODIUM_ADMIN_TOKEN=([A-Za-z0-9_-]{43})\b", server.stdout())
    assert len(found) == 1, server.stdout()  # printed once, at start-up
    token = found[0]
    assert f"{server.base}/api" in server.stdout()
    assert f"{server.base}/docs" in server.stdout()
    assert "curl -H" in server.stdout()

    assert httpx.get(f"{server.base}/api/workflows").status_code == 401
    wrong = {"Authorization": "Bearer " + token[::-1]}
    assert httpx.get(f"{server.base}/api/workflows", headers=wrong).status_code == 401

    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.base, headers=auth, timeout=10) as client:
        names = [w["name"] for w in client.get("/api/workflows").json()]
        assert names == ["gated", "hello", "payout"]

        # start a run → poll → completed
        started = client.post("/api/workflows/hello/runs", json={"inputs": {"name": "Ada"}})
        assert started.status_code == 202
        done = _poll(client, started.json()["run_id"], *FINAL)
        assert done["status"] == "completed"
        assert done["output"]["greeting"] == "Hello, Ada!"

        # a human review, decided across the API
        review = client.post("/api/workflows/payout/runs", json={"inputs": {"amount": 5000}})
        run_id = review.json()["run_id"]
        waiting = _poll(client, run_id, "waiting", *FINAL)
        assert waiting["status"] == "waiting"
        assert [r["step"] for r in waiting["pending_reviews"]] == ["sign_off"]
        approved = client.post(
            f"/api/runs/{run_id}/approve", json={"step": "sign_off", "by": "cfo", "comment": "ok"}
        )
        assert approved.status_code == 202
        final = _poll(client, run_id, *FINAL)
        assert final["status"] == "completed"
        assert final["output"] == {"paid": "paid 5000", "reviewer": "cfo"}

        listed = client.get("/api/runs", params={"status": "completed"}).json()
        assert {r["run_id"] for r in listed} == {done["run_id"], run_id}
        spec = client.get("/openapi.json").json()
        assert "/api/runs/{run_id}/approve" in spec["paths"]

    # Ctrl-C: uvicorn shuts down gracefully, then re-raises SIGINT (exit status 128 + 2).
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=20) == 130, server.stderr()
    logs = server.stderr()
    assert "Traceback" not in logs
    assert "recovery: no runs were left running" in logs  # Podium's own log lines are shown
    assert "Application shutdown complete" in logs
    assert token not in logs
    assert server.stdout().count(token) == 1


def test_the_banner_never_shows_a_token_from_the_environment() -> None:
    console = Console(record=True, width=200)
    console.print(banner("http://127.0.0.1:8000", None, Path("examples")))
    text = console.export_text()
    assert "from $PODIUM_ADMIN_TOKEN" in text
    assert "http://127.0.0.1:8000/docs" in text
    assert 'curl -H "Authorization: Bearer $PODIUM_ADMIN_TOKEN"' in text


def test_serve_refuses_a_bad_store_url_readably(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODIUM_HOME", str(tmp_path))
    result = CliRunner().invoke(cli_app, ["serve", "--db", "mysql://root:hunter2@db/x"])
    assert result.exit_code == 2
    assert "unsupported store URL scheme 'mysql'" in result.stderr
    assert "hunter2" not in result.output + result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_plain_http_off_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PODIUM_HOME", str(tmp_path))
    result = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 2
    assert "refusing to serve plain HTTP on 0.0.0.0" in result.stderr
    assert "server.plain_http: allow" in result.stderr
    config = tmp_path / "gateway.yaml"
    config.write_text("server:\n  plain_http: refuse\n")
    refused = CliRunner().invoke(cli_app, ["serve", "--config", str(config), "--port", "1"])
    assert refused.exit_code == 2
    assert "server.plain_http is 'refuse'" in refused.stderr


def test_podium_serve_speaks_tls_and_takes_client_keys_from_its_config(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "server: {tls: {cert: gateway.pem, key: gateway.key}}\n"  # relative to the file
        "model_groups:\n"
        "  - name: mood\n"
        "    deployments: [{model: local/vader-sentiment}]\n"
        "keys:\n"
        "  - {id: ml-key, env: PODIUM_TEST_KEY_ML, org: acme, team: ml}\n"
    )
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    env.update(
        PODIUM_HOME=str(tmp_path / ".podium"),
        PODIUM_ADMIN_TOKEN="admin-token-for-the-tls-test",
        PODIUM_TEST_KEY_ML="pk-ml-0123456789",
        PYTHONUNBUFFERED="1",
    )
    err = tmp_path / "stderr.txt"
    with err.open("wb") as stderr:
        process = subprocess.Popen(
            [*PODIUM, "serve", "--port", str(port), "--config", str(config), "--workflows", "."],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    base = f"https://127.0.0.1:{port}"
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            assert process.poll() is None, err.read_text()
            try:
                if httpx.get(f"{base}/readyz", verify=trust, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        with pytest.raises(httpx.TransportError):  # no plain HTTP on a TLS port
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
        ml = {"Authorization": "Bearer pk-ml-0123456789"}
        with httpx.Client(base_url=base, verify=trust, headers=ml, timeout=10) as client:
            models = client.get("/v1/models")
            assert models.status_code == 200
            assert "mood" in [m["id"] for m in models.json()["data"]]
            assert client.get("/api/workflows").status_code == 403  # a key only calls models
        assert "pk-ml-0123456789" not in err.read_text()  # secrets never logged
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
