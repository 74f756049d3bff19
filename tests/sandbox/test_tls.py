"""The sandbox CA is kept while it has days left, so a written CA bundle stays good."""

from __future__ import annotations

import stat

from cryptography import x509
from dynamics_bridge_sandbox import tls
from dynamics_bridge_sandbox.tls import make_certificates


def test_a_second_run_reuses_the_ca_and_the_server_certificate(tmp_path) -> None:
    first = make_certificates(tmp_path)
    ca, cert = first.ca.read_bytes(), first.cert.read_bytes()
    second = make_certificates(tmp_path)
    assert second == first
    assert (second.ca.read_bytes(), second.cert.read_bytes()) == (ca, cert)


def test_a_lost_server_certificate_is_issued_again_by_the_same_ca(tmp_path) -> None:
    first = make_certificates(tmp_path)
    ca = first.ca.read_bytes()
    old = first.cert.read_bytes()
    first.cert.unlink()
    again = make_certificates(tmp_path)
    assert again.ca.read_bytes() == ca
    new = x509.load_pem_x509_certificate(again.cert.read_bytes())
    assert again.cert.read_bytes() != old
    assert new.issuer == x509.load_pem_x509_certificate(ca).subject
    new.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))


def test_an_expiring_ca_is_replaced_with_its_server_certificate(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tls, "CA_DAYS", 0)  # valid until now: less than a day left
    first = make_certificates(tmp_path)
    ca, cert = first.ca.read_bytes(), first.cert.read_bytes()
    monkeypatch.setattr(tls, "CA_DAYS", 365)
    again = make_certificates(tmp_path)
    assert again.ca.read_bytes() != ca
    assert again.cert.read_bytes() != cert
    fresh_ca = x509.load_pem_x509_certificate(again.ca.read_bytes())
    x509.load_pem_x509_certificate(again.cert.read_bytes()).verify_directly_issued_by(fresh_ca)


def test_private_keys_are_readable_by_the_owner_only(tmp_path) -> None:
    made = make_certificates(tmp_path)
    for key in (made.key, tmp_path / "ca.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
