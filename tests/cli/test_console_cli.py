"""``dynamics-bridge console``: the sign-in link, loopback by default, and ``--demo``'s real day."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.testclient import TestClient
from typer.testing import CliRunner

from dynamics_bridge.cli import app

runner = CliRunner()


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """uvicorn.run replaced: what it was asked to serve, and a look at the overview over it."""
    seen: dict[str, Any] = {}

    def run(asgi: Any, *, host: str, port: int, **_: Any) -> None:
        seen.update(app=asgi, host=host, port=port)

    monkeypatch.setattr(uvicorn, "run", run)
    return seen


def sign_in_link(output: str) -> str:
    found = re.search(r"http://127\.0\.0\.1:8470(/login\?token=[\w-]+)", output)
    assert found, output
    return found.group(1)


def test_the_console_listens_on_loopback_and_prints_a_one_time_link(served) -> None:
    result = runner.invoke(app, ["console"])
    assert result.exit_code == 0, result.output
    assert (served["host"], served["port"]) == ("127.0.0.1", 8470)
    link = sign_in_link(result.stdout)
    with TestClient(served["app"], headers={"accept": "text/html"}) as browser:
        assert browser.get("/", follow_redirects=False).status_code == 303  # nobody signed in
        assert browser.get(link, follow_redirects=False).status_code == 303
        assert browser.get("/").status_code == 200
        assert browser.get(link).status_code == 401  # once only


def test_another_address_is_warned_about(served) -> None:
    result = runner.invoke(app, ["console", "--host", "0.0.0.0"])
    assert result.exit_code == 0
    assert "not a loopback address" in result.stderr


@pytest.mark.integration
def test_the_demo_console_shows_the_demos_day(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pages: dict[str, Any] = {}

    def look(gate: Any, *, host: str, port: int, **_: Any) -> None:
        """A browser's visit while the demo's sandbox still runs (instead of serving)."""
        with TestClient(gate, headers={"accept": "text/html"}) as browser:
            browser.get(f"/login?token={gate.new_login_token()}")
            pages["overview"] = browser.get("/overview.json").json()
            pages["poison"] = browser.get("/poison").text

    monkeypatch.setattr(uvicorn, "run", look)
    result = runner.invoke(
        app, ["console", "--demo", "--members", "40", "--workdir", str(tmp_path / "demo")]
    )
    assert result.exit_code == 0, result.output
    assert sign_in_link(result.stdout)
    overview = pages["overview"]
    assert overview["today"]["outcomes"].get("applied", 0) > 0  # the demo's sync, recorded
    assert overview["poison"]["total"] > 0  # its unknown references, absorbed into the book
    assert 'class="poison-row"' in pages["poison"]
    files = {run["detail"]["file"] for run in overview["files"]}
    assert any("BGMAX" in name for name in files)  # the demo's Bankgirot files, with receipts
    assert all(run["detail"].get("receipt") for run in overview["files"])
