"""`sync` and the other Dataverse commands: one client factory, and a dry run that only peeks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dynamics_bridge import queue as queue_module
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.cli import _app, app
from dynamics_bridge.cli import sync as sync_cli
from dynamics_bridge.dataverse import client as client_module
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.errors import BridgeError
from dynamics_bridge.mapping import DEFAULT_MAPPING
from dynamics_bridge.queue import open_queue
from dynamics_bridge.settings import load_settings
from tests.fakes import FakeMemberStore
from tests.test_pipeline import ev

runner = CliRunner()


@pytest.fixture
def dataverse_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "BRIDGE_DATAVERSE__URL": "https://org.crm4.dynamics.com",
        "BRIDGE_DATAVERSE__TENANT_ID": "tenant",
        "BRIDGE_DATAVERSE__CLIENT_ID": "main",
        "BRIDGE_DATAVERSE__CLIENT_SECRET": "s1",
        "BRIDGE_DATAVERSE__APP_USERS": json.dumps(
            [
                {"client_id": "second", "client_secret": "s2"},
                {"client_id": "third", "client_secret": "s3"},
            ]
        ),
        "BRIDGE_DATAVERSE__MAX_THROTTLE_SECONDS": "120",
        "BRIDGE_DATAVERSE__SOLUTION": "BridgeSolution",
        "BRIDGE_DATAVERSE__SUPPRESS_FLOWS": "true",
    }.items():
        monkeypatch.setenv(name, value)
    # No msal application (it would discover its authority over the network).
    monkeypatch.setattr(
        client_module, "msal_token_provider", lambda settings, user=None: lambda: "token"
    )


def test_the_cli_client_has_every_configured_app_user_and_setting(dataverse_env) -> None:
    client = sync_cli.dataverse_client(load_settings())
    assert [lane.name for lane in client.transport.pool.lanes] == ["main", "second", "third"]
    assert client.transport.retry.throttle_budget == 120
    assert client.settings.solution == "BridgeSolution"
    assert client.transport.extra_headers["MSCRM.SuppressCallbackRegistrationExpanderJob"] == "true"


@pytest.mark.parametrize(
    "command",
    [["sync", "--once"], ["sync", "--dry-run"], ["check"], ["segments", "push", "--dry-run"]],
)
def test_every_dataverse_command_uses_the_one_factory(
    dataverse_env, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("BRIDGE_APSIS__CLIENT_ID", "apsis")  # so the activation commands get far
    monkeypatch.setenv("BRIDGE_APSIS__CLIENT_SECRET", "secret")
    monkeypatch.setenv("BRIDGE_APSIS__BASE_URL", "https://127.0.0.1:9")  # `check` asks it: refused
    seen = []

    def factory(settings, *args, **kwargs):
        seen.append([u.client_id for u in settings.users()])
        raise BridgeError("stopped at the factory")

    monkeypatch.setattr(DataverseClient, "from_settings", staticmethod(factory))
    result = runner.invoke(app, command)
    assert result.exit_code == 1, result.output
    assert "stopped at the factory" in result.output
    assert seen == [["main", "second", "third"]]


def test_sync_dry_run_peeks_every_message_and_shows_both_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(queue_module, "_memory_queues", {})  # a fresh queue for this test
    store = FakeMemberStore({"100001": {}, "100002": {}})
    monkeypatch.setattr(sync_cli, "cli_services", lambda settings: Services(settings, store=store))
    monkeypatch.setattr(_app.console, "width", 250)
    queue = open_queue(load_settings().queue)
    for i in range(40):
        queue.send([ev(i, member="100001" if i % 2 else "100002", minutes=i)])
    queue.send([ev(99, member="999999")])

    result = runner.invoke(app, ["sync", "--dry-run"])

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert (
        "41 message(s) (dry run: nothing taken, nothing written): would apply 40, "
        "would poison 1 (unmatched 1)"
    ) in out
    assert f"mbr_eventid={ev(0).event_id}" in out  # the payment-row create, keyed by event id
    assert f"mbr_eventid={ev(39).event_id}" in out
    assert "create" in out
    assert "mbr_payment " in out
    assert "update" in out
    assert "mbr_memberno=100002" in out
    assert "mbr_paymentstatus" in out
    assert "None → 100000000" in out
    assert "no member with mbr_memberno = '999999'" in out
    assert store.payments == {}
    assert len(queue) == 41
    assert {m.dequeue_count for m in queue.receive(max_messages=32)} == {1}


@pytest.fixture
def local_sync(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """sync over a fresh in-memory queue and the fake member store; returns the queue."""
    monkeypatch.setattr(queue_module, "_memory_queues", {})
    store = FakeMemberStore({"100001": {}, "100002": {}})
    monkeypatch.setattr(
        sync_cli,
        "cli_services",
        lambda settings: Services(settings, store=store, activation=None),
    )
    return open_queue(load_settings().queue)


def test_sync_shows_messages_settled_growing_to_the_queues_depth(local_sync, bars) -> None:
    for i in range(40):
        local_sync.send([ev(i, member="100001" if i % 2 else "100002", minutes=i)])
    result = runner.invoke(app, ["sync", "--once"])
    assert result.exit_code == 0, result.output
    (calls,) = bars.calls.values()
    done = [d for d, _ in calls]
    assert done == sorted(done)
    assert done[-1] == 40
    assert {total for _, total in calls} == {40}
    (notes,) = bars.notes.values()
    assert notes[-1] == "40 events"


def test_sync_exits_1_when_every_event_was_poisoned(local_sync) -> None:
    local_sync.send([ev(1, member="999999"), ev(2, member="999998")])
    result = runner.invoke(app, ["sync", "--once"])
    assert result.exit_code == 1, result.output
    assert "1 message(s): unmatched 2; poisoned 2" in result.stdout
    assert "every event was poisoned" in result.stderr


def test_sync_exits_0_when_some_events_were_written(local_sync) -> None:
    local_sync.send([ev(1), ev(2, member="999998")])
    result = runner.invoke(app, ["sync", "--once"])
    assert result.exit_code == 0, result.output
    assert "applied 1, unmatched 1; poisoned 1" in result.stdout


def test_sync_reads_the_configured_mappings_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """BRIDGE_MAPPINGS_DIR: the union's dataverse.yaml (here its own prefix) is what sync
    writes by, through the same wiring as the function app."""
    folder = Path(shutil.copytree(DEFAULT_MAPPING.parent, tmp_path / "union-mappings"))
    path = folder / "dataverse.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("publisher_prefix: mbr", "publisher_prefix: fack"), "utf-8")
    monkeypatch.setenv("BRIDGE_MAPPINGS_DIR", str(folder))
    monkeypatch.setattr(queue_module, "_memory_queues", {})
    store = FakeMemberStore({"100001": {}}, key_column="fack_memberno")
    monkeypatch.setattr(sync_cli, "cli_services", lambda settings: Services(settings, store=store))
    monkeypatch.setattr(_app.console, "width", 250)
    open_queue(load_settings().queue).send([ev(1, member="100001")])
    result = runner.invoke(app, ["sync", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would apply 1" in result.stdout
    assert "fack_memberno=100001" in result.stdout
    assert "fack_paymentstatus" in result.stdout
    assert "mbr_" not in result.stdout


def test_a_dry_run_of_poison_only_exits_0_and_says_what_would_happen(local_sync) -> None:
    local_sync.send([ev(1, member="999999")])
    result = runner.invoke(app, ["sync", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would apply 0, would poison 1 (unmatched 1)" in result.stdout


def test_the_exit_codes_are_in_the_help() -> None:
    text = " ".join(runner.invoke(app, ["sync", "--help"]).stdout.split())
    assert "Exit codes: 0 done" in text
    assert "1 every event taken was poisoned" in text
