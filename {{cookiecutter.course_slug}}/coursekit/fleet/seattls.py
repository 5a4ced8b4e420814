"""Each seat VM's TLS identity, derived from COURSEKIT_SECRET, so the deploy can pin it without storing anything.

A VM without a DNS name cannot get a public certificate. Its key is instead derived per seat
(HMAC-SHA256(secret, "tls:" slug ":" seat), as a P-256 scalar); cloud-init hands the VM that key and a
self-signed certificate for it, and every call that carries the seat's token first checks that the VM
presents exactly that public key. Any machine with the secret can re-derive it; a VM that answers with
another key never sees the token.
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# The order of the P-256 group: a scalar must lie in [1, order - 1].
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def seat_key(secret: str, slug: str, seat: str) -> ec.EllipticCurvePrivateKey:
    """The seat's private key: the same on every machine that holds the secret."""
    # ':' occurs in no slug or seat id, and tokens hash "slug:seat" without the "tls:" prefix.
    digest = hmac.new(os.fsencode(secret), f"tls:{slug}:{seat}".encode(), hashlib.sha256).digest()
    return ec.derive_private_key(int.from_bytes(digest, "big") % (_P256_ORDER - 1) + 1, ec.SECP256R1())


def public_key_der(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The public half, as the bytes a certificate's SubjectPublicKeyInfo holds."""
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def certificate_public_key(der_certificate: bytes) -> bytes:
    """The SubjectPublicKeyInfo of a DER certificate, as a server presented it."""
    return x509.load_der_x509_certificate(der_certificate).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def seat_certificate(key: ec.EllipticCurvePrivateKey, seat: str, address: str) -> tuple[str, str]:
    """(certificate PEM, key PEM) for the VM at address: self-signed, valid for years; clients check only its key.
    The address is its subject alternative name, so Caddy serves it for that site rather than making its own."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"coursekit seat {seat}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()
