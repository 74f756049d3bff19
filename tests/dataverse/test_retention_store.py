"""The retention store: what it asks Dataverse for, how rows become member histories, and what
it writes back.

Answers are written in the Web API's shape (reference dataverse.md §2 and §4): ``value`` with
``@odata.context`` and ``@odata.etag``, ``@odata.nextLink`` for the next page, formatted-value
annotations beside choice values, and multipart ``$batch`` answers."""

from __future__ import annotations

import json
import logging
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from dynamics_bridge.dataverse.batch import BatchRequest, parse_batch_request
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.pacing import AppUserGate, AppUserPool
from dynamics_bridge.dataverse.retention_store import (
    PAYMENT_KIND_OF,
    HistoryRead,
    RetentionStore,
)
from dynamics_bridge.errors import ConfigError
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.mapping.loader import MAPPINGS_DIR, load_config
from dynamics_bridge.mapping.retention import RetentionFile
from dynamics_bridge.retention.records import PAYMENT_KINDS
from dynamics_bridge.settings import DataverseSettings

ORG = "https://org.crm4.dynamics.com"
API = f"{ORG}/api/data/v9.2/"
MAPPING = load_mapping()
CONFIG = load_config(RetentionFile, MAPPINGS_DIR / "retention.yaml", prefix="mbr")
TODAY = date(2026, 11, 28)
FORMATTED = "@OData.Community.Display.V1.FormattedValue"
OPTIONAL_TABLES = ("events", "advice", "portal", "surveys", "benefits")
TABLE_SETS = {name: MAPPING.related[name].entity_set for name in OPTIONAL_TABLES}


def client() -> DataverseClient:
    return DataverseClient(
        DataverseSettings(url=ORG, max_attempts=2),
        requests.Session(),
        AppUserPool.single(lambda: "t", AppUserGate(sleep=lambda s: None)),
    )


def store(config: RetentionFile = CONFIG, **options: Any) -> RetentionStore:
    return RetentionStore(client(), MAPPING, config, **options)


def page(entity_set: str, rows: list[dict[str, Any]], next_link: str | None = None) -> dict:
    body: dict[str, Any] = {
        "@odata.context": f"{API}$metadata#{entity_set}",
        "value": [{"@odata.etag": 'W/"1001"', **row} for row in rows],
    }
    if next_link:
        body["@odata.nextLink"] = next_link
    return body


def member(contact_id: str, **values: Any) -> dict[str, Any]:
    row = {
        "contactid": contact_id,
        "mbr_joinedon": "2020-02-01",
        "mbr_endedon": None,
        "mbr_leavingreason": None,
        "mbr_leavingtext": None,
        "mbr_monthlyfee": None,
        "mbr_paymentmethod": None,
        "mbr_membertype": None,
        "mbr_countycode": None,
        "birthdate": None,
    }
    row.update(values)
    return row


def query_of(call: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def calls_to(entity_set: str) -> list[Any]:
    return [c for c in responses.calls if urlsplit(c.request.url).path.endswith(f"/{entity_set}")]


def register(
    members: list[dict[str, Any]],
    payments: list[dict[str, Any]] = (),  # type: ignore[assignment]
    activity: dict[str, list[dict[str, Any]]] | None = None,
    *,
    members_too: bool = True,
) -> None:
    """The three kinds of read, one page each (tables not given answer with no rows)."""
    if members_too:
        responses.get(API + "contacts", json=page("contacts", members))
    responses.get(API + "mbr_payments", json=page("mbr_payments", list(payments)))
    for name, entity_set in TABLE_SETS.items():
        responses.get(API + entity_set, json=page(entity_set, (activity or {}).get(name, [])))


# -- reading members ------------------------------------------------------------------------------


@responses.activate
def test_members_are_read_whole_with_only_the_named_columns_in_pages_of_5000() -> None:
    register([member("c1")])
    read = store().histories(today=TODAY)
    (call,) = calls_to("contacts")
    query = query_of(call)
    assert set(query["$select"].split(",")) == {
        "contactid",
        "mbr_joinedon",
        "mbr_endedon",
        "mbr_leavingreason",
        "mbr_leavingtext",
        "mbr_monthlyfee",
        "mbr_paymentmethod",
        "mbr_membertype",
        "mbr_countycode",
        "birthdate",
        *CONFIG.written_columns(),
    }
    # Active members, and those who left within the 36 months before today.
    assert query["$filter"] == (
        "(mbr_joinedon le 2026-11-28 and mbr_endedon eq null) or "
        "(mbr_joinedon le 2026-11-28 and mbr_endedon ge 2023-11-28)"
    )
    assert "odata.maxpagesize=5000" in call.request.headers["Prefer"]
    assert all("governmentid" not in c.request.url for c in responses.calls)
    assert [m.member_id for m in read.members] == ["c1"]
    assert read.requests == len(responses.calls) == 2 + len(TABLE_SETS)


@responses.activate
def test_choice_values_become_words_the_county_a_name_and_the_birth_date_a_band() -> None:
    row = member(
        "c1",
        mbr_endedon="2026-06-30",
        mbr_leavingreason=100000000,
        **{f"mbr_leavingreason{FORMATTED}": "För dyrt"},
        mbr_leavingtext="  Avgiften är för hög  ",
        mbr_monthlyfee=312.5,
        mbr_paymentmethod=100000002,
        mbr_membertype=100000001,
        mbr_countycode="14",
        birthdate="1990-11-29",  # 35 tomorrow
    )
    register([row])
    (history,) = store().histories(today=TODAY).members
    assert history.joined_on == date(2020, 2, 1)
    assert history.ended_on == date(2026, 6, 30)
    assert history.reason == "too_expensive"
    assert history.reason_text == "Avgiften är för hög"
    assert history.monthly_fee == 312.5
    assert history.method == "invoice"
    assert history.member_type == "student"
    assert history.region == "Västra Götalands län"
    assert history.age_band == "26-35"  # the activation facts' bands


@responses.activate
def test_a_member_without_a_fee_gets_the_default_and_age_bands_can_be_given() -> None:
    register([member("c1", birthdate="1960-01-01", mbr_countycode=1)])
    (history,) = store(age_bands=[18, 30, 40, 50, 60, 68]).histories(today=TODAY).members
    assert history.monthly_fee == CONFIG.history.default_monthly_fee == 250
    assert history.age_band == "60-67"
    assert history.region == "Stockholms län"  # a code stored as a number


@responses.activate
def test_members_are_followed_over_next_links_and_every_request_counted() -> None:
    nxt = f"{API}contacts?$select=contactid&$skiptoken=%3Ccookie%20pagenumber=%222%22%20/%3E"

    def contacts(request: Any) -> tuple[int, dict[str, str], str]:
        second = "skiptoken" in request.url
        body = page(
            "contacts", [member("c2")] if second else [member("c1")], None if second else nxt
        )
        return 200, {}, json.dumps(body)

    responses.add_callback(responses.GET, API + "contacts", callback=contacts)
    register([], members_too=False)
    read = store().histories(today=TODAY)
    assert sorted(m.member_id for m in read.members) == ["c1", "c2"]
    pages = calls_to("contacts")
    assert pages[1].request.url == nxt  # verbatim, with the same Prefer
    assert pages[1].request.headers["Prefer"] == pages[0].request.headers["Prefer"]
    assert read.requests == len(responses.calls) == 3 + len(TABLE_SETS)


@responses.activate
def test_rows_that_cannot_be_a_membership_are_skipped_and_counted_never_fatal(caplog) -> None:
    register(
        [
            member("ok"),
            member("c2", mbr_joinedon="2024-05-01", mbr_endedon="2024-01-01"),
            member("c3", mbr_joinedon="not a date"),
            member("c4", mbr_endedon="31/12/2025"),
            member(None),
            member("c5", mbr_paymentmethod=42, mbr_countycode="99", mbr_monthlyfee=-5),
        ]
    )
    with caplog.at_level(logging.WARNING, "dynamics_bridge.retention"):
        read = store().histories(today=TODAY)
    assert [m.member_id for m in read.members] == ["ok", "c5"]
    assert read.skipped == {
        "left_before_joining": 1,
        "joining_date_unreadable": 1,
        "leaving_date_unreadable": 1,
        "no_contact_id": 1,
    }
    assert read.unreadable == {"method": 1, "county_code": 1, "monthly_fee": 1}
    odd = read.members[1]
    assert (odd.method, odd.region, odd.monthly_fee) == (None, None, 250)
    assert "1 members skipped: left before joining" in caplog.text


@responses.activate
def test_leavers_with_and_without_reasons_are_counted() -> None:
    register(
        [
            member("a", mbr_endedon="2026-01-05", mbr_leavingreason=100000001),
            member("b", mbr_endedon="2026-02-05", mbr_leavingtext="Dålig service"),
            member("c", mbr_endedon="2026-03-05", mbr_leavingtext=""),
            member("d"),
        ]
    )
    read = store().histories(today=TODAY)
    assert (read.leavers, read.leavers_with_reason, read.leavers_with_text) == (3, 1, 1)
    assert {m.member_id: m.reason_text for m in read.members}["c"] is None


@responses.activate
def test_the_free_text_is_not_read_unless_configured() -> None:
    history = CONFIG.history.model_copy(update={"leaving_text": None})
    register([member("c1", mbr_leavingtext="must not be read")])
    (history_read,) = (
        store(CONFIG.model_copy(update={"history": history})).histories(today=TODAY).members
    )
    assert "mbr_leavingtext" not in query_of(calls_to("contacts")[0])["$select"]
    assert history_read.reason_text is None


def test_a_configuration_naming_the_personnummer_column_is_refused() -> None:
    history = CONFIG.history.model_copy(update={"birthdate": "governmentid"})
    with pytest.raises(ConfigError, match="personnummer"):
        store(CONFIG.model_copy(update={"history": history})).histories(today=TODAY)


# -- payments and activity -----------------------------------------------------------------------


def test_every_payment_kind_is_reached_and_only_from_known_words() -> None:
    assert set(PAYMENT_KIND_OF.values()) == set(PAYMENT_KINDS)
    words = {w for s in ("event_kind", "payment_status") for w in MAPPING.choices[s].options}
    assert set(PAYMENT_KIND_OF) <= words


@responses.activate
def test_payment_rows_become_kinds_on_the_local_day_and_others_are_not_asked_for() -> None:
    kinds = MAPPING.choices["event_kind"].options
    rows = [
        {"_mbr_member_value": "c1", "mbr_kind": kinds["payment.succeeded"].value,
         "mbr_occurredon": "2026-03-31T22:30:00Z"},  # 00:30 on 1 April in Stockholm (CEST)
        {"_mbr_member_value": "c1", "mbr_kind": kinds["payment.failed"].value,
         "mbr_occurredon": "2026-01-10T10:00:00Z"},
        {"_mbr_member_value": "c1", "mbr_kind": kinds["invoice.reminded"].value,
         "mbr_occurredon": "2026-02-10T10:00:00Z"},
        {"_mbr_member_value": "c1", "mbr_kind": kinds["invoice.credited"].value,
         "mbr_occurredon": "2026-02-12T10:00:00Z"},
        {"_mbr_member_value": "c1", "mbr_kind": kinds["payment.succeeded"].value,
         "mbr_occurredon": "2023-11-27T12:00:00Z"},  # a day before the window
        {"_mbr_member_value": "gone", "mbr_kind": kinds["payment.succeeded"].value,
         "mbr_occurredon": "2026-01-10T10:00:00Z"},  # a member not read
    ]  # fmt: skip
    register([member("c1")], rows)
    read = store().histories(today=TODAY)
    (history,) = read.members
    assert history.payments == (
        (date(2026, 1, 10), "failed"),
        (date(2026, 2, 10), "overdue"),
        (date(2026, 2, 12), "refunded"),
        (date(2026, 4, 1), "paid"),
    )
    query = query_of(calls_to("mbr_payments")[0])
    assert set(query["$select"].split(",")) == {"_mbr_member_value", "mbr_kind", "mbr_occurredon"}
    wanted = sorted(str(o.value) for w, o in kinds.items() if w in PAYMENT_KIND_OF)
    assert query["$filter"] == (
        "Microsoft.Dynamics.CRM.In(PropertyName='mbr_kind',PropertyValues=["
        + ",".join(f"'{v}'" for v in wanted)
        + "]) and mbr_occurredon ge 2023-11-27 and mbr_occurredon lt 2026-11-30"
    )
    assert read.rows["payments"] == 4
    assert read.rows["payments_ignored"] == 1


@responses.activate
def test_activity_rows_carry_their_table_name_and_the_tables_filter_is_sent() -> None:
    register(
        [member("c1")],
        activity={
            "events": [{"_mbr_contactid_value": "c1", "mbr_eventdate": "2026-05-04"}],
            "portal": [
                {"_mbr_contactid_value": "c1", "mbr_signedinon": "2026-05-04T07:00:00Z"},
                {"_mbr_contactid_value": "c1", "mbr_signedinon": "2026-05-05T07:00:00Z"},
                {"_mbr_contactid_value": "c9", "mbr_signedinon": "2026-05-05T07:00:00Z"},
            ],
        },
    )
    read = store().histories(
        today=TODAY, outcomes=[("c1", date(2026, 6, 1), "reached"), ("c9", TODAY, "reached")]
    )
    (history,) = read.members
    assert history.activity == (
        (date(2026, 5, 4), "events"),
        (date(2026, 5, 4), "portal"),
        (date(2026, 5, 5), "portal"),
        (date(2026, 6, 1), "advisor_reached"),
    )
    events = query_of(calls_to("mbr_eventregistrations")[0])
    assert events["$filter"] == (
        "(mbr_attended eq true) and mbr_eventdate ge 2023-11-27 and mbr_eventdate lt 2026-11-30"
    )
    assert events["$select"] == "_mbr_contactid_value,mbr_eventdate"
    assert read.rows["advisor"] == 1
    assert read.rows["advisor_ignored"] == 1


@responses.activate
def test_date_times_fall_on_the_days_of_the_mappings_time_zone() -> None:
    signed_in = [
        "2026-01-10T22:30:00Z",  # 23:30 CET: still the 10th
        "2026-01-10T23:30:00Z",  # 00:30 CET: the 11th
        "2026-07-10T21:59:59Z",  # 23:59:59 CEST: the 10th
        "2026-07-10T22:00:00Z",  # midnight CEST: the 11th
        "2026-07-12T23:30:00+02:00",  # an offset of its own: parsed
        "2026-07-13T08:00:00.1234567Z",  # seven decimals, as Dataverse may answer
        "yesterday",  # unreadable: not a row
    ]
    rows = [{"_mbr_contactid_value": "c1", "mbr_signedinon": when} for when in signed_in]
    register([member("c1")], activity={"portal": rows})
    (history,) = store().histories(today=TODAY).members
    assert [d.isoformat() for d, _ in history.activity] == [
        "2026-01-10",
        "2026-01-11",
        "2026-07-10",
        "2026-07-11",
        "2026-07-12",
        "2026-07-13",
    ]


@responses.activate
def test_a_missing_optional_table_is_skipped_with_one_warning(caplog) -> None:
    responses.get(
        API + TABLE_SETS["surveys"],
        status=404,
        json={
            "error": {
                "code": "0x80060888",
                "message": "Resource not found for the segment 'mbr_surveyresponses'.",
            }
        },
    )
    register([member("c1")])
    reader = store()
    with caplog.at_level(logging.WARNING, "dynamics_bridge.retention"):
        first = reader.histories(today=TODAY)
        second = reader.histories(today=TODAY)
    assert first.absent == second.absent == ("surveys",)
    assert "surveys" not in first.rows
    assert caplog.text.count("activity table surveys") == 1


def test_a_read_is_described_by_its_counts() -> None:
    read = HistoryRead(members=[], current={}, requests=0, seconds=0.0)
    assert (read.leavers, read.skipped, read.absent) == (0, {}, ())


# -- writing -------------------------------------------------------------------------------------


def part(status: str, body: str = "") -> str:
    return (
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        f"HTTP/1.1 {status}\r\nOData-Version: 4.0\r\n"
        + ("Content-Type: application/json; odata.metadata=minimal\r\n" if body else "")
        + f"\r\n{body}\r\n"
    )


def batch_answer(parts: list[str]) -> tuple[int, dict[str, str], bytes]:
    body = "".join(f"--batchresponse_1\r\n{p}" for p in parts) + "--batchresponse_1--\r\n"
    return 200, {"Content-Type": "multipart/mixed; boundary=batchresponse_1"}, body.encode()


def sent_batches() -> list[list[BatchRequest]]:
    found = []
    for call in responses.calls:
        if call.request.url.endswith("$batch"):
            items = parse_batch_request(call.request.headers["Content-Type"], call.request.body)
            found.append([i for i in items if isinstance(i, BatchRequest)])
    return found


def accept_all(request: Any) -> tuple[int, dict[str, str], bytes]:
    items = parse_batch_request(request.headers["Content-Type"], request.body)
    return batch_answer([part("204 No Content") for _ in items])


RISK, REASONS, VALUE, MONTHS, THEME, MESSAGE = CONFIG.written_columns()


@responses.activate
def test_only_values_that_differ_are_patched_by_contact_id_update_only() -> None:
    responses.add_callback(responses.POST, API + "$batch", callback=accept_all)
    current = {
        "c1": {RISK: 40, REASONS: "payments.missed", VALUE: 1234.57, MONTHS: 30, THEME: None},
        "c2": {RISK: 12, REASONS: None, VALUE: 900.0, MONTHS: 50, THEME: None},
    }
    results = {
        "c1": {RISK: 41, REASONS: "payments.missed", VALUE: 1234.5678, MONTHS: 30.2},
        "c2": {RISK: 12.0, VALUE: 900, MONTHS: 50, THEME: ""},  # the same, as Dataverse keeps it
    }
    report = store().write(results, current)
    assert report.changes == {"c1": {RISK: 41}}
    assert (report.written, report.unchanged, report.failed) == (1, 1, {})
    ((patch,),) = sent_batches()
    assert (patch.method, patch.url, patch.body) == (
        "PATCH",
        "/api/data/v9.2/contacts(c1)",
        {RISK: 41},
    )
    assert patch.headers["If-Match"] == "*"  # never creates a contact
    assert report.requests == 1


@responses.activate
def test_a_rerun_with_the_same_results_sends_nothing() -> None:
    responses.add_callback(responses.POST, API + "$batch", callback=accept_all)
    results = {"c1": {RISK: 41, REASONS: "x" * 500, THEME: "price", MESSAGE: "Hej"}}
    first = store().write(results, {"c1": {}})
    written = first.changes["c1"]
    assert written[REASONS] == "x" * 400  # cut to the column's length, as Dataverse would refuse
    again = store().write(results, {"c1": written})
    assert again.changes == {}
    assert (again.requests, again.unchanged) == (0, 1)


def test_a_value_that_is_no_number_is_written_as_empty() -> None:
    report = store(dry_run=True).write(
        {"c1": {RISK: float("nan"), VALUE: "n/a", MONTHS: 7}}, {"c1": {RISK: 5, VALUE: 10.0}}
    )
    assert report.changes == {"c1": {RISK: None, VALUE: None, MONTHS: 7}}


@responses.activate
def test_a_dry_run_reports_what_would_change_and_writes_nothing() -> None:
    report = store(dry_run=True).write({"c1": {RISK: 80, THEME: "price"}}, {"c1": {RISK: 10}})
    assert report.dry_run
    assert report.changes == {"c1": {RISK: 80, THEME: "price"}}
    assert report.changed == 1
    assert report.columns == {RISK: 1, THEME: 1}
    assert (report.written, report.requests) == (0, 0)
    assert len(responses.calls) == 0


@responses.activate
def test_without_current_values_they_are_read_first_in_one_query() -> None:
    responses.get(
        API + "contacts",
        json=page("contacts", [{"contactid": "c1", RISK: 41, THEME: None}]),
    )
    responses.add_callback(responses.POST, API + "$batch", callback=accept_all)
    report = store().write({"c1": {RISK: 41, THEME: "price"}, "c2": {RISK: 5}})
    assert report.changes == {"c1": {THEME: "price"}, "c2": {RISK: 5}}
    query = query_of(calls_to("contacts")[0])
    assert "PropertyName='contactid'" in query["$filter"]
    assert set(query["$select"].split(",")) == {"contactid", *CONFIG.written_columns()}
    assert report.requests == 2


@responses.activate
def test_a_contact_deleted_since_the_read_is_reported_not_raised() -> None:
    gone = '{"error":{"code":"0x80040217","message":"contact With Id = c2 Does Not Exist"}}'
    responses.add(
        responses.POST,
        API + "$batch",
        body=batch_answer([part("204 No Content"), part("404 Not Found", gone)])[2],
        content_type="multipart/mixed; boundary=batchresponse_1",
    )
    report = store().write({"c1": {RISK: 1}, "c2": {RISK: 2}}, {})
    assert report.failed == {"c2": "not found"}
    assert report.written == 1


def test_a_column_retention_does_not_write_is_refused() -> None:
    with pytest.raises(ConfigError, match="mbr_leavingreason"):
        store().write({"c1": {"mbr_leavingreason": 100000000}}, {})


@responses.activate
def test_more_than_a_thousand_changes_go_in_batches_of_a_thousand() -> None:
    responses.add_callback(responses.POST, API + "$batch", callback=accept_all)
    results = {f"c{n}": {RISK: n % 100} for n in range(2500)}
    report = store().write(results, {})
    assert [len(b) for b in sent_batches()] == [1000, 1000, 500]
    assert report.written == 2500


@responses.activate
def test_the_config_can_come_with_each_read_and_a_dry_run_with_each_write() -> None:
    """As the retention run calls it: the store made with the mapping only."""
    register([member("c1")])
    plain = RetentionStore(client(), MAPPING)
    with pytest.raises(ConfigError, match=r"retention\.yaml"):
        plain.write({"c1": {RISK: 1}}, {})
    read = plain.histories(CONFIG, MAPPING, today=TODAY)
    report = plain.write({"c1": {RISK: 3}}, read.current, dry_run=True)
    assert (report.dry_run, report.changed, report.requests) == (True, 1, 0)
    assert len(responses.calls) == 2 + len(TABLE_SETS)  # the read only
