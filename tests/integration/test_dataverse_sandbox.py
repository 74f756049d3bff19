"""The client against the local sandbox over HTTPS (127.0.0.1), msal included.

Rate limits run on the sandbox's time scale (a 5-minute window passes in half a second), so the
429 storms take well under a second of real waiting.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from dynamics_bridge_sandbox.dataverse import Limits
from dynamics_bridge_sandbox.server import SandboxInfo, run_sandbox

from dynamics_bridge.dataverse import bind
from dynamics_bridge.dataverse.auth import msal_token_provider, session_for
from dynamics_bridge.dataverse.batch import BatchRequest, ChangeSet
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.metadata import alternate_key_body
from dynamics_bridge.dataverse.pacing import AppUserGate, AppUserPool
from dynamics_bridge.dataverse.provision import apply_plan, check_metadata, plan
from dynamics_bridge.errors import (
    AuthError,
    ConcurrencyConflictError,
    DuplicateKeyError,
    NotFoundError,
    PermanentError,
)
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.settings import AppUser, DataverseSettings

pytestmark = pytest.mark.integration
MAPPING = load_mapping()


def settings_for(sandbox: SandboxInfo, **extra: object) -> DataverseSettings:
    return DataverseSettings(
        url=sandbox.url,
        tenant_id="t",
        authority=sandbox.authority,
        client_id=sandbox.client_id,
        client_secret=sandbox.client_secret,  # type: ignore[arg-type]
        ca_bundle=sandbox.ca_bundle,
        **extra,  # type: ignore[arg-type]
    )


def client_for(
    sandbox: SandboxInfo, gate: AppUserGate | None = None, **settings: object
) -> DataverseClient:
    """One app user (with ``gate``, or a fresh one) and ``settings`` as DataverseSettings."""
    s = settings_for(sandbox).model_copy(update=settings)  # tests may go past the bounds
    return DataverseClient(s, session_for(s), AppUserPool.single(msal_token_provider(s), gate))


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


def test_a_revoked_token_is_replaced_once_and_the_request_goes_through(client, sandbox) -> None:
    client.rows.upsert("contacts", {"mbr_memberno": "1"}, {"lastname": "Ek"})
    sandbox.dataverse.tokens.clear()  # every issued token is now refused with 401
    assert client.rows.get("contacts", {"mbr_memberno": "1"}, ["lastname"])["lastname"] == "Ek"
    assert len(sandbox.dataverse.tokens) == 1  # msal asked the token endpoint again


def test_provision_creates_what_the_mapping_needs_and_check_then_passes(sandbox) -> None:
    c = client_for(sandbox)
    assert check_metadata(c, MAPPING)  # nothing provisioned yet
    steps = plan(c, MAPPING)
    assert {s.kind for s in steps} == {"table", "column", "relationship", "key"}
    assert [s.kind for s in steps] == sorted(
        (s.kind for s in steps), key=["table", "column", "relationship", "key"].index
    )
    (lookup,) = [s for s in steps if s.kind == "relationship"]
    assert lookup.body["@odata.type"] == "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata"
    assert lookup.body["Lookup"]["SchemaName"] == "mbr_Member"
    assert not any(s.body.get("@odata.type", "").endswith("LookupAttributeMetadata") for s in steps)
    apply_plan(c, steps, key_poll=0.01)
    assert check_metadata(c, MAPPING) == []
    assert plan(c, MAPPING) == []
    payment = sandbox.dataverse.entity("mbr_payment")
    member = next(a for a in payment["Attributes"] if a["LogicalName"] == "mbr_member")
    assert (member["AttributeType"], member["Targets"]) == ("Lookup", ["contact"])
    (relationship,) = payment["ManyToOneRelationships"]
    assert relationship["ReferencingEntityNavigationPropertyName"] == "mbr_Member"


def test_the_sandbox_refuses_a_lookup_made_through_attributes_as_dataverse_does(client) -> None:
    body = {
        "@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata",
        "SchemaName": "mbr_Other",
        "Targets": ["contact"],
    }
    with pytest.raises(PermanentError, match="RelationshipDefinitions"):
        client.schema.create_column("mbr_payment", body)


def test_a_lookup_made_by_provisioning_binds_through_its_navigation_property(client) -> None:
    client.rows.create_only("contacts", {"mbr_memberno": "7"}, {})
    client.rows.create_only(
        "mbr_payments",
        {"mbr_eventid": "e7"},
        {"mbr_Member@odata.bind": "/contacts(mbr_memberno='7')"},
    )
    member = client.rows.get("contacts", {"mbr_memberno": "7"}, ["contactid"])
    payment = client.rows.get("mbr_payments", {"mbr_eventid": "e7"}, ["_mbr_member_value"])
    assert payment["_mbr_member_value"] == member["contactid"]


def test_a_choice_value_missing_in_dataverse_is_reported_then_added_by_provision(
    client, sandbox
) -> None:
    definition = sandbox.dataverse.entity("contact")
    status = next(a for a in definition["Attributes"] if a["LogicalName"] == "mbr_paymentstatus")
    dropped = status["OptionSet"]["Options"].pop()
    sandbox.dataverse.define_entity(definition)
    client.schema.entity("contact", refresh=True)
    options = MAPPING.choices["payment_status"].options.items()
    word = next(w for w, o in options if o.value == dropped["Value"])
    assert check_metadata(client, MAPPING) == [
        f"contact.mbr_paymentstatus: choice value {dropped['Value']} ({word}) not found: "
        "run `dynamics-bridge provision` "
        f"(the mapping: choices.payment_status.options.{word})"
    ]
    steps = plan(client, MAPPING)
    assert [(s.kind, s.body["Value"]) for s in steps] == [("option", dropped["Value"])]
    assert "add choice value" in steps[0].describe()
    apply_plan(client, steps)
    assert check_metadata(client, MAPPING) == []
    assert plan(client, MAPPING) == []


def test_metadata_writes_carry_the_configured_solution(sandbox) -> None:
    c = DataverseClient.from_settings(settings_for(sandbox, solution="MemberBridge"))
    apply_plan(c, plan(c, MAPPING), key_poll=0.01)
    added = sandbox.dataverse.solution_components["MemberBridge"]
    assert "mbr_payment" in added
    assert "mbr_eventid_key" in added


def test_provision_waits_for_a_new_key_to_be_active(sandbox, monkeypatch) -> None:
    c = client_for(sandbox)
    waited: list[tuple[str, list[str]]] = []
    real = c.schema.wait_for_key

    def spy(table, columns, **kwargs):
        waited.append((table, list(columns)))
        return real(table, columns, **kwargs)

    monkeypatch.setattr(c.schema, "wait_for_key", spy)
    apply_plan(c, plan(c, MAPPING), key_poll=0.01)
    assert ("mbr_payment", ["mbr_eventid"]) in waited
    assert ("contact", ["mbr_memberno"]) in waited


def test_metadata_reads_are_typed_after_provisioning(client) -> None:
    payment = client.schema.table("mbr_payment")
    assert payment is not None
    assert payment.entity_set == "mbr_payments"
    assert client.schema.wait_for_key("mbr_payment", ["mbr_eventid"], poll=0.01).usable
    # As in Dataverse, $expand=Attributes carries no option sets: options come by the cast.
    raw = client.schema.entity("contact")
    assert raw is not None
    assert not any("OptionSet" in a for a in raw["Attributes"])
    before = client.requests_sent
    options = client.schema.choice_options("contact", "mbr_paymentstatus")
    assert client.requests_sent == before + 1  # the PicklistAttributeMetadata cast read
    assert {o.value for o in options} == {
        o.value for o in MAPPING.choices["payment_status"].options.values()
    }
    assert client.schema.choice_options("contact", "statecode") == ()
    assert client.schema.table("nosuchtable") is None
    tables = {t.logical_name: t for t in client.schema.tables()}
    assert tables["mbr_payment"].entity_set == "mbr_payments"
    assert tables["contact"].change_tracking


def test_a_change_set_refers_to_the_row_an_earlier_part_created(client) -> None:
    result = client.batch.execute(
        [
            ChangeSet(
                [
                    BatchRequest("POST", "contacts", {}, {"lastname": "Ny"}, content_id="1"),
                    BatchRequest("PATCH", "$1", {"If-Match": "*"}, {"firstname": "Eva"}),
                    BatchRequest(
                        "POST",
                        "mbr_payments",
                        {},
                        {"mbr_eventid": "ref-1", "mbr_Member@odata.bind": "$1"},
                        content_id="3",
                    ),
                ]
            )
        ]
    )
    assert [op.state for op in result.operations] == ["ok", "ok", "ok"]
    created = result.parts[0].headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    member = client.rows.get("contacts", created, ["firstname", "lastname"])
    assert (member["firstname"], member["lastname"]) == ("Eva", "Ny")
    payment = client.rows.get("mbr_payments", {"mbr_eventid": "ref-1"}, ["_mbr_member_value"])
    assert payment["_mbr_member_value"] == created


def test_a_content_id_reference_not_declared_before_fails_its_change_set(client) -> None:
    result = client.batch.execute(
        [
            ChangeSet(
                [
                    BatchRequest("POST", "contacts", {}, {"lastname": "Först"}, content_id="1"),
                    BatchRequest("PATCH", "$2", {"If-Match": "*"}, {"firstname": "x"}),
                    BatchRequest("POST", "contacts", {}, {"lastname": "Sist"}, content_id="2"),
                ]
            ),
            BatchRequest("PATCH", "$1", {"If-Match": "*"}, {"firstname": "y"}),  # not in a set
        ]
    )
    assert [op.state for op in result.operations] == [
        "rolled_back",
        "failed",
        "rolled_back",
        "failed",
    ]
    assert "does not exist in the batch context" in str(result.operations[1].error)
    assert list(client.rows.query("contacts", select=["lastname"])) == []


def test_upserts_and_a_lookup_bound_by_the_members_alternate_key(client) -> None:
    client.rows.upsert("contacts", {"mbr_memberno": "O'Brien 7"}, {"lastname": "O'Brien"})
    client.rows.upsert("contacts", {"mbr_memberno": "O'Brien 7"}, {"firstname": "Åsa"})
    member = client.rows.get("contacts", {"mbr_memberno": "O'Brien 7"})
    assert (member["firstname"], member["lastname"]) == ("Åsa", "O'Brien")
    client.rows.create_only(
        "mbr_payments",
        {"mbr_eventid": "swish-1"},
        {"mbr_amount": 250.0, **bind("mbr_member", "contacts", {"mbr_memberno": "O'Brien 7"})},
    )
    payment = client.rows.get("mbr_payments", {"mbr_eventid": "swish-1"})
    assert payment["_mbr_member_value"] == member["contactid"]


def test_create_only_twice_is_a_duplicate_and_a_stale_etag_a_conflict(client) -> None:
    client.rows.create_only("contacts", {"mbr_memberno": "O'Brien"}, {"lastname": "O'Brien"})
    with pytest.raises(DuplicateKeyError):
        client.rows.create_only("contacts", {"mbr_memberno": "O'Brien"}, {"lastname": "x"})
    (row,) = client.rows.by_values("contacts", "mbr_memberno", ["O'Brien"], ["lastname"]).values()
    client.rows.update(
        "contacts", {"mbr_memberno": "O'Brien"}, {"mbr_arrears": 10.0}, etag=row["@odata.etag"]
    )
    with pytest.raises(ConcurrencyConflictError):
        client.rows.update(
            "contacts", {"mbr_memberno": "O'Brien"}, {"mbr_arrears": 20.0}, etag=row["@odata.etag"]
        )
    with pytest.raises(NotFoundError):
        client.rows.update("contacts", {"mbr_memberno": "nobody"}, {"mbr_arrears": 0.0})


def test_a_failing_change_set_rolls_back_and_the_next_one_still_runs(client) -> None:
    client.rows.create_only("contacts", {"mbr_memberno": "1"}, {})
    member = bind("mbr_member", "contacts", {"mbr_memberno": "1"})
    result = client.batch.execute(
        [
            ChangeSet(
                [
                    BatchRequest(
                        "PATCH",
                        "mbr_payments(mbr_eventid='e1')",
                        {"If-None-Match": "*"},
                        {"mbr_amount": 1.0, **member},
                    ),
                    BatchRequest(
                        "PATCH", "contacts(mbr_memberno='404')", {"If-Match": "*"}, {"x": 0}
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
                    ),
                    BatchRequest(
                        "PATCH", "contacts(mbr_memberno='1')", {"If-Match": "*"}, {"x": 2}
                    ),
                ]
            ),
        ]
    )
    assert [op.state for op in result.operations] == ["rolled_back", "failed", "ok", "ok"]
    assert isinstance(result.operations[1].error, NotFoundError)
    stored = client.rows.by_values("mbr_payments", "mbr_eventid", ["e1", "e2"], ["mbr_amount"])
    assert sorted(stored) == ["e2"]


def test_without_continue_on_error_the_batch_stops_at_the_first_failure(client) -> None:
    result = client.batch.execute(
        [
            BatchRequest("PATCH", "contacts(mbr_memberno='404')", {"If-Match": "*"}, {"x": 0}),
            BatchRequest("PATCH", "contacts(mbr_memberno='2')", {}, {"x": 1}),
        ],
        continue_on_error=False,
    )
    assert [op.state for op in result.operations] == ["failed", "not_executed"]
    assert client.rows.get("contacts", {"mbr_memberno": "2"}) is None


def test_a_replayed_bulk_create_reports_each_row_as_a_duplicate(client) -> None:
    rows = [({"mbr_eventid": f"e{n}"}, {"mbr_amount": float(n)}) for n in range(5)]
    assert all(r.ok for r in client.rows.create_many("mbr_payments", rows))
    again = client.rows.create_many("mbr_payments", rows)
    assert [r.duplicate for r in again] == [True] * 5


def test_paging_follows_next_links(client) -> None:
    for n in range(5):
        client.rows.create_only("contacts", {"mbr_memberno": str(n)}, {})
    before = client.requests_sent
    assert len(list(client.rows.query("contacts", select=["mbr_memberno"]))) == 5
    assert client.requests_sent - before == 3  # pages of 2


def test_change_tracking_reports_changes_and_deletions(client) -> None:
    client.rows.create_only("contacts", {"mbr_memberno": "1"}, {})
    first = client.changes.since("contacts", ["mbr_memberno"])
    assert len(first.changed) == 1
    client.rows.update("contacts", {"mbr_memberno": "1"}, {"mbr_arrears": 5.0})
    client.rows.create_only("contacts", {"mbr_memberno": "2"}, {})
    client.rows.delete("contacts", {"mbr_memberno": "2"})
    second = client.changes.since("contacts", ["mbr_memberno"], first.delta_link)
    assert [r["mbr_memberno"] for r in second.changed] == ["1"]
    assert len(second.deleted) == 1
    assert client.changes.since("contacts", ["mbr_memberno"], second.delta_link).changed == []


def declare_member_key(client: DataverseClient) -> None:
    """Just the alternate key create-only needs: one request, not a whole provisioning."""
    client.schema.create_alternate_key(
        "contact",
        alternate_key_body(
            "mbr_memberno_key", ["mbr_memberno"], languages=client.schema.base_language()
        ),
    )


def write_concurrently(client: DataverseClient, workers: int, rows_each: int) -> list[Exception]:
    errors: list[Exception] = []

    def worker(start: int) -> None:
        try:
            for n in range(start, start + rows_each):
                client.rows.create_only("contacts", {"mbr_memberno": str(n)}, {})
        except Exception as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i * 1000,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def storm_limits() -> Limits:
    """A 0.5 s window of 5 requests; half the requests held back 0.1 s, so workers fall out of
    step and one is still busy when another collects a 429."""
    return Limits(
        requests_per_window=5, window_seconds=300, time_scale=600, slow_rate=0.5, slow_seconds=0.1
    )


def test_a_429_storm_is_honoured_by_all_workers_and_nothing_is_lost() -> None:
    limits = storm_limits()
    with run_sandbox(limits=limits) as box:
        c = client_for(box, gate=AppUserGate(max_concurrency=4))
        declare_member_key(c)
        assert write_concurrently(c, workers=4, rows_each=3) == []
        assert limits.throttled["0x80072322"] > 0
        assert c.throttled > 0
        # After a 429, no worker of that app user sent anything until Retry-After had passed
        # (with a per-thread pause the other workers knock and collect their own 429s: below).
        assert any(wait > 0.2 for _, wait in limits.refusals[box.client_id])
        assert limits.requests_while_paused(box.client_id) == []
        assert len(list(c.rows.query("contacts", select=["mbr_memberno"]))) == 12


def test_the_pause_check_catches_workers_that_pause_only_themselves() -> None:
    limits = storm_limits()
    with run_sandbox(limits=limits) as box:
        declare_member_key(client_for(box))
        clients = [client_for(box, gate=AppUserGate(max_concurrency=4)) for _ in range(4)]
        errors: list[Exception] = []

        def worker(index: int) -> None:
            try:
                for n in range(3):
                    clients[index].rows.create_only(
                        "contacts", {"mbr_memberno": f"{index}-{n}"}, {}
                    )
            except Exception as exc:  # noqa: BLE001 - the test reports any failure
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert limits.requests_while_paused(box.client_id) != []


def test_work_is_spread_over_app_users_each_with_its_own_budget() -> None:
    limits = Limits(requests_per_window=4, window_seconds=300, time_scale=600)
    with run_sandbox(limits=limits) as box:
        second_id, second_secret = str(uuid.uuid4()), uuid.uuid4().hex
        box.dataverse.add_app_user(second_id, second_secret)
        settings = settings_for(
            box,
            app_users=[{"client_id": second_id, "client_secret": second_secret}],
            max_concurrency=2,
        )
        c = DataverseClient.from_settings(settings)
        declare_member_key(c)
        assert write_concurrently(c, workers=4, rows_each=4) == []
        assert all(lane.requests > 0 for lane in c.transport.pool.lanes)
        assert len(list(c.rows.query("contacts", select=["mbr_memberno"]))) == 16


def test_injected_faults_are_retried() -> None:
    limits = Limits(fault_rate=0.4)
    with run_sandbox(limits=limits) as box:
        c = client_for(box, gate=AppUserGate(sleep=lambda s: None), max_attempts=30)
        for n in range(10):
            c.rows.upsert(
                "contacts",
                {"contactid": f"0000000{n}-0000-0000-0000-000000000000"},
                {"lastname": str(n)},
            )
        assert len(list(c.rows.query("contacts"))) == 10
        assert c.requests_sent > 11  # some answers were 503s, and were tried again


def test_the_execution_time_budget_is_a_limit_of_its_own() -> None:
    # Each request takes 0.02 real s = 12 s of Dataverse time; 30 s per window allows about 3.
    limits = Limits(
        requests_per_window=1000,
        execution_ms_per_window=30_000,
        window_seconds=300,
        time_scale=600,
        latency_seconds=0.02,
    )
    with run_sandbox(limits=limits) as box:
        c = client_for(box)
        declare_member_key(c)
        assert write_concurrently(c, workers=1, rows_each=10) == []
        assert limits.throttled["0x80072321"] > 0
        assert limits.throttled["0x80072322"] == 0
        assert len(list(c.rows.query("contacts", select=["mbr_memberno"]))) == 10


def test_too_many_requests_in_flight_are_refused_at_once_and_retried() -> None:
    limits = Limits(max_concurrent=2, latency_seconds=0.05)
    with run_sandbox(limits=limits) as box:
        c = client_for(box, gate=AppUserGate(max_concurrency=6))
        declare_member_key(c)
        assert write_concurrently(c, workers=6, rows_each=2) == []
        assert limits.throttled["0x80072326"] > 0
        assert len(list(c.rows.query("contacts", select=["mbr_memberno"]))) == 12


def test_dropped_connections_are_retried_even_when_the_work_was_done() -> None:
    limits = Limits(reset_rate=0.5)
    with run_sandbox(limits=limits) as box:
        c = client_for(box, gate=AppUserGate(sleep=lambda s: None), max_attempts=30)
        for n in range(20):
            c.rows.upsert(
                "contacts",
                {"contactid": f"{n:08}-0000-0000-0000-000000000000"},
                {"lastname": str(n)},
            )
        assert limits.chaos_seen["reset_before"] > 0
        assert limits.chaos_seen["reset_after"] > 0
        assert sorted(r["lastname"] for r in c.rows.query("contacts", select=["lastname"])) == [
            str(n) for n in sorted(range(20), key=str)
        ]


def test_an_alternate_key_value_is_unique_across_rows() -> None:
    with run_sandbox() as box:
        c = client_for(box)
        declare_member_key(c)
        c.rows.create_only("contacts", {"mbr_memberno": "A"}, {})
        c.rows.create_only("contacts", {"mbr_memberno": "B"}, {})
        b_id = next(r["contactid"] for r in c.rows.query("contacts") if r["mbr_memberno"] == "B")
        with pytest.raises(DuplicateKeyError):
            c.rows.update("contacts", {"contactid": b_id}, {"mbr_memberno": "A"})
        # Addressed by its alternate key, an update leaves the key columns alone (§2).
        c.rows.update("contacts", {"mbr_memberno": "B"}, {"mbr_memberno": "Z", "lastname": "b"})
        assert sorted(r["mbr_memberno"] for r in c.rows.query("contacts")) == ["A", "B"]


def test_the_provision_command_passes_the_configured_solution(sandbox, monkeypatch) -> None:
    from typer.testing import CliRunner

    from dynamics_bridge.cli import app

    for name, value in sandbox.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BRIDGE_DATAVERSE__SOLUTION", "MemberBridge")
    result = CliRunner().invoke(app, ["provision", "--apply"])
    assert result.exit_code == 0, result.output
    assert "create lookup mbr_member on mbr_payment (relationship to contact)" in result.stdout
    assert "in solution MemberBridge" in result.stdout
    added = sandbox.dataverse.solution_components["MemberBridge"]
    assert "mbr_payment" in added
    assert any("mbr_member" in name for name in added)  # the relationship of the lookup
