"""The one check every way in runs: each problem with its place and what to do, all in one run."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from dynamics_bridge.activation.loader import load_activation
from dynamics_bridge.app import jobs
from dynamics_bridge.app.check import CheckReport, Finding, run_check
from dynamics_bridge.app.health import check_health
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.errors import ConfigError
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.mapping.loader import MAPPINGS_DIR
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.settings import load_settings
from tests.dataverse.test_provision import API, client_for, provisioned_contact, serve_environment

DATAVERSE = {
    "url": "https://union.crm4.dynamics.com",
    "tenant_id": "tenant",
    "client_id": "app",
    "client_secret": "secret",
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the shipped mappings, for a test to break."""
    return Path(shutil.copytree(MAPPINGS_DIR, tmp_path / "mappings"))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_bytes().splitlines(), 1) if text in line)


def check(folder: Path, **settings: Any) -> CheckReport:
    chosen = {"dataverse": DATAVERSE, "mappings_dir": str(folder), **settings}
    return run_check(load_settings(**chosen), live=False, wiring=Services)


def errors(report: CheckReport) -> list[Finding]:
    return report.errors


def test_the_shipped_mappings_with_a_dataverse_app_user_pass(folder: Path) -> None:
    report = check(folder)
    assert errors(report) == []
    shipped = ["dataverse.yaml", "apsis.yaml", "triggers.yaml", "segments.yaml", "retention.yaml"]
    assert report.files == dict.fromkeys(shipped, True)


def test_every_missing_dataverse_setting_is_reported_in_one_run(folder: Path) -> None:
    report = run_check(load_settings(mappings_dir=str(folder)), live=False)
    named = {f.where for f in report.errors}
    assert {
        "BRIDGE_DATAVERSE__URL",
        "BRIDGE_DATAVERSE__TENANT_ID",
        "BRIDGE_DATAVERSE__CLIENT_ID",
    } <= named
    assert all(f.fix for f in report.errors)


def test_a_client_id_without_a_secret_or_certificate_is_named() -> None:
    settings = load_settings(dataverse={**DATAVERSE, "client_secret": None})
    problems = settings.dataverse.problems()
    assert problems == [
        "BRIDGE_DATAVERSE__CLIENT_SECRET: required for app user app "
        "(or BRIDGE_DATAVERSE__CERTIFICATE_PATH)"
    ]


def test_a_dataverse_url_without_https_is_refused_by_its_name(folder: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(dataverse={**DATAVERSE, "url": "union.crm4.dynamics.com"})
    assert caught.value.problems[0].startswith("BRIDGE_DATAVERSE__URL: ")
    assert "https://" in caught.value.problems[0]
    with pytest.raises(ConfigError):
        load_settings(dataverse={**DATAVERSE, "url": "http://union.crm4.dynamics.com"})


def test_settings_that_fail_are_reported_with_the_mapping_problems(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIDGE_DATAVERSE__URL", "union.crm4.dynamics.com")
    monkeypatch.setenv("BRIDGE_MAPPINGS_DIR", str(folder))
    edit(folder / "dataverse.yaml", "timezone: Europe/Stockholm", "timezone: Europe/Stokholm")
    report = run_check(live=False)
    where = [f.where for f in report.errors]
    assert "BRIDGE_DATAVERSE__URL" in where
    assert any(w.startswith(str(folder / "dataverse.yaml")) for w in where)


def test_a_misspelt_time_zone_names_the_file_line_and_setting(folder: Path) -> None:
    path = folder / "dataverse.yaml"
    edit(path, "timezone: Europe/Stockholm", "timezone: Europe/Stokholm")
    [finding] = errors(check(folder))
    assert finding.where.startswith(f"{path}:{line_of(path, b'timezone:')}:")
    assert finding.what.startswith("timezone: unknown time zone 'Europe/Stokholm'")
    assert "Europe/Stockholm" in finding.what


def test_a_deleted_segments_yaml_is_named_while_the_others_are_there(folder: Path) -> None:
    (folder / "segments.yaml").unlink()
    report = check(folder)
    [finding] = errors(report)
    assert finding.where == str(folder / "segments.yaml")
    assert "apsis.yaml, triggers.yaml are there" in finding.what
    assert "restore segments.yaml" in finding.fix
    assert report.files["segments.yaml"] is False
    assert report.files["apsis.yaml"] is True


def test_without_any_activation_file_apsis_is_off_and_said(folder: Path) -> None:
    for name in ("apsis.yaml", "triggers.yaml", "segments.yaml"):
        (folder / name).unlink()
    report = check(folder)
    assert errors(report) == []
    assert any("triggers, segments and reminders are off" in w.what for w in report.warnings)


def test_duplicate_choice_values_name_the_file_and_entry(folder: Path) -> None:
    path = folder / "dataverse.yaml"
    edit(path, "bankgiro: {value: 100000004", "bankgiro: {value: 100000002")
    [finding] = errors(check(folder))
    assert finding.where == f"{path}:{line_of(path, b'bankgiro: {value: 100000002')}:25"
    assert finding.what == (
        "choices.payment_method.options.bankgiro.value: 100000002 is also the value of "
        "'invoice': give each option its own value"
    )


@pytest.mark.parametrize("name", ["dataverse.yaml", "segments.yaml", "triggers.yaml"])
def test_a_file_saved_as_latin1_names_the_file_and_line_and_asks_for_utf8(
    folder: Path, name: str
) -> None:
    path = folder / name
    text = path.read_text(encoding="utf-8")
    assert "ö" in text or "ä" in text or "å" in text
    path.write_bytes(text.encode("cp1252", errors="replace"))  # Notepad's "ANSI"
    first = min(
        n for n, line in enumerate(text.splitlines(), 1) if any(c in line for c in "åäöÅÄÖ")
    )
    found = [f for f in errors(check(folder)) if f.where.startswith(str(path))]
    assert len(found) == 1
    assert found[0].where.startswith(f"{path}:{first}:")
    assert "not UTF-8" in found[0].what
    assert "UTF-8" in found[0].fix


def test_every_problem_of_every_file_is_reported_in_one_run(folder: Path) -> None:
    edit(folder / "dataverse.yaml", "timezone: Europe/Stockholm", "timezone: Europe/Stokholm")
    edit(folder / "dataverse.yaml", "bankgiro: {value: 100000004", "bankgiro: {value: 100000002")
    segments = folder / "segments.yaml"
    segments.write_bytes(segments.read_text(encoding="utf-8").encode("cp1252", errors="replace"))
    report = run_check(load_settings(mappings_dir=str(folder)), live=False)
    text = "\n".join(f.text() for f in report.errors)
    for expected in ("BRIDGE_DATAVERSE__URL", "Europe/Stokholm", "100000002", "not UTF-8"):
        assert expected in text


def test_an_engagement_part_whose_column_holds_no_number_is_an_error(folder: Path) -> None:
    edit(folder / "segments.yaml", "column: events.count", 'column: "{prefix}_memberno"')
    [finding] = errors(check(folder))
    assert finding.where == "segments.yaml: engagement.events.column"
    assert "mbr_memberno is a string column" in finding.what


def test_an_engagement_part_whose_column_is_not_in_the_mapping_is_an_error(folder: Path) -> None:
    edit(folder / "segments.yaml", "column: events.count", 'column: "{prefix}_eventsvisited"')
    [finding] = errors(check(folder))
    assert finding.where == "segments.yaml: engagement.events.column"
    assert "mbr_eventsvisited is not a member column" in finding.what


class FakeApsisClient:
    """The APSIS client's reads the check makes: sections, and the section's definitions in
    the shape of ``GET /audience/sections/{section}/{kind}`` (reference apsis.md §3.1)."""

    section = "com.apsis1.sections.union"

    def __init__(self, events: list[dict[str, Any]], attributes: list[str], tags: list[str]):
        self.items = {
            "events": events,
            "attributes": [
                {"discriminator": d, "versions": [{"id": "1", "deprecated_at": None}]}
                for d in attributes
            ],
            "tags": [{"discriminator": d} for d in tags],
        }

    def request(self, method: str, path: str) -> Any:
        assert (method, path) == ("GET", "/audience/sections")
        body = {"items": [{"discriminator": self.section}]}
        return type("Answer", (), {"json": lambda self: body})()

    def definitions(self, kind: str, *, refresh: bool = False) -> list[dict[str, Any]]:
        return self.items[kind]


def apsis_world(fields_of: dict[str, list[str]]) -> tuple[Any, Any]:
    """The shipped activation files and a platform whose events define ``fields_of`` (our event
    name -> the current version's fields; others: every field the files send)."""
    config = load_activation(load_mapping())
    apsis = config.apsis
    sent: dict[str, set[str]] = {}
    for name, rule in config.triggers.triggers.items():
        sent.setdefault(rule.event or name, set()).update(rule.field_map())
    for reminder in config.segments.reminders.values():
        sent.setdefault(reminder.event, set()).update(reminder.fields.values())
    events = [
        {
            "discriminator": discriminator,
            "versions": [
                {"id": "old", "deprecated_at": "2024-01-01", "fields": []},
                {
                    "id": "current",
                    "deprecated_at": None,
                    "fields": sorted(fields_of.get(name, sent.get(name, set()))),
                },
            ],
        }
        for name, discriminator in apsis.events.items()
    ]
    client = FakeApsisClient(
        events,
        [a.discriminator for a in apsis.attributes.values()],
        list(apsis.tags.values()),
    )
    names = {
        "attributes": {n: a.discriminator for n, a in apsis.attributes.items()},
        "event_types": dict(apsis.events),
        "tags": dict(apsis.tags),
    }
    platform = type("Platform", (), {"client": client, "names": names})()
    return config, platform


def live_check(folder: Path, platform: Any) -> CheckReport:
    settings = load_settings(mappings_dir=str(folder))  # no Dataverse: only APSIS is asked
    return run_check(settings, live=True, need_dataverse=False, marketing=lambda config: platform)


def test_apsis_event_fields_the_event_version_lacks_are_named_before_any_send(
    folder: Path,
) -> None:
    config, platform = apsis_world({})
    assert live_check(folder, platform).errors == []
    reminder, rule = next(iter(config.segments.reminders.items()))
    kept = [f for f in rule.fields.values() if f != rule.fields["date"]]
    config, platform = apsis_world({rule.event: kept})
    [finding] = live_check(folder, platform).errors
    assert finding.where == f"segments.yaml: reminders.{reminder}.fields"
    assert f"no field(s) [{rule.fields['date']!r}]" in finding.what
    assert "APSIS One" in finding.fix


def test_an_event_apsis_lacks_is_named(folder: Path) -> None:
    config, platform = apsis_world({})
    name = next(iter(config.apsis.events))
    platform.client.items["events"] = [
        e
        for e in platform.client.items["events"]
        if e["discriminator"] != config.apsis.events[name]
    ]
    found = live_check(folder, platform).errors
    assert [f.area for f in found] == ["apsis"]
    assert name in found[0].text()


def test_spar_settings_are_checked_all_at_once_when_spar_is_used(folder: Path) -> None:
    report = check(folder, spar={"endpoint": "https://spar.example.se/personsok"})
    named = {f.where for f in report.errors if f.area == "spar"}
    assert {
        "BRIDGE_SPAR__CUSTOMER_NUMBER",
        "BRIDGE_SPAR__ASSIGNMENT_ID",
        "BRIDGE_SPAR__END_USER_ID",
    } <= named


SPAR = {
    "endpoint": "http://127.0.0.1:9/personsok",
    "customer_number": 500001,
    "assignment_id": 1,
    "end_user_id": "admin",
}


def test_the_spar_contract_files_must_exist_and_parse(folder: Path, tmp_path: Path) -> None:
    assert [f for f in check(folder, spar=SPAR).errors if f.area == "spar"] == []
    missing = tmp_path / "nowhere" / "personsok.wsdl"
    [finding] = [f for f in check(folder, spar={**SPAR, "wsdl_path": str(missing)}).errors]
    assert finding.where == "BRIDGE_SPAR__WSDL_PATH"
    assert str(missing) in finding.what
    broken = tmp_path / "personsok.wsdl"
    broken.write_text("<definitions>not closed", encoding="utf-8")
    [finding] = check(folder, spar={**SPAR, "wsdl_path": str(broken)}).errors
    assert finding.area == "spar"
    assert str(broken) in finding.text()


def test_the_wiring_reads_the_mappings_folder_setting(folder: Path) -> None:
    edit(folder / "dataverse.yaml", "publisher_prefix: mbr", "publisher_prefix: fack")
    services = Services(load_settings(mappings_dir=str(folder)))
    assert services.mapping.publisher_prefix == "fack"
    assert services.startup_check().folder == folder


def test_health_refuses_a_failing_configuration_and_says_why(folder: Path) -> None:
    (folder / "segments.yaml").unlink()
    services = Services(
        load_settings(mappings_dir=str(folder), dataverse=DATAVERSE), queue=InMemoryQueue("q")
    )
    report = check_health(services, {})
    assert report.status == 503
    config = report.body["checks"]["config"]
    assert config["ok"] is False
    assert config["files"]["segments.yaml"] is False
    assert any(str(folder / "segments.yaml") in e for e in config["errors"])


def test_a_timer_refuses_to_work_on_a_failing_configuration(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    edit(folder / "dataverse.yaml", "timezone: Europe/Stockholm", "timezone: Europe/Stokholm")
    ran: list[str] = []
    activation = type("Jobs", (), {"segments": property(lambda self: ran.append("ran"))})()
    services = Services(
        load_settings(mappings_dir=str(folder), apsis={"client_id": "a", "client_secret": "s"}),
        activation=activation,
    )
    with caplog.at_level(logging.ERROR):
        result = jobs.run_job("segments", services)
    assert result.status == "skipped"
    assert "Europe/Stokholm" in result.summary["reason"]
    assert ran == []
    assert "job segments refused" in caplog.text
    assert "configuration: " in caplog.text  # each error logged once, with its place


def test_a_timer_that_needs_no_mapping_still_runs(folder: Path) -> None:
    edit(folder / "dataverse.yaml", "timezone: Europe/Stockholm", "timezone: Europe/Stokholm")
    services = Services(load_settings(mappings_dir=str(folder)))
    assert jobs.run_job("housekeeping", services).status == "done"


# -- one run reports every settings problem --------------------------------------------------


def test_an_invalid_setting_does_not_hide_what_the_other_settings_lack(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIDGE_DATAVERSE__URL", "union.crm4.dynamics.com")  # no https://
    monkeypatch.setenv("BRIDGE_APSIS__CLIENT_ID", "apsis")  # half an API key
    monkeypatch.setenv("BRIDGE_SPAR__ENDPOINT", "https://spar.example.se/personsok")
    monkeypatch.setenv("BRIDGE_MAPPINGS_DIR", str(folder))
    report = run_check(live=False)
    where = [f.where for f in report.errors]
    assert where.count("BRIDGE_DATAVERSE__URL") == 1  # refused, not also "required"
    [url] = [f for f in report.errors if f.where == "BRIDGE_DATAVERSE__URL"]
    assert "https://" in url.what
    assert {
        "BRIDGE_DATAVERSE__TENANT_ID",
        "BRIDGE_DATAVERSE__CLIENT_ID",
        "BRIDGE_APSIS__CLIENT_SECRET",
        "BRIDGE_SPAR__CUSTOMER_NUMBER",
        "BRIDGE_SPAR__WSDL_PATH",
    } <= set(where)
    assert report.folder == folder


# -- the start check of the function app and its timers --------------------------------------

ACTIVATION_JOBS = ["segments", "reminders", "triggers"]


def timer_services(folder: Path, job: str, **parts: Any) -> Services:
    """The wiring a timer runs on: its area configured (APSIS, or SPAR on the sandbox's
    contract), an activation side that records whether it was used."""
    ran: list[str] = []
    side = type(
        "Jobs",
        (),
        {name: property(lambda self, name=name: ran.append(name)) for name in ACTIVATION_JOBS},
    )()
    services = Services(
        load_settings(
            mappings_dir=str(folder),
            apsis={"client_id": "a", "client_secret": "s"},
            spar=SPAR,
        ),
        **({"activation": side} | parts),
    )
    services.ran = ran  # type: ignore[attr-defined]
    return services


@pytest.mark.parametrize("job", [*ACTIVATION_JOBS, "address_refresh"])
def test_every_dataverse_timer_refuses_to_work_on_a_failing_configuration(
    folder: Path, job: str, caplog: pytest.LogCaptureFixture
) -> None:
    edit(folder / "dataverse.yaml", "timezone: Europe/Stockholm", "timezone: Europe/Stokholm")
    services = timer_services(folder, job)
    with caplog.at_level(logging.ERROR):
        result = jobs.run_job(job, services)
    assert result.status == "skipped"
    assert "fails `dynamics-bridge check`" in result.summary["reason"]
    assert "Europe/Stokholm" in result.summary["reason"]
    assert services.ran == []  # type: ignore[attr-defined]
    assert f"job {job} refused" in caplog.text


def live_services(folder: Path, contact: dict[str, Any], **settings: Any) -> Services:
    """The wiring over a Dataverse that answers with ``contact`` (and no other table of the
    mapping: so each check also says to provision the payment table), SPAR set up on the
    sandbox's contract (its timer needs Dataverse)."""
    serve_environment({"contact": contact})
    responses.get(API + "contacts", json={"value": []})  # health's one small read
    return Services(
        load_settings(
            mappings_dir=str(folder),
            dataverse={**DATAVERSE, "url": "https://org.crm4.dynamics.com"},
            spar=SPAR,
            **settings,
        ),
        dataverse=client_for(),
        queue=InMemoryQueue("q"),
    )


DATE_ONLY = {"Format": "DateOnly", "DateTimeBehavior": {"Value": "DateOnly"}}
MISMATCH = "contact.mbr_lastpaymentevent: is a date-only column in Dataverse"


@responses.activate
def test_a_live_metadata_mismatch_turns_health_503_and_refuses_the_timers(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    services = live_services(folder, provisioned_contact(mbr_lastpaymentevent=DATE_ONLY))
    health = check_health(services, {})
    assert health.status == 503
    assert health.body["checks"]["dataverse"] == {"ok": True}  # reachable: the config fails
    config = health.body["checks"]["config"]
    assert config["ok"] is False
    assert config["live"] is True
    assert any(f"Dataverse: {MISMATCH}" in e for e in config["errors"])
    assert any(str(folder / "dataverse.yaml") in e for e in config["errors"])
    with caplog.at_level(logging.ERROR):
        result = jobs.run_job("address_refresh", services)
    assert result.status == "skipped"
    assert MISMATCH in result.summary["reason"]
    assert f"configuration: Dataverse: {MISMATCH}" in caplog.text
    assert "job address_refresh refused" in caplog.text


@responses.activate
def test_dataverse_out_of_reach_at_start_is_a_warning_and_the_timer_runs(folder: Path) -> None:
    responses.get(
        re.compile(re.escape(API) + ".*"), body=requests.ConnectionError("no route to host")
    )
    segments = type("Segments", (), {"run": lambda self: type("R", (), {"to_json": dict})()})()
    services = Services(
        load_settings(mappings_dir=str(folder), apsis={"client_id": "a", "client_secret": "s"}),
        dataverse=client_for(),
        activation=type("Jobs", (), {"segments": segments})(),
    )
    report = services.startup_check()
    assert report.ok
    [warning] = [w for w in report.warnings if w.area == "dataverse"]
    assert warning.what.startswith("not reachable")
    assert jobs.run_job("segments", services).status == "done"  # it meets the outage itself


def test_an_apsis_definition_apsis_lacks_refuses_the_activation_timers(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dynamics_bridge.activation.service as service

    monkeypatch.setattr(
        service, "check_apsis", lambda platform, apsis: ["event type com.union.x not found"]
    )
    platform = type("Platform", (), {})()  # lists no event fields: those are not judged
    services = Services(
        load_settings(mappings_dir=str(folder), apsis={"client_id": "a", "client_secret": "s"}),
        activation=type("Jobs", (), {"platform": platform, "triggers": None})(),
    )
    result = jobs.run_job("triggers", services)
    assert result.status == "skipped"
    assert "APSIS event type com.union.x not found" in result.summary["reason"]


@responses.activate
def test_the_live_start_check_is_kept_for_the_configured_minutes(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dynamics_bridge.dataverse.provision as provision

    checked: list[str] = []
    real = provision.check_metadata

    def counted(client: Any, mapping: Any, **kw: Any) -> list[str]:
        checked.append(kw["source"])
        return real(client, mapping, **kw)

    monkeypatch.setattr(provision, "check_metadata", counted)
    kept = live_services(folder, provisioned_contact())  # the default: an hour
    first = kept.startup_check()
    assert checked == [str(folder / "dataverse.yaml")]
    assert kept.startup_check() is first
    check_health(kept, {})
    jobs.run_job("address_refresh", kept)
    assert len(checked) == 1  # health and the timers ask Dataverse nothing more meanwhile
    every_time = live_services(folder, provisioned_contact(), start_check_minutes=0)
    first = every_time.startup_check()
    assert every_time.startup_check() is not first
    assert len(checked) == 3


def test_the_start_check_minutes_are_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().start_check_minutes == 60
    monkeypatch.setenv("BRIDGE_START_CHECK_MINUTES", "5")
    assert load_settings().start_check_minutes == 5
    monkeypatch.setenv("BRIDGE_START_CHECK_MINUTES", "-1")
    with pytest.raises(ConfigError, match="BRIDGE_START_CHECK_MINUTES"):
        load_settings()


def test_a_deleted_dataverse_yaml_is_named_with_what_to_set(folder: Path) -> None:
    (folder / "dataverse.yaml").unlink()
    report = check(folder)
    assert report.files["dataverse.yaml"] is False
    [finding] = [f for f in report.errors if f.where == str(folder / "dataverse.yaml")]
    assert finding.what == "the Dataverse mapping is missing"
    assert "BRIDGE_MAPPINGS_DIR" in finding.fix
    assert not report.ok
