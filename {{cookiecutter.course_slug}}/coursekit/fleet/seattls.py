"""Each seat VM's TLS certificate, for the key derived from COURSEKIT_SECRET (coursekit/keys.py).

A VM without a DNS name cannot get a public certificate. cloud-init hands the VM its derived key and a
self-signed certificate for it, and every call that carries the seat's token first checks that the VM
presents exactly that public key. Any machine with the secret can re-derive it; a VM that answers with
another key never sees the token.
"""
from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


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
