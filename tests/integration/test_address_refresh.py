"""The address refresh against the real local parts: the Dataverse sandbox (provisioned from the
mapping), the SPAR responder and the APSIS stand-in. Protected identities keep their CRM address
and leave APSIS; the others get SPAR's address and status; every lookup is audited."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from dynamics_bridge_sandbox.apsis import ApsisStandIn, run_apsis_standin
from dynamics_bridge_sandbox.register import prepare_register, sandbox_settings
from dynamics_bridge_sandbox.server import run_sandbox
from dynamics_bridge_sandbox.spar import NOT_FOUND, SparResponder, run_spar_responder

from dynamics_bridge.apsis import ApsisPlatform
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.mapping import MappingFile, load_mapping
from dynamics_bridge.mapping.models import AddressSelect, NewMembers
from dynamics_bridge.registry import SparClient
from dynamics_bridge.registry.refresh import AddressRefresh
from dynamics_bridge.settings import load_settings

pytestmark = pytest.mark.integration

ANNA, BERTIL, CECILIA, DAVID, EVA = (
    "196503129816",
    "197206059821",
    "195809199838",
    "194311229845",
    "198802279854",
)
OLD_ADDRESS = {
    "address1_line1": "Gamla gatan 3",
    "address1_postalcode": "12345",
    "address1_city": "SOLNA",
}


@dataclass
class World:
    client: DataverseClient
    mapping: MappingFile
    spar: SparResponder
    apsis: ApsisStandIn
    platform: ApsisPlatform
    numbers: list[str]

    def set_member(self, number: str, **values: object) -> None:
        member = self.mapping.member
        self.client.rows.update(member.entity_set, {member.key_column: number}, values)

    def member(self, number: str) -> dict:
        member = self.mapping.member
        row = self.client.rows.get(member.entity_set, {member.key_column: number})
        assert row is not None
        return row

    def refresh(self, select: AddressSelect | None = None, **kw: object) -> AddressRefresh:
        mapping = self.mapping
        if select is not None:
            address = mapping.address.model_copy(update={"select": select})
            mapping = mapping.model_copy(update={"address": address})
        spar = SparClient.from_settings(self.spar.settings())
        return AddressRefresh(self.client, mapping, spar, self.platform, **kw)


FLAGS_ONLY = AddressSelect(flagged="mbr_addresscheck", returned_mail="mbr_returnedmail")


@pytest.fixture
def world(tmp_path, monkeypatch) -> Iterator[World]:
    mapping = load_mapping()
    with (
        run_sandbox(tmp_path / "dataverse.sqlite") as box,
        run_spar_responder() as spar,
        run_apsis_standin() as apsis,
    ):
        client = DataverseClient.from_settings(sandbox_settings(box))
        numbers = prepare_register(client, mapping, 12)
        for name, value in apsis.env.items():
            monkeypatch.setenv(name, value)
        platform = ApsisPlatform.from_settings(load_settings().apsis)
        yield World(client, mapping, spar, apsis, platform, numbers)


def flag_the_handful(world: World) -> None:
    n = world.numbers
    world.set_member(n[0], governmentid=ANNA, mbr_addresscheck=True)
    world.set_member(n[1], governmentid=BERTIL, mbr_returnedmail=True)
    world.set_member(n[2], governmentid=CECILIA, mbr_addresscheck=True, **OLD_ADDRESS)
    world.set_member(n[3], governmentid=DAVID, mbr_addresscheck=True)
    world.set_member(n[4], governmentid=EVA, mbr_addresscheck=True)
    world.set_member(n[5], governmentid=NOT_FOUND, mbr_addresscheck=True)


def test_flagged_members_are_looked_up_and_their_columns_written(world: World) -> None:
    flag_the_handful(world)
    report = world.refresh(FLAGS_ONLY).run()

    assert report.selected == {"flagged": 5, "returned_mail": 1}
    assert report.looked_up == 6
    assert report.failed == []
    assert sorted(world.spar.lookups) == sorted([ANNA, BERTIL, CECILIA, DAVID, EVA, NOT_FOUND])
    n = world.numbers
    anna = world.member(n[0])
    assert (anna["address1_line1"], anna["address1_postalcode"], anna["address1_city"]) == (
        "Storgatan 1",
        "11122",
        "STOCKHOLM",
    )
    assert anna["mbr_registerstatus"] == 100000000  # active
    assert anna["mbr_protectedidentity"] is False
    assert anna["mbr_addresscheck"] is False
    bertil = world.member(n[1])  # the special postal address wins
    assert (bertil["address1_line1"], bertil["address1_line2"]) == ("c/o Facket Väst", "Box 77")
    assert bertil["mbr_returnedmail"] is False
    david = world.member(n[3])
    assert (david["mbr_registerstatus"], david["mbr_deceasedon"]) == (100000001, "2026-10-02")
    eva = world.member(n[4])
    assert eva["mbr_registerstatus"] == 100000002  # emigrated
    assert (eva["address1_line1"], eva["address1_country"]) == ("Storgata 12", "NORGE")
    assert world.member(n[5])["mbr_registerstatus"] == 100000004  # not found
    assert report.statuses == {"active": 3, "deceased": 1, "emigrated": 1, "not_found": 1}


def test_protected_identity_keeps_the_crm_address_and_leaves_apsis(world: World) -> None:
    flag_the_handful(world)
    cecilia = world.numbers[2]
    world.platform.upsert_profile(cecilia, {})
    assert world.apsis.profile(cecilia) is not None

    report = world.refresh(FLAGS_ONLY).run()

    row = world.member(cecilia)
    assert row["mbr_protectedidentity"] is True
    assert {c: row[c] for c in OLD_ADDRESS} == OLD_ADDRESS  # untouched, not cleared
    assert row.get("address1_line2") is None  # nothing written beside it
    assert world.apsis.profile(cecilia) is None
    assert (cecilia, "delete") in world.apsis.erasures()
    assert report.protected == 1
    assert report.erased == 1
    # No one else was erased.
    assert [key for key, _ in world.apsis.erasures()] == [cecilia]


def test_the_place_of_registration_is_stored_and_a_protected_member_gets_none(
    world: World,
) -> None:
    flag_the_handful(world)
    n = world.numbers
    world.set_member(n[2], mbr_countycode="01", mbr_municipalitycode="0180")  # from before

    world.refresh(FLAGS_ONLY).run()

    codes = [
        (world.member(n[i]).get("mbr_countycode"), world.member(n[i]).get("mbr_municipalitycode"))
        for i in range(5)
    ]
    assert codes == [
        ("01", "0180"),  # Anna, Stockholm
        ("14", "1480"),  # Bertil, Göteborg
        ("01", "0180"),  # Cecilia, protected: what the register had, nothing from SPAR
        ("03", "0380"),  # David, Uppsala
        (None, None),  # Eva, emigrated: no place of registration in Sweden
    ]


def test_failed_erase_leaves_the_member_flagged_for_the_next_run(world: World) -> None:
    flag_the_handful(world)
    world.apsis.fail_next(400, times=10, path="/profiles/")
    report = world.refresh(FLAGS_ONLY).run()
    cecilia = world.member(world.numbers[2])
    assert cecilia["mbr_protectedidentity"] is True
    assert cecilia["mbr_addresscheck"] is True
    assert any("erase from marketing failed" in f for f in report.failed)


def test_every_lookup_is_audited_and_no_raw_answer_is_stored(world: World) -> None:
    flag_the_handful(world)
    before = datetime.now(UTC).replace(microsecond=0)
    world.refresh(FLAGS_ONLY).run()
    for number in world.numbers[:6]:
        row = world.member(number)
        checked = datetime.strptime(row["mbr_sparcheckedon"], "%Y-%m-%dT%H:%M:%SZ")
        assert checked.replace(tzinfo=UTC) >= before
        assert len(row["mbr_spartransaction"]) == 36  # SPAR's UUID
        assert not any("Envelope" in str(v) or "Svarspost" in str(v) for v in row.values())


def test_a_second_run_asks_nobody_once_the_flags_are_cleared(world: World) -> None:
    flag_the_handful(world)
    world.refresh(FLAGS_ONLY).run()
    asked = len(world.spar.lookups)
    report = world.refresh(FLAGS_ONLY).run()
    assert report.looked_up == 0
    assert len(world.spar.lookups) == asked


def test_dry_run_selects_but_asks_spar_nothing_and_writes_nothing(world: World) -> None:
    flag_the_handful(world)
    report = world.refresh(FLAGS_ONLY).run(dry_run=True)
    assert sum(report.selected.values()) == 6
    assert report.looked_up == 0
    assert world.spar.lookups == []
    assert world.member(world.numbers[0])["mbr_addresscheck"] is True


def test_new_and_long_unchecked_members_are_selected_oldest_rules_last(world: World) -> None:
    n = world.numbers
    world.set_member(n[0], governmentid=ANNA)  # new (created now), never checked
    world.set_member(n[1], governmentid=BERTIL, mbr_sparcheckedon="2020-01-01T00:00:00Z")
    world.set_member(n[2], governmentid=DAVID, mbr_sparcheckedon="2026-11-01T00:00:00Z")
    for other in n[3:]:
        world.set_member(other, mbr_sparcheckedon="2026-11-20T00:00:00Z")
    select = AddressSelect(new_members=NewMembers(days=30), not_checked_days=365)
    now = datetime.now(UTC)
    report = world.refresh(select, clock=lambda: now).run()
    assert report.selected == {"new_member": 1, "not_checked": 1}
    assert sorted(world.spar.lookups) == sorted([ANNA, BERTIL])


def test_max_per_run_caps_the_lookups_by_priority(world: World) -> None:
    flag_the_handful(world)
    select = FLAGS_ONLY.model_copy(update={"max_per_run": 2})
    report = world.refresh(select).run()
    assert report.selected == {"flagged": 2}
    assert len(world.spar.lookups) == 2
    assert BERTIL not in world.spar.lookups  # returned mail comes after flagged


def test_long_unchecked_means_checked_before_the_cutoff(world: World) -> None:
    """The sandbox compares ISO times as Dataverse compares datetimes."""
    n = world.numbers
    cutoff = datetime.now(UTC) - timedelta(days=365)
    world.set_member(n[0], governmentid=ANNA, mbr_sparcheckedon="2024-01-01T00:00:00Z")
    for other in n[1:]:
        world.set_member(other, mbr_sparcheckedon=f"{cutoff.year + 1}-01-01T00:00:00Z")
    report = world.refresh(AddressSelect(not_checked_days=365)).run()
    assert report.selected == {"not_checked": 1}
