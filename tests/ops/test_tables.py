"""What only the Table Storage store does: its connection, its errors, the roll-ups it keeps
and the counts copy it repairs (the behaviour both stores share is in test_store_contract.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError
from azure.data.tables import TableServiceClient

from dynamics_bridge.errors import (
    ConfigError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from dynamics_bridge.ops.model import PoisonFilter, PoisonRecord, RunRecord
from dynamics_bridge.ops.tables import TableOpsStore, _mapped
from dynamics_bridge.settings import OpsSettings, QueueSettings
from tests.support.azurite import AZURITE_ACCOUNT_KEY

NOW = datetime.now(UTC)
AZURITE_LIKE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    f"AccountKey={AZURITE_ACCOUNT_KEY};"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
)


def record(message_id: str, at: datetime) -> PoisonRecord:
    body = json.dumps({"events": [{"event_id": f"e-{message_id}"}]})
    return PoisonRecord(message_id, at, "unmatched: no member", "swish", (), ("7",), "", body)


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(azurite: str, prefix: str) -> TableOpsStore:
    return TableOpsStore.from_connection_string(azurite, prefix=prefix)


@pytest.fixture
def service(azurite: str) -> TableServiceClient:
    return TableServiceClient.from_connection_string(azurite)


# --- connecting ----------------------------------------------------------------------------


def test_the_ops_connection_string_comes_first_then_the_queues(azurite: str) -> None:
    queue = QueueSettings(backend="azure", connection_string=AZURITE_LIKE)

    own = TableOpsStore.from_settings(
        OpsSettings(backend="tables", connection_string=azurite), queue
    )
    shared = TableOpsStore.from_settings(
        OpsSettings(backend="tables"),
        QueueSettings(backend="azure", connection_string=azurite),
    )

    assert own._service.url == shared._service.url
    assert "127.0.0.1" in own._service.url


def test_a_queue_connection_string_without_a_table_endpoint_is_refused_by_name() -> None:
    queue = QueueSettings(backend="azure", connection_string=AZURITE_LIKE)

    with pytest.raises(ConfigError, match="TableEndpoint"):
        TableOpsStore.from_settings(OpsSettings(backend="tables"), queue)


def test_the_managed_identity_uses_the_queues_account_as_a_table_url() -> None:
    queue = QueueSettings(backend="azure", account_url="https://unionstore.queue.core.windows.net")

    store = TableOpsStore.from_settings(OpsSettings(backend="tables"), queue)

    assert store._service.url.startswith("https://unionstore.table.core.windows.net")


def test_no_connection_at_all_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="BRIDGE_OPS__"):
        TableOpsStore.from_settings(OpsSettings(backend="tables"), QueueSettings())


# --- errors ----------------------------------------------------------------------------------


def _http_error(status: int) -> HttpResponseError:
    error = HttpResponseError(message=f"status {status}")
    error.status_code = status
    return error


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (_http_error(503), TransientError),
        (_http_error(500), TransientError),
        (_http_error(429), ThrottledError),
        (_http_error(400), PermanentError),
        (ResourceNotFoundError("gone"), NotFoundError),
        (ServiceRequestError("connection refused"), TransientError),
    ],
)
def test_storage_errors_become_the_projects_errors(raised: Exception, expected: type) -> None:
    with pytest.raises(expected) as caught, _mapped("read something"):
        raise raised
    assert "ops store: read something" in str(caught.value)


def test_storage_that_does_not_answer_is_transient() -> None:
    closed = AZURITE_LIKE + "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    store = TableOpsStore(
        TableServiceClient.from_connection_string(closed, retry_total=0), prefix="nowhere"
    )

    with pytest.raises(TransientError):
        store.poison_count(PoisonFilter())


# --- what is kept ----------------------------------------------------------------------------


def test_a_closed_days_roll_up_is_kept_and_todays_is_not(
    store: TableOpsStore, service: TableServiceClient, prefix: str
) -> None:
    old = NOW - timedelta(days=3)
    store.record_run(RunRecord("a", "queue", "sync", old, 5, {"swish/payment/applied": 1}))
    store.record_run(RunRecord("b", "queue", "sync", NOW, 5, {"swish/payment/applied": 1}))

    store.day_totals([old.date(), NOW.date()])

    kept = {e["RowKey"] for e in service.get_table_client(f"{prefix}rollup").list_entities()}
    assert kept == {old.strftime("%Y%m%d")}


def test_the_counts_copy_is_repaired_by_housekeeping(
    store: TableOpsStore, service: TableServiceClient, prefix: str, azurite: str
) -> None:
    store.put_poison([record(f"m{i}", NOW - timedelta(days=i)) for i in range(3)])
    copies = service.get_table_client(f"{prefix}poisondays")
    for row in list(copies.list_entities()):  # as if a writer had stopped before copying
        copies.delete_entity(row["PartitionKey"], row["RowKey"])
    reader = TableOpsStore.from_connection_string(azurite, prefix=prefix)
    assert reader.poison_count(PoisonFilter()) == 0

    reader.expire(NOW - timedelta(days=365))

    assert reader.poison_count(PoisonFilter()) == 3
    assert reader.poison_count(PoisonFilter(since=NOW - timedelta(days=1, hours=1))) == 2


def test_a_write_whose_answer_is_lost_is_not_counted_twice(
    store: TableOpsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.core.exceptions import ServiceResponseError
    from azure.data.tables import TableClient

    real = TableClient.submit_transaction
    lost: list[str] = []

    def applied_then_lost(self: TableClient, operations, **kwargs):  # type: ignore[no-untyped-def]
        result = real(self, operations, **kwargs)
        if self.table_name.endswith("poison") and not lost:
            lost.append(self.table_name)
            raise ServiceResponseError("Connection aborted: reset by peer")
        return result

    monkeypatch.setattr(TableClient, "submit_transaction", applied_then_lost)
    store.put_poison([record(f"m{i}", NOW - timedelta(minutes=i)) for i in range(3)])

    assert lost  # the answer of the records' transaction did go missing
    assert store.poison_count(PoisonFilter()) == 3
    assert store.poison_count(PoisonFilter(reason="unmatched", source="swish")) == 3
    assert len(list(store.poison_iter(PoisonFilter()))) == 3


def test_a_deleted_records_index_rows_go_after_the_delete_returns_and_before_any_look_up(
    store: TableOpsStore, service: TableServiceClient, prefix: str
) -> None:
    store.put_poison([record("ab-1", NOW), record("ab-2", NOW)])
    assert store.delete_poison(["ab-1"]) == 1
    with pytest.raises(NotFoundError):
        store.poison_get("ab-1")  # waits for the drop: its index row is gone, not dangling
    assert store.poison_get("ab").message_id == "ab-2"  # the prefix is unique again
    ids = service.get_table_client(f"{prefix}poisonids")
    assert [e["RowKey"] for e in ids.list_entities()] == ["ab-2"]


def test_an_index_drop_that_fails_is_logged_and_leaves_look_ups_working(
    store: TableOpsStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store.put_poison([record("cd-1", NOW), record("cd-2", NOW)])

    def unavailable(_ids: object) -> None:
        raise TransientError("table service unavailable")

    monkeypatch.setattr(store, "_drop_ids", unavailable)
    assert store.delete_poison(["cd-1"]) == 1
    with pytest.raises(NotFoundError):
        store.poison_get("cd-1")  # its index row points at nothing: not found all the same
    assert "left behind" in caplog.text
    assert store.poison_get("cd-2").message_id == "cd-2"
