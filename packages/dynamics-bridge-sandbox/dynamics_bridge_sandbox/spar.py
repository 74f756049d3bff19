"""A local SPAR PersonSok responder: SOAP 1.1 over plain HTTP on 127.0.0.1, standard library only.

It answers ``PersonSok`` by ``IdNummer`` from a small directory of fictitious people, shaped by the
bridge's own contract (``registry/wsdl``, the 2021.1 shape): a request that does not fit the
schema gets a SOAP Fault (as SPAR answers ``000000000000``), a customer number or assignment it
was not set up with gets an ``Undantag``, an unknown number gets an answer with only a ``UUID``
(SPAR's "not found"). A protected person's answer carries the two markers and nothing else.

::

    with run_spar_responder() as spar:
        os.environ.update(spar.env)   # BRIDGE_SPAR__* pointing at it
        ...
        spar.lookups                  # IdNummer asked, in order

The people are made up: the numbers pass the Luhn check with serials 981-987 and belong to nobody
outside the sandbox.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

from dynamics_bridge.registry.spar_contract import SparContract
from dynamics_bridge.settings import SparSettings
from dynamics_bridge_sandbox.hosting import Answer, StandInServer

__all__ = [
    "NOT_FOUND",
    "ForeignAddress",
    "Person",
    "SparResponder",
    "demo_people",
    "run_spar_responder",
]

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_BASE = "http://statenspersonadressregister.se/schema"
_NS = {
    "svar": f"{_BASE}/personsok/2021.1/personsokningsvar",
    "sok": f"{_BASE}/komponent/sok/personsokningsokparametrar-1.1",
    "und": f"{_BASE}/komponent/sok/undantag-1.0",
    "person": f"{_BASE}/komponent/person/person-1.2",
    "skydd": f"{_BASE}/komponent/person/skyddadepersonuppgifter-1.1",
    "namn": f"{_BASE}/komponent/person/namn/namn-1.0",
    "dn": f"{_BASE}/komponent/person/namn/deladenamnelement-1.0",
    "pdt": f"{_BASE}/komponent/person/persondetaljer-1.2",
    "fb": f"{_BASE}/komponent/person/folkbokforing-1.0",
    "avreg": f"{_BASE}/komponent/person/avregistrering-1.0",
    "fba": f"{_BASE}/komponent/person/adress/folkbokforingsadress-1.1",
    "spa": f"{_BASE}/komponent/person/adress/sarskildpostadress-1.1",
    "ua": f"{_BASE}/komponent/person/adress/utlandsadress-1.1",
    "adr": f"{_BASE}/komponent/person/adress/deladeadresselement-1.1",
    "ident": f"{_BASE}/komponent/metadata/identifieringsinformationWs-1.1",
}

#: A valid personnummer that the default directory does not hold: SPAR's "not found".
NOT_FOUND = "197901019864"


@dataclass(frozen=True)
class ForeignAddress:
    lines: tuple[str, ...]
    country: str


@dataclass(frozen=True)
class Person:
    """One fictitious person as SPAR would hold them."""

    pnr: str
    first_name: str
    last_name: str
    street: str | None = None
    postal_code: str | None = None
    city: str | None = None
    special_street: str | None = None  # a special postal address (Box, c/o) in the same town
    special_care_of: str | None = None
    protected: bool = False
    deceased_on: str | None = None
    emigrated: ForeignAddress | None = None
    emigrated_on: str | None = None
    last_changed: str = "2026-01-15"
    municipality_code: str | None = None  # where registered: kommun, four digits, county first


def demo_people() -> list[Person]:
    """A handful: two ordinary, one protected identity, one deceased, one emigrated."""
    return [
        Person(
            "196503129816",
            "Anna",
            "Andersson",
            "Storgatan 1",
            "11122",
            "STOCKHOLM",
            municipality_code="0180",
        ),
        Person(
            "197206059821",
            "Bertil",
            "Berg",
            "Sjövägen 4 LGH 1002",
            "41301",
            "GÖTEBORG",
            municipality_code="1480",
            special_street="Box 77",
            special_care_of="Facket Väst",
        ),
        Person("195809199838", "Cecilia", "Carlsson", protected=True),
        Person(
            "194311229845",
            "David",
            "Dahl",
            "Ekvägen 9",
            "75320",
            "UPPSALA",
            municipality_code="0380",
            deceased_on="2026-10-02",
        ),
        Person(
            "198802279854",
            "Eva",
            "Ek",
            emigrated=ForeignAddress(("Storgata 12", "0155 OSLO"), "NORGE"),
            emigrated_on="2025-08-01",
        ),
    ]


def _el(parent: Any, prefix: str, name: str, text: str | None = None, **attrs: str) -> Any:
    element = etree.SubElement(parent, f"{{{_NS[prefix]}}}{name}", attrs or None)
    if text is not None:
        element.text = text
    return element


class SparResponder:
    """The directory and the request handling (no sockets: :func:`run_spar_responder` serves it).

    ``customer_number`` and ``assignment_id`` are what it is set up with (SPAR's
    ``KundNrSlutkund`` and ``UppdragId``); anything else gets an ``Undantag``."""

    def __init__(
        self,
        people: Iterable[Person] | None = None,
        *,
        customer_number: int = 500243,
        assignment_id: int = 637,
        contract: SparContract | None = None,
    ) -> None:
        self.people = {p.pnr: p for p in (demo_people() if people is None else people)}
        self.customer_number = customer_number
        self.assignment_id = assignment_id
        self.contract = contract or SparContract.from_paths()
        self.url = "http://127.0.0.1/personsok"
        self.lookups: list[str] = []
        self._lock = threading.Lock()

    @property
    def env(self) -> dict[str, str]:
        """The BRIDGE_SPAR__* settings that point the bridge at this responder."""
        return {
            "BRIDGE_SPAR__ENDPOINT": self.url,
            "BRIDGE_SPAR__CUSTOMER_NUMBER": str(self.customer_number),
            "BRIDGE_SPAR__ASSIGNMENT_ID": str(self.assignment_id),
            "BRIDGE_SPAR__END_USER_ID": "sandbox:address-refresh",
        }

    def settings(self) -> SparSettings:
        return SparSettings(
            endpoint=self.url,
            customer_number=self.customer_number,
            assignment_id=self.assignment_id,
            end_user_id="sandbox:address-refresh",
        )

    # -- answering ---------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """One request → one answer: a POSTed envelope gets an answer envelope (any path, as
        the endpoint setting names it); anything else a 405."""
        if method != "POST":
            return Answer(405, {"Allow": "POST"})
        status, envelope = self._answer(body)
        return Answer(status, {"Content-Type": "text/xml; charset=utf-8"}, envelope)

    def _answer(self, body: bytes) -> tuple[int, bytes]:
        parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
        try:
            question = etree.fromstring(body, parser).find(f"{{{SOAP_ENV}}}Body")[0]
        except (etree.XMLSyntaxError, TypeError, IndexError):
            return 500, _fault("soap:Client", "Felaktigt anrop: inget SOAP-meddelande")
        problems = self.contract.validate(question)
        if problems:
            return 500, _fault("soap:Client", "Anropet följer inte schemat: " + problems[0])
        values = {etree.QName(e).localname: (e.text or "") for e in question.iter()}
        svar = etree.Element(f"{{{_NS['svar']}}}SPARPersonsokningSvar", nsmap=_NS)
        if (
            int(values["KundNrSlutkund"]) != self.customer_number
            or int(values["UppdragId"]) != self.assignment_id
        ):
            undantag = _el(svar, "und", "Undantag")
            _el(undantag, "und", "Kod", "1")
            _el(undantag, "und", "Beskrivning", "Kunden saknar behörighet för uppdraget")
        else:
            pnr = values["IdNummer"]
            with self._lock:
                self.lookups.append(pnr)
            echo = _el(svar, "sok", "PersonsokningFraga")
            _el(echo, "person", "IdNummer", pnr)
            if (person := self.people.get(pnr)) is not None:
                _post(svar, person)
        _el(svar, "svar", "UUID", str(uuid.uuid4()))
        return 200, _envelope(svar)


def _post(svar: Any, p: Person) -> None:
    post = _el(svar, "svar", "PersonsokningSvarspost")
    ident = _el(post, "person", "PersonId")
    _el(ident, "person", "IdNummer", p.pnr)
    _el(ident, "person", "Typ", "PERSONNUMMER")
    _el(post, "skydd", "Sekretessmarkering", "JA" if p.protected else "NEJ")
    _el(post, "skydd", "SkyddadFolkbokforing", "NEJ")
    if p.protected:  # SPAR hands out nothing else about a protected person
        return
    _el(post, "person", "SenasteAndringSPAR", p.last_changed)
    name = _el(post, "namn", "Namn")
    _el(name, "dn", "Fornamn", p.first_name)
    _el(name, "dn", "Efternamn", p.last_name)
    if p.deceased_on or p.emigrated:
        details = _el(post, "pdt", "Persondetaljer")
        _el(details, "avreg", "AvregistreringsorsakKod", "AV" if p.deceased_on else "UV")
        if p.emigrated_on:
            _el(details, "avreg", "Avregistreringsdatum", p.emigrated_on)
        if p.deceased_on:
            _el(details, "avreg", "Avlidendatum", p.deceased_on)
    if p.municipality_code:
        place = _el(post, "fb", "Folkbokforing")
        _el(place, "fb", "FolkbokfordLanKod", p.municipality_code[:2])
        _el(place, "fb", "FolkbokfordKommunKod", p.municipality_code[2:])
    if p.street:
        registered = _el(_el(post, "fba", "Folkbokforingsadress"), "adr", "SvenskAdress")
        _el(registered, "adr", "Utdelningsadress2", p.street)
        _el(registered, "adr", "PostNr", p.postal_code)
        _el(registered, "adr", "Postort", p.city)
    if p.special_street:
        special = _el(_el(post, "spa", "SarskildPostadress"), "adr", "SvenskAdress")
        if p.special_care_of:
            _el(special, "adr", "CareOf", p.special_care_of)
        _el(special, "adr", "Utdelningsadress2", p.special_street)
        _el(special, "adr", "PostNr", p.postal_code)
        _el(special, "adr", "Postort", p.city)
    if p.emigrated:
        foreign = _el(_el(post, "ua", "Utlandsadress"), "adr", "InternationellAdress")
        for number, line in enumerate(p.emigrated.lines[:3], start=1):
            _el(foreign, "adr", f"Utdelningsadress{number}", line)
        _el(foreign, "adr", "Land", p.emigrated.country)


def _envelope(content: Any) -> bytes:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"S": SOAP_ENV})
    etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body").append(content)
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def _fault(code: str, text: str) -> bytes:
    fault = etree.Element(f"{{{SOAP_ENV}}}Fault", nsmap={"S": SOAP_ENV})
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = text
    return _envelope(fault)


@contextlib.contextmanager
def run_spar_responder(port: int = 0, **options: Any) -> Iterator[SparResponder]:
    """The responder on ``http://127.0.0.1:<port>/personsok`` (a free port by default) until the
    block ends; ``options`` go to :class:`SparResponder`."""
    with StandInServer(name="spar", port=port, no_delay=True) as server:
        responder = SparResponder(**options)
        responder.url = f"{server.url}/personsok"
        server.start(responder.handle)
        yield responder
