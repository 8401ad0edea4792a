"""Certificates for TLS tests, made with `cryptography`: a hospital CA, the engine's
certificate, a client certificate from that CA, and one from another CA that must be refused."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        alt = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


@dataclass(frozen=True)
class Material:
    folder: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # from another CA
    stranger_key: Path


def _write(
    folder: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def make_material(folder: Path) -> Material:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, other_key = _key(), _key()
    ca = _cert("Hospital CA", ca_key, None, ca=True)
    other = _cert("Other CA", other_key, None, ca=True)
    ca_path, _ = _write(folder, "hospital-ca", ca, ca_key)
    s_key, c_key, x_key = _key(), _key(), _key()
    server = _write(folder, "engine", _cert("mch-engine", s_key, (ca, ca_key), server=True), s_key)
    client = _write(folder, "his", _cert("his-sender", c_key, (ca, ca_key)), c_key)
    stranger = _write(folder, "stranger", _cert("stranger", x_key, (other, other_key)), x_key)
    return Material(folder, ca_path, *server, *client, *stranger)


def renew_server(material: Material, subject: str) -> None:
    """A new key and certificate for the engine, from the same CA, written over the old files."""
    ca = x509.load_pem_x509_certificate(material.ca.read_bytes())
    ca_key = serialization.load_pem_private_key((material.folder / "hospital-ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    _write(material.folder, "engine", _cert(subject, key, (ca, ca_key), server=True), key)
