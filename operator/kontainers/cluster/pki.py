"""Certificates and keys of the local control plane: one CA, a serving cert, client certs.

ECDSA P-256 everywhere: generating a key takes microseconds (RSA takes tens of milliseconds),
and every component, kubectl and Python's ssl accept it. Files are reused when present, so a
restarted control plane keeps its identities and the service-account tokens stay valid.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kontainers.x509ca import self_signed_ca

VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def _write_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return key


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


class CertificateAuthority:
    """A CA in `directory` (`<stem>.crt`/`<stem>.key`), created on first use."""

    def __init__(self, directory: Path, stem: str = "ca", common_name: str = "kontainers-local-ca") -> None:
        self.directory, self.common_name = directory, common_name
        directory.mkdir(parents=True, exist_ok=True)
        self.cert_path, self.key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        if self.cert_path.exists() and self.key_path.exists():
            self._key = _load_key(self.key_path)
            self._cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        else:
            self._key = _write_key(self.key_path)
            self._cert = self._self_signed()
            self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def _self_signed(self) -> x509.Certificate:
        now = datetime.datetime.now(datetime.timezone.utc)
        return self_signed_ca(self._key, _name(self.common_name), not_before=now - datetime.timedelta(minutes=5),
                              not_after=now + 10 * VALIDITY)

    def issue(
        self,
        stem: str,
        common_name: str,
        *,
        organizations: tuple[str, ...] = (),
        dns_names: tuple[str, ...] = (),
        ip_addresses: tuple[str, ...] = (),
        server: bool = False,
    ) -> CertPair:
        """Write `<stem>.crt`/`<stem>.key` signed by the CA, unless they already exist."""
        pair = CertPair(self.directory / f"{stem}.crt", self.directory / f"{stem}.key")
        if pair.cert.exists() and pair.key.exists():
            return pair
        key = _write_key(pair.key)
        now = datetime.datetime.now(datetime.timezone.utc)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organizations))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
        )
        alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return pair


def service_account_keys(directory: Path) -> CertPair:
    """The key pair that signs service-account tokens (sa.key, and sa.pub to verify them)."""
    pair = CertPair(directory / "sa.pub", directory / "sa.key")
    if not (pair.cert.exists() and pair.key.exists()):
        key = _write_key(pair.key)
        pair.cert.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return pair
