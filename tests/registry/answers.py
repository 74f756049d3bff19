"""PersonSok answers written by hand from the contract (reference soap.md §1.4 and the XSDs):
SOAP 1.1 envelopes around ``SPARPersonsokningSvar``, in the namespaces SPAR's 2021.1 schema uses.

Identity numbers are test numbers only: 191212121212 ("Tolvan"), 189001019802 (the first of
Skatteverket's published CC0 test set) and a few Luhn-valid 1950s numbers with serial 98x.
"""

from __future__ import annotations

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NS = {
    "svar": "http://statenspersonadressregister.se/schema/personsok/2021.1/personsokningsvar",
    "sok": "http://statenspersonadressregister.se/schema/komponent/sok/personsokningsokparametrar-1.1",
    "und": "http://statenspersonadressregister.se/schema/komponent/sok/undantag-1.0",
    "person": "http://statenspersonadressregister.se/schema/komponent/person/person-1.2",
    "skydd": "http://statenspersonadressregister.se/schema/komponent/person/skyddadepersonuppgifter-1.1",
    "namn": "http://statenspersonadressregister.se/schema/komponent/person/namn/namn-1.0",
    "dn": "http://statenspersonadressregister.se/schema/komponent/person/namn/deladenamnelement-1.0",
    "pdt": "http://statenspersonadressregister.se/schema/komponent/person/persondetaljer-1.2",
    "avreg": "http://statenspersonadressregister.se/schema/komponent/person/avregistrering-1.0",
    "fba": "http://statenspersonadressregister.se/schema/komponent/person/adress/folkbokforingsadress-1.1",
    "spa": "http://statenspersonadressregister.se/schema/komponent/person/adress/sarskildpostadress-1.1",
    "ua": "http://statenspersonadressregister.se/schema/komponent/person/adress/utlandsadress-1.1",
    "adr": "http://statenspersonadressregister.se/schema/komponent/person/adress/deladeadresselement-1.1",
}

TOLVAN = "191212121212"
PROTECTED = "189001019802"


def envelope(inner: str, *, uuid: str | None = "00000000-0000-4000-8000-0000000000aa") -> bytes:
    """An answer whose body holds ``inner`` (records, an Undantag, ...) then SPAR's UUID."""
    declarations = " ".join(f'xmlns:{p}="{u}"' for p, u in NS.items())
    tail = f"<svar:UUID>{uuid}</svar:UUID>" if uuid else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f'<S:Envelope xmlns:S="{SOAP_ENV}"><S:Body>'
        f"<svar:SPARPersonsokningSvar {declarations}>{inner}{tail}</svar:SPARPersonsokningSvar>"
        f"</S:Body></S:Envelope>"
    ).encode()


def post(
    pnr: str,
    *,
    secret: str = "NEJ",
    protected: str = "NEJ",
    secret_attribute: str = "",
    details: str = "",
    rest: str = "",
) -> str:
    """One ``PersonsokningSvarspost``: id, both markers (required), then ``details`` inside
    Persondetaljer and ``rest`` (name, addresses) in schema order."""
    persondetaljer = f"<pdt:Persondetaljer>{details}</pdt:Persondetaljer>" if details else ""
    return (
        "<svar:PersonsokningSvarspost>"
        f"<person:PersonId><person:IdNummer>{pnr}</person:IdNummer>"
        "<person:Typ>PERSONNUMMER</person:Typ></person:PersonId>"
        f"<skydd:Sekretessmarkering{secret_attribute}>{secret}</skydd:Sekretessmarkering>"
        f"<skydd:SkyddadFolkbokforing>{protected}</skydd:SkyddadFolkbokforing>"
        "<person:SenasteAndringSPAR>2024-03-01</person:SenasteAndringSPAR>"
        f"{_name(rest)}{persondetaljer}{_addresses(rest)}"
        "</svar:PersonsokningSvarspost>"
    )


def _name(rest: str) -> str:
    return rest.split("|", 1)[0] if "|" in rest else ""


def _addresses(rest: str) -> str:
    return rest.split("|", 1)[1] if "|" in rest else rest


NAME = (
    "<namn:Namn><dn:Fornamn>Tolvan</dn:Fornamn><dn:Efternamn>Tolvansson</dn:Efternamn></namn:Namn>"
)

REGISTERED = (
    "<fba:Folkbokforingsadress><adr:SvenskAdress>"
    "<adr:Utdelningsadress2>Exempelgatan 12 LGH 1101</adr:Utdelningsadress2>"
    "<adr:PostNr>11146</adr:PostNr><adr:Postort>STOCKHOLM</adr:Postort>"
    "</adr:SvenskAdress></fba:Folkbokforingsadress>"
)

SPECIAL = (
    "<spa:SarskildPostadress><adr:SvenskAdress>"
    "<adr:CareOf>Exempel AB</adr:CareOf><adr:Utdelningsadress2>Box 123</adr:Utdelningsadress2>"
    "<adr:PostNr>10005</adr:PostNr><adr:Postort>STOCKHOLM</adr:Postort>"
    "</adr:SvenskAdress></spa:SarskildPostadress>"
)

FOREIGN = (
    "<ua:Utlandsadress><adr:InternationellAdress>"
    "<adr:Utdelningsadress1>12 Example Road</adr:Utdelningsadress1>"
    "<adr:Utdelningsadress2>LONDON SW1A 1AA</adr:Utdelningsadress2>"
    "<adr:Land>STORBRITANNIEN</adr:Land>"
    "</adr:InternationellAdress></ua:Utlandsadress>"
)


def found(pnr: str = TOLVAN, *, special: bool = False) -> bytes:
    return envelope(post(pnr, rest=f"{NAME}|{REGISTERED}{SPECIAL if special else ''}"))


def protected_identity(pnr: str = PROTECTED) -> bytes:
    return envelope(post(pnr, secret="JA"))


def not_found() -> bytes:
    return envelope("")


def deceased(pnr: str = TOLVAN) -> bytes:
    details = (
        "<avreg:AvregistreringsorsakKod>AV</avreg:AvregistreringsorsakKod>"
        "<avreg:Avlidendatum>2025-02-03</avreg:Avlidendatum>"
    )
    return envelope(post(pnr, details=details, rest=f"{NAME}|{REGISTERED}"))


def emigrated(pnr: str = TOLVAN) -> bytes:
    details = (
        "<avreg:AvregistreringsorsakKod>UV</avreg:AvregistreringsorsakKod>"
        "<avreg:Avregistreringsdatum>2024-06-30</avreg:Avregistreringsdatum>"
    )
    return envelope(post(pnr, details=details, rest=f"{NAME}|{FOREIGN}"))


def deregistered(pnr: str = TOLVAN, code: str = "OB") -> bytes:
    details = (
        f"<avreg:AvregistreringsorsakKod>{code}</avreg:AvregistreringsorsakKod>"
        "<avreg:Avregistreringsdatum>2023-01-15</avreg:Avregistreringsdatum>"
    )
    return envelope(post(pnr, details=details, rest=NAME + "|"))


def undantag(code: str = "1", text: str = "Felaktigt kundnummer") -> bytes:
    return envelope(
        f"<und:Undantag><und:Kod>{code}</und:Kod><und:Beskrivning>{text}</und:Beskrivning>"
        "</und:Undantag>"
    )


def too_many(hits: int = 250, limit: int = 100) -> bytes:
    return envelope(
        "<und:OverstigerMaxAntalSvarsposter>"
        f"<und:AntalPoster>{hits}</und:AntalPoster>"
        f"<und:MaxAntalSvarsposter>{limit}</und:MaxAntalSvarsposter>"
        "</und:OverstigerMaxAntalSvarsposter>"
    )


def fault(code: str = "soap:Client", text: str = "Ogiltigt IdNummer 000000000000") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><S:Envelope xmlns:S="{SOAP_ENV}" '
        'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><S:Fault>'
        f"<faultcode>{code}</faultcode><faultstring>{text}</faultstring>"
        "</S:Fault></S:Body></S:Envelope>"
    ).encode()
