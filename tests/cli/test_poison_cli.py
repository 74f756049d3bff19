"""`poison list|show`: personnummer masked unless --show-pnr."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dynamics_bridge import queue as queue_module
from dynamics_bridge.cli import app
from dynamics_bridge.model import MemberRef, MemberRefKind
from dynamics_bridge.queue import InMemoryQueue, open_queue
from dynamics_bridge.settings import load_settings
from tests.test_pipeline import ev

runner = CliRunner()
PNR = "198112189876"  # fictitious, Luhn-valid


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(queue_module, "_memory_queues", {})  # a fresh queue for this test
    queue = open_queue(load_settings().queue)
    assert isinstance(queue, InMemoryQueue)
    queue.send([ev(1, member_ref=MemberRef(MemberRefKind.PERSONNUMMER, PNR))])
    (message,) = queue.receive()
    queue.to_poison(message, f"unmatched: no member with governmentid = '{PNR}'")
    (entry,) = queue.poison_peek()
    return entry.message_id


def test_poison_show_masks_personnummer(poisoned: str) -> None:
    result = runner.invoke(app, ["poison", "show", poisoned])
    assert result.exit_code == 0, result.output
    assert PNR not in result.stdout
    shown = json.loads(result.stdout)
    assert shown["events"][0]["member_ref"]["value"] == "19811218-****"
    assert shown["reason"] == "unmatched: no member with governmentid = '19811218-****'"


def test_poison_show_with_show_pnr_prints_it_in_full(poisoned: str) -> None:
    result = runner.invoke(app, ["poison", "show", poisoned, "--show-pnr"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["events"][0]["member_ref"]["value"] == PNR


def test_poison_list_masks_the_reasons(poisoned: str) -> None:
    result = runner.invoke(app, ["poison", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert PNR not in result.stdout
    assert "19811218-****" in result.stdout
