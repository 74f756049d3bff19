"""The client against the local sandbox over HTTPS, msal included."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from dynamics_bridge.dataverse.auth import msal_token_provider, session_for
from dynamics_bridge.dataverse.batch import BatchRequest, ChangeSet
from dynamics_bridge.dataverse.client import AppUserGate, DataverseClient
from dynamics_bridge.dataverse.provision import apply_plan, check_metadata, plan
from dynamics_bridge.errors import AuthError, ConcurrencyConflictError, DuplicateKeyError
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.sandbox.dataverse import Limits
from dynamics_bridge.sandbox.server import SandboxInfo, run_sandbox
from dynamics_bridge.settings import AppUser, DataverseSettings

pytestmark = pytest.mark.integration
MAPPING = load_mapping()


def settings_for(sandbox: SandboxInfo) -> DataverseSettings:
    return DataverseSettings(
        url=sandbox.url,
        tenant_id="t",
        authority=sandbox.authority,
        client_id=sandbox.client_id,
        client_secret=sandbox.client_secret,  # type: ignore[arg-type]
        ca_bundle=sandbox.ca_bundle,
    )


def client_for(sandbox: SandboxInfo, **kwargs) -> DataverseClient:
    s = settings_for(sandbox)
    return DataverseClient(s.url or "", session_for(s), msal_token_provider(s), **kwargs)


@pytest.fixture
def sandbox() -> Iterator[SandboxInfo]:
    with run_sandbox() as box:
        yield box


@pytest.fixture
def client(sandbox) -> DataverseClient:
    c = client_for(sandbox, page_size=2)
    apply_plan(c, plan(c, MAPPING))
    return c


def test_msal_gets_a_token_and_a_wrong_secret_is_refused(sandbox) -> None:
    assert msal_token_provider(settings_for(sandbox))()
    stranger = AppUser(client_id="someone-else", client_secret="wrong")  # type: ignore[arg-type]
    with pytest.raises(AuthError, match="invalid_client"):
        msal_token_provider(settings_for(sandbox), stranger)()


def test_provision_creates_what_the_mapping_needs_and_check_then_passes(sandbox) -> None:
    c = client_for(sandbox)
    assert check_metadata(c, MAPPING)  # nothing provisioned yet
    steps = plan(c, MAPPING)
    assert {s.kind for s in steps} == {"table", "column", "key"}
    apply_plan(c, steps)
    assert check_metadata(c, MAPPING) == []
    assert plan(c, MAPPING) == []


def test_create_only_twice_is_a_duplicate_and_a_stale_etag_a_conflict(client) -> None:
    client.create_only("contacts", {"mbr_memberno": "O'Brien"}, {"lastname": "O'Brien"})
    with pytest.raises(DuplicateKeyError):
        client.create_only("contacts", {"mbr_memberno": "O'Brien"}, {"lastname": "x"})
    (row,) = client.rows_by_values("contacts", "mbr_memberno", ["O'Brien"], ["lastname"]).values()
    client.update(
        "contacts", {"mbr_memberno": "O'Brien"}, {"mbr_arrears": 10.0}, etag=row["@odata.etag"]
    )
    with pytest.raises(ConcurrencyConflictError):
        client.update(
            "contacts", {"mbr_memberno": "O'Brien"}, {"mbr_arrears": 20.0}, etag=row["@odata.etag"]
        )


def test_a_failing_change_set_rolls_back_and_the_next_one_still_runs(client) -> None:
    client.create_only("contacts", {"mbr_memberno": "1"}, {})
    parts = client.batch(
        [
            ChangeSet(
                [
                    BatchRequest(
                        "PATCH",
                        "mbr_payments(mbr_eventid='e1')",
                        {"If-None-Match": "*"},
                        {"mbr_amount": 1.0, "mbr_Member@odata.bind": "/contacts(mbr_memberno='1')"},
                        "1",
                    ),
                    BatchRequest(
                        "PATCH",
                        "contacts(mbr_memberno='404')",
                        {"If-Match": "*"},
                        {"mbr_arrears": 0},
                        "2",
                    ),
                ]
            ),
            ChangeSet(
                [
                    BatchRequest(
                        "PATCH",
                        "mbr_payments(mbr_eventid='e2')",
                        {"If-None-Match": "*"},
                        {"mbr_amount": 2.0},
                        "3",
                    )
                ]
            ),
        ]
    )
    assert [(p.status, p.content_id) for p in parts] == [(404, "2"), (204, "3")]
    stored = client.rows_by_values("mbr_payments", "mbr_eventid", ["e1", "e2"], ["mbr_amount"])
    assert sorted(stored) == ["e2"]


def test_paging_follows_next_links(client) -> None:
    for n in range(5):
        client.create_only("contacts", {"mbr_memberno": str(n)}, {})
    assert len(list(client.query("contacts", select=["mbr_memberno"]))) == 5
    assert client.requests_sent >= 3


def test_change_tracking_reports_changes_and_deletions(client) -> None:
    client.create_only("contacts", {"mbr_memberno": "1"}, {})
    changed, deleted, link = client.changes("contacts", ["mbr_memberno"])
    assert len(changed) == 1
    client.update("contacts", {"mbr_memberno": "1"}, {"mbr_arrears": 5.0})
    client.create_only("contacts", {"mbr_memberno": "2"}, {})
    client.request("DELETE", "contacts(mbr_memberno='2')")
    changed, deleted, _ = client.changes("contacts", ["mbr_memberno"], link)
    assert [r["mbr_memberno"] for r in changed] == ["1"]
    assert len(deleted) == 1


def test_a_429_storm_is_honoured_by_all_workers_and_nothing_is_lost() -> None:
    limits = Limits(requests_per_window=5, window_seconds=300, time_scale=600)  # 0.5 s window
    with run_sandbox(limits=limits) as box:
        c = client_for(box, gate=AppUserGate(max_concurrency=4), max_attempts=50)
        apply_plan(c, plan(c, MAPPING))
        errors: list[Exception] = []

        def worker(start: int) -> None:
            try:
                for n in range(start, start + 5):
                    c.create_only("contacts", {"mbr_memberno": str(n)}, {})
            except Exception as exc:  # noqa: BLE001 - the test reports any failure
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i * 100,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert limits.throttled > 0
        assert c.gate.throttled > 0
        assert len(list(c.query("contacts", select=["mbr_memberno"]))) == 20


def test_injected_faults_are_retried() -> None:
    limits = Limits(fault_rate=0.4)
    with run_sandbox(limits=limits) as box:
        c = client_for(box, gate=AppUserGate(sleep=lambda s: None), max_attempts=30)
        for n in range(10):
            c.upsert(
                "contacts",
                {"contactid": f"0000000{n}-0000-0000-0000-000000000000"},
                {"lastname": str(n)},
            )
        assert len(list(c.query("contacts"))) == 10
