"""The local cluster's PKI, generated once per `.dev/`, the way envtest does it.

One CA signs the API server's serving certificate, the node agent's serving
certificate (the API server verifies it when it proxies `kubectl logs`) and one
client certificate per identity (admin, controller-manager, scheduler, the API
server's kubelet client). Service-account tokens are signed by their own key pair.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)
LOOPBACK = ipaddress.ip_address("127.0.0.1")
SERVICE_IP = ipaddress.ip_address("10.0.0.1")  # first address of --service-cluster-ip-range

# identity name -> (common name, organisations). RBAC's bootstrap policy knows these users.
CLIENTS = {
    "admin": ("supercheck-admin", ["system:masters"]),
    "controller-manager": ("system:kube-controller-manager", []),
    "scheduler": ("system:kube-scheduler", []),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ["system:masters"]),
    # The node agent acts with admin rights: it is a test stand-in, not a hardened kubelet.
    "node-agent": ("supercheck-node-agent", ["system:masters"]),
    # The aggregation layer's proxy identity; configured so components find a requestheader CA.
    "front-proxy-client": ("front-proxy-client", []),
}
SERVERS = {
    "apiserver": [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ],
    "node-agent-serving": ["localhost"],
}


@dataclass(frozen=True)
class Pki:
    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(cn: str, orgs: list[str] | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs or []]
    return x509.Name(attrs + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def ensure_pki(pki: Pki) -> Pki:
    """Create whatever is missing; existing material is kept so restarts keep trusting it."""
    pki.dir.mkdir(parents=True, exist_ok=True)
    if not pki.ca_cert.exists():
        new_ca_key = _key()
        ca_name = _name("supercheck-local-ca")
        ca = (
            _builder(ca_name, ca_name, new_ca_key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(new_ca_key, hashes.SHA256())
        )
        _write_key(pki.key("ca"), new_ca_key)
        pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    # The CA key on disk is the EC key written above.
    ca_key = cast(ec.EllipticCurvePrivateKey, serialization.load_pem_private_key(pki.key("ca").read_bytes(), None))
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())

    def issue(name: str, subject: x509.Name, usage, sans: list[x509.GeneralName] | None) -> None:
        if pki.cert(name).exists():
            return
        key = _key()
        builder = (
            _builder(subject, ca.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        _write_key(pki.key(name), key)
        pki.cert(name).write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))

    for name, dns_names in SERVERS.items():
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(LOOPBACK), x509.IPAddress(SERVICE_IP)]
        issue(name, _name(name), ExtendedKeyUsageOID.SERVER_AUTH, sans)
    for name, (cn, orgs) in CLIENTS.items():
        issue(name, _name(cn, orgs), ExtendedKeyUsageOID.CLIENT_AUTH, None)

    if not pki.sa_key.exists():
        sa = _key()
        _write_key(pki.sa_key, sa)
        pki.sa_pub.write_bytes(
            sa.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return pki
