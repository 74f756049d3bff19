"""The CLI logs as the function app does: JSON on stderr, personnummer masked, secrets removed."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from dynamics_bridge.cli import app

runner = CliRunner()
SIGN_KEY = "hunter2-billogram-sign-key"


@pytest.fixture
def logging_command() -> Iterator[str]:
    """A command that logs what library code might: a configured secret and a personnummer."""

    @app.command("log-for-test", hidden=True)
    def log_for_test(text: str) -> None:
        logging.getLogger("dynamics_bridge.test").warning("signing %s failed", text)

    try:
        yield "log-for-test"
    finally:
        app.registered_commands[:] = [
            c for c in app.registered_commands if c.name != "log-for-test"
        ]


def json_lines(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_a_configured_secret_is_removed_from_cli_logs(logging_command, monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_BILLOGRAM__SIGN_KEY", SIGN_KEY)
    result = runner.invoke(app, [logging_command, f"with {SIGN_KEY} for 19811218-9876"])
    assert result.exit_code == 0, result.output
    assert SIGN_KEY not in result.stderr
    (line,) = json_lines(result.stderr)  # one handler: the secret-less one was replaced
    assert line["message"] == "signing with *** for 19811218-**** failed"


def test_settings_that_do_not_load_still_leave_the_filter_on(logging_command, monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_BILLOGRAM__SIGN_KEY", SIGN_KEY)
    monkeypatch.setenv("BRIDGE_QUEUE__BACKEND", "azure")  # without its connection string
    result = runner.invoke(app, [logging_command, "for 19811218-9876"])
    assert result.exit_code == 0, result.output
    (line,) = json_lines(result.stderr)
    assert line["message"] == "signing for 19811218-**** failed"
