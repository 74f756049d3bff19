"""The PersonSok contract on disk: where its files are, how they load offline, how to validate.

SPAR's WSDL includes its two top schemas by absolute URL under
``http://xmls.statenspersonadressregister.se/se/spar/``; every other import is relative. The
folders mirror that URL tree (as SPAR's Java reference does with an XML catalog), so one rule
serves zeep and lxml alike: that URL prefix maps to ``schema_root``, local files must sit under
``schema_root`` or the WSDL's folder, and any other load is refused. Nothing is ever fetched.

zeep enforces required elements but no facets (it sends ``IdNummer="abc"``), so requests are
also validated with lxml against the schema the WSDL declares for them
(:meth:`SparContract.validate`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import requests
from lxml import etree
from zeep.transports import Transport

from dynamics_bridge.errors import ConfigError
from dynamics_bridge.personnummer import mask_text
from dynamics_bridge.registry.spar_errors import http_error

__all__ = ["BUNDLED_WSDL", "SPAR_SCHEMA_URL", "SparContract"]

#: The URL prefix SPAR's WSDL uses for its schemas; it maps to the contract's ``schema_root``.
SPAR_SCHEMA_URL = "http://xmls.statenspersonadressregister.se/se/spar/"

#: The bridge's own contract of the 2021.1 shape, for the demo and tests (not SPAR's file).
BUNDLED_WSDL = (
    Path(__file__).resolve().parent
    / "wsdl"
    / "granssnitt"
    / "personsok"
    / "2021.1"
    / "personsok.wsdl"
)

_WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
_SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_XSD_NS = "http://www.w3.org/2001/XMLSchema"


@dataclass(frozen=True)
class SparContract:
    """A WSDL and the folder its ``SPAR_SCHEMA_URL`` imports resolve to."""

    wsdl_path: Path
    schema_root: Path
    _schemas: dict[str, etree.XMLSchema] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def from_paths(
        cls, wsdl_path: str | Path | None = None, schema_root: str | Path | None = None
    ) -> SparContract:
        """Check the files exist; an unset WSDL means the bundled one, an unset root is derived
        from SPAR's layout (``<root>/granssnitt/personsok/<version>/personsok.wsdl``)."""
        wsdl = Path(wsdl_path).expanduser().resolve() if wsdl_path else BUNDLED_WSDL
        if not wsdl.is_file():
            raise ConfigError(f"BRIDGE_SPAR__WSDL_PATH: no file at {wsdl}")
        if schema_root:
            root = Path(schema_root).expanduser().resolve()
        elif len(wsdl.parents) > 3 and wsdl.parents[2].name == "granssnitt":
            root = wsdl.parents[3]
        else:
            root = wsdl.parent
        if not root.is_dir():
            raise ConfigError(f"BRIDGE_SPAR__SCHEMA_ROOT: no folder at {root}")
        return cls(wsdl, root)

    # --- loading, offline only ---------------------------------------------------------------

    def resolve(self, url: str) -> Path:
        """The local file for a URL or path the WSDL or a schema refers to; refuses the rest."""
        if url.startswith(SPAR_SCHEMA_URL):
            return self._inside(self.schema_root / unquote(url[len(SPAR_SCHEMA_URL) :]), url)
        parsed = urlparse(url)
        if parsed.scheme == "file":
            return self._inside(Path(unquote(parsed.path)), url)
        if len(parsed.scheme) > 1:  # any remote scheme (a one-letter "scheme" is a drive)
            raise ConfigError(
                f"SPAR contract: refusing to load {url}: schemas are read from "
                f"{self.schema_root} only (nothing is fetched)"
            )
        return self._inside(Path(url), url)

    def _inside(self, path: Path, url: str) -> Path:
        resolved = path.expanduser().resolve()
        allowed = (self.schema_root, self.wsdl_path.parent)
        if not any(resolved.is_relative_to(folder) for folder in allowed):
            raise ConfigError(f"SPAR contract: refusing {url}: outside {self.schema_root}")
        if not resolved.is_file():
            raise ConfigError(f"SPAR contract: {url} needs {resolved}, which does not exist")
        return resolved

    def read(self, url: str) -> bytes:
        return self.resolve(url).read_bytes()

    def transport(self, session: requests.Session, *, timeout: float) -> Transport:
        """A zeep transport over ``session`` that loads the contract from disk only."""
        return _LocalContractTransport(self, session=session, operation_timeout=timeout)

    # --- validation with lxml ----------------------------------------------------------------

    def schema_for(self, namespace: str) -> etree.XMLSchema:
        """The schema the WSDL declares for ``namespace`` (built once, imports resolved here)."""
        if namespace not in self._schemas:
            self._schemas[namespace] = self._build_schema(namespace)
        return self._schemas[namespace]

    def validate(self, element: Any) -> list[str]:
        """Problems of one body element against its schema, without the values (which may be a
        personnummer); empty when valid."""
        schema = self.schema_for(etree.QName(element).namespace or "")
        if schema.validate(element):
            return []
        return [_describe(error.message) for error in schema.error_log]

    def _parser(self) -> etree.XMLParser:
        parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
        parser.resolvers.add(_LocalContractResolver(self))
        return parser

    def _build_schema(self, namespace: str) -> etree.XMLSchema:
        parser = self._parser()
        wsdl = etree.parse(str(self.wsdl_path), parser)
        for schema in wsdl.getroot().iterfind(f"{{{_WSDL_NS}}}types/{{{_XSD_NS}}}schema"):
            if schema.get("targetNamespace") != namespace:
                continue
            # The inline schema as a document of its own, based at the WSDL for relative paths.
            source = etree.tostring(schema)
            try:
                return etree.XMLSchema(
                    etree.fromstring(source, parser, base_url=str(self.wsdl_path))
                )
            except (etree.XMLSchemaParseError, etree.XMLSyntaxError) as exc:
                raise ConfigError(f"SPAR contract {self.wsdl_path}: {exc}") from None
        raise ConfigError(f"SPAR contract {self.wsdl_path}: no schema for {namespace}")


class _LocalContractTransport(Transport):
    """zeep's transport with every load served by :meth:`SparContract.read`.

    It also stops an HTTP failure that is not a SOAP Fault (a proxy's 503 page, a 403) before
    zeep reads its body: zeep would call any XML without a Fault an "Unknown fault".
    """

    def __init__(self, contract: SparContract, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._contract = contract

    def load(self, url: str) -> bytes:
        if not url:
            raise ValueError("No url given to load")
        return self._contract.read(url)

    def post(self, address: str, message: Any, headers: Any) -> requests.Response:
        response = super().post(address, message, headers)
        if response.status_code == 500 and _is_fault(response.content):
            return response
        error = http_error(response.status_code)
        if error is not None:
            raise error
        return response


def _is_fault(body: bytes) -> bool:
    """A SOAP 1.1 envelope whose body is a Fault."""
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError:
        return False
    return root.find(f"{{{_SOAP_ENV}}}Body/{{{_SOAP_ENV}}}Fault") is not None


class _LocalContractResolver(etree.Resolver):
    """lxml's side of the same rule, for ``xsd:include``/``xsd:import`` while validating."""

    def __init__(self, contract: SparContract) -> None:
        super().__init__()
        self._contract = contract

    def resolve(self, system_url: str, public_id: str, context: Any) -> Any:
        return self.resolve_filename(str(self._contract.resolve(system_url)), context)


def _describe(message: str) -> str:
    """lxml's message with element names and the facet kept and every value dropped:
    ``Element '{ns}IdNummer': [facet 'pattern'] The value 'x' is not accepted by the pattern
    '[1-9]...'`` -> ``Element 'IdNummer': [facet pattern] The value '…' is not accepted by the
    pattern '…'``."""
    text = re.sub(r"\[facet '(\w+)'\]", r"[facet \1]", message)
    text = re.sub(r"'[^']*'", lambda m: m[0] if m[0].startswith("'{") else "'…'", text)
    return mask_text(re.sub(r"\{[^}]*\}", "", text))
