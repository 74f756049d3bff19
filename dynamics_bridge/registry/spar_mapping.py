"""From a parsed PersonSok answer to an :class:`AddressRecord`: plain data in, plain data out.

The input is the answer as nested dicts and lists (what ``zeep.helpers.serialize_object`` makes
of ``SPARPersonsokningSvar``), so this module needs no SOAP library and tests can feed it by hand.

Rules taken from the contract (reference soap.md §1.4, §4):

- With history delivered, an entry is current when it has no ``DatumTill`` or ``DatumTill`` is
  9999-12-31; only current entries are used.
- Either protection marker (``Sekretessmarkering``, ``SkyddadFolkbokforing``), at the top or in
  the current ``Persondetaljer``, makes the record protected: it then carries no name, no address
  and no place of registration, even if the answer had some.
- An address that is ``None`` means "SPAR gave none", never "clear the stored address".
- Deregistration codes are SPAR's table (not in the schema); only the old one-letter ``A``
  (deceased) is read here. Death is otherwise read from ``Avlidendatum``/``AntraffadDodDatum``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from dynamics_bridge.personnummer import Personnummer
from dynamics_bridge.registry.spar_errors import (
    SparNotFoundError,
    SparTooManyHitsError,
    SparUndantagError,
)

__all__ = ["AddressRecord", "PersonName", "PostalAddress", "map_answer", "spar_date"]

#: SPAR's ``DatumTill`` for the entry that is valid now.
CURRENT_UNTIL = date(9999, 12, 31)

#: One-letter deregistration codes documented in the schema (older data); the two-letter table
#: comes from SPAR's term documentation at onboarding.
DECEASED_CODES = frozenset({"A"})

Status = Literal["active", "deceased", "emigrated", "deregistered"]


@dataclass(frozen=True, slots=True)
class PostalAddress:
    """One address as SPAR gives it. ``kind`` says which shape: Swedish (postcode and town) or
    international (up to three lines and a country; it may still be in Sweden)."""

    kind: Literal["swedish", "international"]
    lines: tuple[str, ...]
    care_of: str | None = None
    postal_code: str | None = None
    city: str | None = None
    country: str | None = None

    def label(self) -> list[str]:
        """The lines to print on an envelope."""
        out = [f"c/o {self.care_of}"] if self.care_of else []
        out.extend(self.lines)
        town = " ".join(part for part in (self.postal_code, self.city) if part)
        if town:
            out.append(town)
        if self.country:
            out.append(self.country)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "care_of": self.care_of,
            "lines": list(self.lines),
            "postal_code": self.postal_code,
            "city": self.city,
            "country": self.country,
        }


@dataclass(frozen=True, slots=True)
class PersonName:
    """The current name. ``given_name_code`` is SPAR's ``Tilltalsnamn``: a code (10-99) saying
    which first name is used, not a name."""

    first_names: str | None
    last_name: str | None
    middle_name: str | None = None
    addressing_name: str | None = None
    given_name_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "first_names": self.first_names,
            "middle_name": self.middle_name,
            "last_name": self.last_name,
            "addressing_name": self.addressing_name,
            "given_name_code": self.given_name_code,
        }


@dataclass(frozen=True, slots=True)
class AddressRecord:
    """What SPAR says about one person, shaped for the member columns an address job writes.

    For a protected person (``protected_identity``) every name, address and place field is
    ``None`` by rule: the job must then restrict the member, not clear or overwrite columns.
    Dates SPAR may give incompletely (``2019-01-00``, ``2019``) stay text; :func:`spar_date`
    turns a complete one into a ``date``.
    """

    requested: Personnummer
    personnummer: Personnummer
    id_type: str | None
    confidentiality_marked: bool
    protected_registration: bool
    marker_set_by_spar: bool
    protected_since: date | None
    name: PersonName | None
    registered_address: PostalAddress | None
    special_address: PostalAddress | None
    foreign_address: PostalAddress | None
    contact_address: PostalAddress | None
    county_code: str | None
    municipality_code: str | None
    deregistration_code: str | None
    deregistered_on: str | None
    deceased_on: str | None
    new_personnummer: Personnummer | None
    last_changed: date | None
    spar_uuid: str | None
    looked_up_at: datetime

    @property
    def protected_identity(self) -> bool:
        """Sekretessmarkering or skyddad folkbokföring: keep the person out of every outflow."""
        return self.confidentiality_marked or self.protected_registration

    @property
    def deceased(self) -> bool:
        return self.deceased_on is not None or self.deregistration_code in DECEASED_CODES

    @property
    def emigrated(self) -> bool:
        """SPAR gives an ``Utlandsadress`` only to persons deregistered as emigrated."""
        return self.foreign_address is not None

    @property
    def status(self) -> Status:
        if self.deceased:
            return "deceased"
        if self.emigrated:
            return "emigrated"
        if self.deregistration_code is not None or self.deregistered_on is not None:
            return "deregistered"
        return "active"

    @property
    def mailing_address(self) -> PostalAddress | None:
        """Where post goes: the special postal address when the person asked for one, then the
        registered, foreign or contact address."""
        return (
            self.special_address
            or self.registered_address
            or self.foreign_address
            or self.contact_address
        )

    def to_json(self, *, show_pnr: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; personnummer masked unless ``show_pnr``."""

        def pnr(value: Personnummer | None) -> str | None:
            if value is None:
                return None
            return value.digits if show_pnr else value.masked

        def addr(value: PostalAddress | None) -> dict[str, Any] | None:
            return value.to_json() if value else None

        return {
            "personnummer": pnr(self.personnummer),
            "requested": pnr(self.requested),
            "id_type": self.id_type,
            "status": self.status,
            "protected_identity": self.protected_identity,
            "confidentiality_marked": self.confidentiality_marked,
            "protected_registration": self.protected_registration,
            "marker_set_by_spar": self.marker_set_by_spar,
            "protected_since": _iso(self.protected_since),
            "name": self.name.to_json() if self.name else None,
            "mailing_address": addr(self.mailing_address),
            "registered_address": addr(self.registered_address),
            "special_address": addr(self.special_address),
            "foreign_address": addr(self.foreign_address),
            "contact_address": addr(self.contact_address),
            "county_code": self.county_code,
            "municipality_code": self.municipality_code,
            "deregistration_code": self.deregistration_code,
            "deregistered_on": self.deregistered_on,
            "deceased_on": self.deceased_on,
            "new_personnummer": pnr(self.new_personnummer),
            "last_changed": _iso(self.last_changed),
            "spar_uuid": self.spar_uuid,
            "looked_up_at": self.looked_up_at.isoformat(),
        }


def map_answer(
    answer: Mapping[str, Any], requested: Personnummer, *, looked_up_at: datetime
) -> AddressRecord:
    """The record for ``requested``, or the error the answer stands for.

    Raises:
        SparUndantagError: the answer is an ``Undantag``.
        SparTooManyHitsError: ``OverstigerMaxAntalSvarsposter``, or several records and none
            for the number asked.
        SparNotFoundError: no record.
    """
    uuid = _text(answer.get("UUID"))
    undantag = answer.get("Undantag")
    if undantag:
        raise SparUndantagError(
            _text(undantag.get("Kod")) or "?",
            _text(undantag.get("Beskrivning")) or "",
            request_id=uuid,
        )
    too_many = answer.get("OverstigerMaxAntalSvarsposter")
    if too_many:
        raise SparTooManyHitsError(
            int(too_many.get("AntalPoster") or 0),
            _int(too_many.get("MaxAntalSvarsposter")),
            request_id=uuid,
        )
    posts = [p for p in answer.get("PersonsokningSvarspost") or [] if p]
    if not posts:
        raise SparNotFoundError(f"SPAR has no person with {requested.masked}", request_id=uuid)
    exact = [p for p in posts if _post_id(p) == requested.digits]
    if len(exact) == 1:
        post = exact[0]
    elif len(posts) == 1:
        post = posts[0]  # asked by an old number: SPAR answers with the current one
    else:
        raise SparTooManyHitsError(len(posts), None, request_id=uuid)
    return _record(post, requested, uuid=uuid, looked_up_at=looked_up_at)


def spar_date(value: str | date | None) -> date | None:
    """A complete ``YYYY-MM-DD`` as a date; ``None`` for SPAR's incomplete forms."""
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


# --- one record -------------------------------------------------------------------------------


def _record(
    post: Mapping[str, Any], requested: Personnummer, *, uuid: str | None, looked_up_at: datetime
) -> AddressRecord:
    details = _current(post.get("Persondetaljer")) or {}
    confidential = _ja(post.get("Sekretessmarkering")) or _ja(details.get("Sekretessmarkering"))
    registration = _ja(post.get("SkyddadFolkbokforing")) or _ja(details.get("SkyddadFolkbokforing"))
    protected = confidential or registration
    since = _dates([post.get("SekretessDatum"), post.get("SkyddadFolkbokforingDatum")])
    place = None if protected else _current(post.get("Folkbokforing"))
    county = _text(place.get("FolkbokfordLanKod")) if place else None
    municipality = _text(place.get("FolkbokfordKommunKod")) if place else None
    person_id = post.get("PersonId") or {}
    return AddressRecord(
        requested=requested,
        personnummer=_pnr(_text(person_id.get("IdNummer"))) or requested,
        id_type=_text(person_id.get("Typ")),
        confidentiality_marked=confidential,
        protected_registration=registration,
        marker_set_by_spar=_attribute(post.get("Sekretessmarkering"), "sattAvSPAR") == "JA",
        protected_since=min(since) if since else None,
        name=None if protected else _name(_current(post.get("Namn"))),
        registered_address=None if protected else _address(post.get("Folkbokforingsadress")),
        special_address=None if protected else _address(post.get("SarskildPostadress")),
        foreign_address=None if protected else _address(post.get("Utlandsadress")),
        contact_address=None if protected else _address(post.get("Kontaktadress")),
        county_code=county,
        municipality_code=f"{county}{municipality}" if county and municipality else None,
        deregistration_code=_text(details.get("AvregistreringsorsakKod")),
        deregistered_on=_text(details.get("Avregistreringsdatum")),
        deceased_on=_text(details.get("Avlidendatum")) or _text(details.get("AntraffadDodDatum")),
        new_personnummer=_referral(details.get("Hanvisning"), "Till"),
        last_changed=spar_date(post.get("SenasteAndringSPAR")),
        spar_uuid=uuid,
        looked_up_at=looked_up_at,
    )


def _name(entry: Mapping[str, Any] | None) -> PersonName | None:
    if not entry:
        return None
    name = PersonName(
        first_names=_text(entry.get("Fornamn")),
        last_name=_text(entry.get("Efternamn")),
        middle_name=_text(entry.get("Mellannamn")),
        addressing_name=_text(entry.get("Aviseringsnamn")),
        given_name_code=_int(entry.get("Tilltalsnamn")),
    )
    return None if name == PersonName(None, None) else name


def _address(wrappers: Sequence[Mapping[str, Any]] | None) -> PostalAddress | None:
    """The current address among the wrappers (each holds a SvenskAdress or InternationellAdress,
    whose validity dates sit inside it)."""
    shaped: list[tuple[str, Mapping[str, Any]]] = []
    for wrapper in wrappers or []:
        if not wrapper:
            continue
        if wrapper.get("SvenskAdress"):
            shaped.append(("swedish", wrapper["SvenskAdress"]))
        elif wrapper.get("InternationellAdress"):
            shaped.append(("international", wrapper["InternationellAdress"]))
    current = [(kind, a) for kind, a in shaped if _is_current(a)]
    if not current:
        return None
    kind, a = current[-1]
    if kind == "swedish":
        address = PostalAddress(
            kind="swedish",
            care_of=_text(a.get("CareOf")),
            lines=_lines(a, "Utdelningsadress1", "Utdelningsadress2"),
            postal_code=_text(a.get("PostNr")),
            city=_text(a.get("Postort")),
        )
    else:
        address = PostalAddress(
            kind="international",
            lines=_lines(a, "Utdelningsadress1", "Utdelningsadress2", "Utdelningsadress3"),
            country=_text(a.get("Land")),
        )
    empty = not (address.lines or address.care_of or address.postal_code or address.city)
    return None if empty and not address.country else address


def _referral(references: Sequence[Mapping[str, Any]] | None, kind: str) -> Personnummer | None:
    for reference in references or []:
        if reference and _text(reference.get("Typ")) == kind:
            return _pnr(_text(reference.get("IdNummer")))
    return None


# --- small readers ----------------------------------------------------------------------------


def _current(entries: Sequence[Mapping[str, Any]] | None) -> Mapping[str, Any] | None:
    current = [e for e in entries or [] if e and _is_current(e)]
    return current[-1] if current else None


def _is_current(entry: Mapping[str, Any]) -> bool:
    until = entry.get("DatumTill")
    return until is None or spar_date(until) == CURRENT_UNTIL


def _post_id(post: Mapping[str, Any]) -> str | None:
    return _text((post.get("PersonId") or {}).get("IdNummer"))


def _pnr(digits: str | None) -> Personnummer | None:
    """SPAR's id numbers match ``[1-9][0-9]{11}``; kept as given (SPAR is the authority)."""
    if digits and len(digits) == 12 and digits.isdigit():
        return Personnummer(digits)
    return None


def _ja(value: Any) -> bool:
    if isinstance(value, Mapping):
        value = value.get("_value_1")
    return _text(value) == "JA"


def _attribute(value: Any, name: str) -> str | None:
    return _text(value.get(name)) if isinstance(value, Mapping) else None


def _lines(entry: Mapping[str, Any], *names: str) -> tuple[str, ...]:
    return tuple(line for line in (_text(entry.get(n)) for n in names) if line)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _dates(values: Sequence[Any]) -> list[date]:
    return [d for d in (spar_date(v) for v in values) if d is not None]


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None
