"""A self-signed CA certificate, as both CAs of kontainers make it (the local control plane's,
`kontainers.cluster.pki`, and the egress proxy's, `kontainers.egress.ca`)."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
)


def self_signed_ca(
    key: CertificateIssuerPrivateKeyTypes,
    name: x509.Name,
    *,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    path_length: int | None = None,
) -> x509.Certificate:
    """A CA certificate for `key`, allowed to sign certificates and CRLs and nothing else."""
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
