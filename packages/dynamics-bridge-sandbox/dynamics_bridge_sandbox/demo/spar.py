"""The demo's SPAR section: an address refresh over the seeded register, one protected identity.

Runs on the demo's Dataverse sandbox and members. The SPAR responder starts in-process with a
directory made for the register: every seeded member is an ordinary fictitious person, except six
members who become the responder's handful (two ordinary, one protected identity, one deceased,
one emigrated) and one number SPAR does not know. The protected member already has an address in
the CRM and a profile in the APSIS stand-in: afterwards the address is the same and the profile
is gone.
"""

from __future__ import annotations

import json
from typing import Any

from dynamics_bridge.apsis import ApsisPlatform
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.mapping import MappingFile
from dynamics_bridge.model import MemberRefKind
from dynamics_bridge.registry import SparClient
from dynamics_bridge.registry.refresh import AddressRefresh
from dynamics_bridge.settings import ApsisSettings
from dynamics_bridge_sandbox.apsis import ApsisStandIn, run_apsis_standin
from dynamics_bridge_sandbox.spar import NOT_FOUND, Person, demo_people, run_spar_responder

__all__ = ["run_spar_demo"]

#: Postcode, town and the municipality it lies in (SCB's code).
_TOWNS = (
    ("11122", "STOCKHOLM", "0180"),
    ("41301", "GÖTEBORG", "1480"),
    ("21119", "MALMÖ", "1280"),
    ("75320", "UPPSALA", "0380"),
)


def _directory(client: DataverseClient, mapping: MappingFile, numbers: list[str]) -> list[Person]:
    """A person for every seeded member's personnummer (the special six are set by the caller)."""
    member = mapping.member
    pnr_column = str(member.keys[MemberRefKind.PERSONNUMMER].column)
    rows = client.rows.by_values(member.entity_set, member.key_column, numbers, [pnr_column])
    people = []
    for index, number in enumerate(numbers):
        pnr = (rows.get(number) or {}).get(pnr_column)
        if pnr:
            postal_code, city, municipality = _TOWNS[index % len(_TOWNS)]
            people.append(
                Person(
                    str(pnr),
                    "Test",
                    f"Medlem {number}",
                    f"Demogatan {index + 1}",
                    postal_code,
                    city,
                    municipality_code=municipality,
                )
            )
    return people


def _apsis_settings(standin: ApsisStandIn) -> ApsisSettings:
    values = {
        name.removeprefix("BRIDGE_APSIS__").lower(): json.loads(v) if v.startswith("{") else v
        for name, v in standin.env.items()
    }
    return ApsisSettings.model_validate(values)


def run_spar_demo(
    client: DataverseClient, mapping: MappingFile, numbers: list[str]
) -> dict[str, Any]:
    """Refresh the register's addresses from the local SPAR; the summary for ``demo --json``."""
    address, member = mapping.address, mapping.member
    if address is None:
        return {}
    pnr_column = str(member.keys[MemberRefKind.PERSONNUMMER].column)
    special = [*demo_people(), None]  # None: the number SPAR does not know
    chosen = dict(zip(numbers, special, strict=False))
    protected = next(n for n, p in chosen.items() if p and p.protected)
    old_address = {address.columns.line1: "Gamla gatan 3", address.columns.postal_code: "17141"}
    people = _directory(client, mapping, numbers)
    with (
        run_spar_responder(people=[*people, *demo_people()]) as spar,
        run_apsis_standin() as apsis,
    ):
        platform = ApsisPlatform.from_settings(_apsis_settings(apsis))
        for number, person in chosen.items():
            values: dict[str, Any] = {pnr_column: person.pnr if person else NOT_FOUND}
            if address.select.flagged:
                values[address.select.flagged] = True
            if number == protected:  # known to the CRM and to marketing before the check
                values.update(old_address)
                platform.upsert_profile(number, {})
            client.rows.update(member.entity_set, {member.key_column: number}, values)
        spar_client = SparClient.from_settings(spar.settings())
        report = AddressRefresh(client, mapping, spar_client, platform).run()
        row = client.rows.get(member.entity_set, {member.key_column: protected}) or {}
        summary = report.to_json()
        summary["protected_address_kept"] = all(row.get(c) == v for c, v in old_address.items())
        summary["protected_in_marketing"] = apsis.profile(protected) is not None
    return summary
