"""The per-install CA that signs the certificates the proxy shows to sandboxes.

It lives in the Secret `kontainers-egress-ca` (type kubernetes.io/tls, keys tls.crt/tls.key) in the
proxy's namespace; the first proxy replica to start creates it, the others (and restarts) read it,
so every replica presents certificates from the same CA. Its public certificate is also published
in the ConfigMap `kontainers-egress-ca` (key ca.crt, with the proxy's address under proxy-url),
which the operator copies next to each allowlist sandbox — the private key never leaves the
proxy's namespace.

At start the proxy writes the pair into mitmproxy's confdir under the names mitmproxy looks for.
"""

from __future__ import annotations

import base64
import datetime
import logging
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from kontainers.x509ca import self_signed_ca

logger = logging.getLogger(__name__)

CA_CERT_KEY = "ca.crt"
PROXY_URL_KEY = "proxy-url"  # where sandboxes reach the proxy (EgressSettings.advertise_url)
PUBLISHED_NAME = "kontainers-egress-ca"  # the ConfigMap the operator reads: a fixed name
MITM_BASENAME = "mitmproxy"  # mitmproxy's confdir looks for <basename>-ca.pem


def generate_ca(common_name: str = "kontainers egress CA", days: int = 3650) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) of a new self-signed CA, restricted to signing certs."""
    # RSA because mitmproxy signs every leaf with the CA key and some TLS stacks still dislike EC CAs.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kontainers"),
    ])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = self_signed_ca(key, name, not_before=now - datetime.timedelta(days=1),
                          not_after=now + datetime.timedelta(days=days), path_length=0)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_confdir(confdir: Path, cert_pem: bytes, key_pem: bytes) -> Path:
    """Install the CA into mitmproxy's confdir (key readable by this user only); returns the cert path."""
    confdir.mkdir(parents=True, exist_ok=True)
    bundle = confdir / f"{MITM_BASENAME}-ca.pem"
    fd = os.open(bundle, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem + cert_pem)
    cert_file = confdir / f"{MITM_BASENAME}-ca-cert.pem"
    cert_file.write_bytes(cert_pem)
    return cert_file


def local_ca(confdir: Path) -> tuple[bytes, bytes]:
    """The CA kept in confdir (made on first use): for runs without Kubernetes."""
    bundle = confdir / f"{MITM_BASENAME}-ca.pem"
    if bundle.exists():
        raw = bundle.read_bytes()
        key = serialization.load_pem_private_key(raw, None)
        cert = x509.load_pem_x509_certificates(raw)[0]
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem
    return generate_ca()


async def ensure_in_cluster(
    api_client, namespace: str, name: str, proxy_url: str | None = None
) -> tuple[bytes, bytes]:
    """Read the CA Secret, creating it on first start; publish the public cert (and the proxy's
    address) in the ConfigMap `kontainers-egress-ca`.

    Two replicas starting together may both try to create it: the loser gets 409 and reads the
    winner's, so there is always exactly one CA.
    """
    from kubernetes_asyncio import client
    from kubernetes_asyncio.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    try:
        secret = await core.read_namespaced_secret(name, namespace)
    except ApiException as error:
        if error.status != 404:
            raise
        cert_pem, key_pem = generate_ca()
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name, labels={"app.kubernetes.io/managed-by": "kontainers",
                                   "app.kubernetes.io/component": "egress"},
            ),
            type="kubernetes.io/tls",
            data={
                "tls.crt": base64.b64encode(cert_pem).decode(),
                "tls.key": base64.b64encode(key_pem).decode(),
            },
        )
        try:
            await core.create_namespaced_secret(namespace, body)
            logger.info("created the egress CA Secret", extra={"secret": f"{namespace}/{name}"})
        except ApiException as create_error:
            if create_error.status != 409:
                raise
        secret = await core.read_namespaced_secret(name, namespace)
    cert_pem = base64.b64decode(secret.data["tls.crt"])
    key_pem = base64.b64decode(secret.data["tls.key"])
    await _publish(core, namespace, cert_pem, proxy_url)
    return cert_pem, key_pem


async def _publish(core, namespace: str, cert_pem: bytes, proxy_url: str | None) -> None:
    from kubernetes_asyncio import client
    from kubernetes_asyncio.client.exceptions import ApiException

    data = {CA_CERT_KEY: cert_pem.decode()}
    if proxy_url:
        data[PROXY_URL_KEY] = proxy_url
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(
            name=PUBLISHED_NAME, labels={"app.kubernetes.io/managed-by": "kontainers",
                                         "app.kubernetes.io/component": "egress"},
        ),
        data=data,
    )
    try:
        await core.create_namespaced_config_map(namespace, body)
    except ApiException as error:
        if error.status != 409:
            raise
        await core.replace_namespaced_config_map(PUBLISHED_NAME, namespace, body)
