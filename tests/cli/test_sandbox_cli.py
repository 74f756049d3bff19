"""`dynamics-bridge sandbox dataverse|apsis|spar|all`: stand-ins an admin practises on.

Each test runs the command as an admin would, in its own process (in the test's directory, so
the state lands in ``./.bridge/sandbox``), waits for it to say it is ready, uses the ``.env`` it
wrote, then stops it with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from dotenv import dotenv_values
from typer.testing import CliRunner

from dynamics_bridge.apsis.client import ApsisClient
from dynamics_bridge.cli import app
from dynamics_bridge.settings import load_settings

runner = CliRunner()
STATE = Path(".bridge/sandbox")
CLI = "import sys; from dynamics_bridge.cli import app; sys.argv[0] = 'dynamics-bridge'; app()"


@contextmanager
def sandbox(*args: str) -> Iterator[list[str]]:
    """``dynamics-bridge sandbox ARGS`` until the block ends; yields its output lines so far."""
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, "sandbox", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    try:
        while not (seen and seen[-1].startswith("ready")):
            try:
                line = lines.get(timeout=60)
            except queue.Empty:
                pytest.fail(f"no 'ready' within 60 s: {seen}")
            if line is None:
                stderr = process.stderr.read() if process.stderr else ""
                pytest.fail(f"sandbox exited {process.wait()}: {seen} {stderr}")
            seen.append(line)
        yield seen
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        while (line := lines.get(timeout=5)) is not None:
            seen.append(line)
    assert code == 0, seen
    assert seen[-1] == "stopped"


def test_all_three_start_and_the_env_file_lets_every_command_in(monkeypatch) -> None:
    with sandbox("all") as output:
        assert any(line.startswith("Dataverse sandbox on https://127.0.0.1:") for line in output)
        assert any(line.startswith("APSIS stand-in on http://127.0.0.1:") for line in output)
        assert any(line.startswith("SPAR on http://127.0.0.1:") for line in output)
        values = dotenv_values(STATE / ".env")
        assert (
            load_settings(_env_file=STATE / ".env").dataverse.url == values["BRIDGE_DATAVERSE__URL"]
        )
        for name, value in values.items():
            assert value is not None
            monkeypatch.setenv(name, value)

        planned = runner.invoke(app, ["provision"])
        assert planned.exit_code == 0, planned.output
        assert "would create table mbr_payment" in planned.stdout

        found = runner.invoke(app, ["spar", "lookup", "196503129816", "--json"])
        assert found.exit_code == 0, found.output
        assert "STOCKHOLM" in found.stdout

        settings = load_settings()
        assert ApsisClient.from_settings(settings.apsis).definitions("attributes")


@pytest.mark.parametrize(
    ("which", "prefix"),
    [("dataverse", "BRIDGE_DATAVERSE__"), ("apsis", "BRIDGE_APSIS__"), ("spar", "BRIDGE_SPAR__")],
)
def test_each_stand_in_starts_alone_and_writes_only_its_settings(which, prefix) -> None:
    with sandbox(which):
        values = dotenv_values(STATE / ".env")
        assert values
        assert all(name.startswith(prefix) for name in values), sorted(values)
        settings = load_settings(_env_file=STATE / ".env")
        if which == "dataverse":
            token = requests.post(
                f"{settings.dataverse.authority}/oauth2/v2.0/token",
                data={
                    "client_id": settings.dataverse.client_id,
                    "client_secret": settings.dataverse.client_secret.get_secret_value(),
                    "grant_type": "client_credentials",
                },
                verify=settings.dataverse.ca_bundle,
                timeout=10,
            )
            assert token.status_code == 200, token.text
        elif which == "apsis":
            token = requests.post(
                f"{settings.apsis.base_url}/oauth/token",
                json={
                    "grant_type": "client_credentials",
                    "client_id": settings.apsis.client_id,
                    "client_secret": settings.apsis.client_secret.get_secret_value(),
                },
                timeout=10,
            )
            assert token.status_code == 200, token.text
        else:
            assert requests.get(str(settings.spar.endpoint), timeout=10).status_code == 405


def test_a_restart_keeps_credentials_ports_and_the_ca() -> None:
    with sandbox("all"):
        env = (STATE / ".env").read_text()
        ca = (STATE / "tls" / "ca.pem").read_bytes()
    with sandbox("all"):
        assert (STATE / ".env").read_text() == env
        assert (STATE / "tls" / "ca.pem").read_bytes() == ca


def test_the_old_dataverse_options_still_work(tmp_path) -> None:
    db = tmp_path / "elsewhere.sqlite"
    with sandbox("--db", str(db), "--time-scale", "60", "--app-users", "2") as output:
        assert db.exists()
        values = dotenv_values(STATE / ".env")
        assert values["BRIDGE_DATAVERSE__APP_USERS"]
        assert any(line.startswith("export BRIDGE_DATAVERSE__URL=") for line in output)


def test_a_seeded_register_is_there_for_the_retention_commands(tmp_path, monkeypatch) -> None:
    pytest.importorskip("sklearn")
    db = tmp_path / "register.sqlite"
    with sandbox("--db", str(db), "--retention-members", "3000") as output:
        assert any(line.startswith("seeded 3,000 members (") for line in output)
        for name, value in dotenv_values(STATE / ".env").items():
            monkeypatch.setenv(name, value or "")
        monkeypatch.setenv("BRIDGE_RETENTION__DIRECTORY", str(tmp_path / "models"))
        result = CliRunner().invoke(app, ["retention", "train", "--dry-run"])
        assert result.exit_code == 0, result.stdout + result.stderr  # trained, and used
        assert "retention train (dry run: nothing written)" in result.stdout
        assert "used: ROC AUC" in result.stdout


def test_a_state_dir_of_ones_own_is_honoured(tmp_path) -> None:
    with sandbox("spar", "--state-dir", str(tmp_path / "mine")):
        assert (tmp_path / "mine" / ".env").exists()
        assert not STATE.exists()


def test_a_foreign_env_file_is_not_overwritten(tmp_path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / ".env").write_text("BRIDGE_LOG__LEVEL=DEBUG\n")
    result = runner.invoke(app, ["sandbox", "spar", "--state-dir", str(tmp_path / "mine")])
    assert result.exit_code == 1
    assert "not written by the sandbox" in result.stderr
    assert (tmp_path / "mine" / ".env").read_text() == "BRIDGE_LOG__LEVEL=DEBUG\n"


def test_an_unknown_stand_in_is_refused_with_the_choices() -> None:
    result = runner.invoke(app, ["sandbox", "billogram"])
    assert result.exit_code == 2
    assert "dataverse" in result.output


def test_without_the_sandbox_package_it_says_how_to_get_it(monkeypatch) -> None:
    for name in [n for n in sys.modules if n.startswith("dynamics_bridge_sandbox")]:
        monkeypatch.setitem(sys.modules, name, None)  # None: "not installed" to the importer
    monkeypatch.setitem(sys.modules, "dynamics_bridge_sandbox", None)
    result = runner.invoke(app, ["sandbox", "all"])
    assert result.exit_code == 2
    assert "pip install -e packages/dynamics-bridge-sandbox" in result.stderr
