"""The sandbox's own certificate authority: msal only talks to https token endpoints.

A CA in a state directory is kept (with its key) and reused while it has days left, so a
``BRIDGE_DATAVERSE__CA_BUNDLE`` written once keeps working across restarts; the server
certificate is issued again under it whenever it runs short. A throwaway directory gives a
throwaway CA, as tests want.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["Certificates", "make_certificates"]

CA_DAYS = 365
SERVER_DAYS = 30
#: Below this much validity left a certificate is made again.
_MARGIN = dt.timedelta(days=1)


@dataclass(frozen=True)
class Certificates:
    """Paths: the CA certificate clients trust, the server's certificate and key."""

    ca: Path
    cert: Path
    key: Path


def make_certificates(directory: Path) -> Certificates:
    """The CA in ``directory`` (made when absent or about to expire) and a server certificate
    for 127.0.0.1 and localhost signed by it (made again when absent or about to expire)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    paths = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca_key_path = directory / "ca.key"
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dynamics_bridge sandbox CA")])
    ca_cert = _still_valid(paths.ca, now)
    if ca_cert is not None and ca_key_path.exists():
        loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ca_key_path}: not the sandbox CA's key; delete the directory")
        ca_key = loaded
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(ca_key_path, _pem_key(ca_key))
        paths.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        paths.cert.unlink(missing_ok=True)  # issued by the old CA
    server = _still_valid(paths.cert, now)
    if server is None or server.issuer != ca_cert.subject or not paths.key.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        server = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(min(now + dt.timedelta(days=SERVER_DAYS), ca_cert.not_valid_after_utc))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(paths.key, _pem_key(key))
        paths.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    return paths


def _still_valid(path: Path, now: dt.datetime) -> x509.Certificate | None:
    """The certificate at ``path`` when it exists, parses and has more than a day left."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    return cert if cert.not_valid_after_utc - now > _MARGIN else None


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    """Owner-only from the first byte: a key never sits world-readable."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
