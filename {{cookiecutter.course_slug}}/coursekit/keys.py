"""Every key coursekit derives from COURSEKIT_SECRET, in this one module: HMAC-SHA256(secret, purpose slug ":" name).

Nothing is stored: any machine with the secret derives the same keys. Purposes: a Jupyter token (no prefix, so the
tokens of classes already deployed stay as they were) and a VM's TLS key ("tls:", a P-256 scalar). Names are seat
ids, or names no seat id can be (they hold a colon, as no slug or seat id does, so no two inputs collide).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

GATEWAY = ":gateway"  # a cloud gateway's token and TLS key
NO_SEAT = ":check"  # a credential that opens no seat (what `check` offers a lone seat as another's)
_TOKEN, _TLS = "", "tls:"
# The order of the P-256 group: a scalar must lie in [1, order - 1].
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _digest(secret: str, purpose: str, slug: str, name: str) -> bytes:
    # os.fsencode: a secret with bytes that are not UTF-8 (read from the environment) is used as those bytes.
    return hmac.new(os.fsencode(secret), f"{purpose}{slug}:{name}".encode(), hashlib.sha256).digest()


def token(secret: str, slug: str, name: str) -> str:
    """A Jupyter token: URL-safe base64 of HMAC-SHA256(secret, slug ':' name), 256 bits."""
    return base64.urlsafe_b64encode(_digest(secret, _TOKEN, slug, name)).rstrip(b"=").decode()


def tls_key(secret: str, slug: str, name: str) -> EllipticCurvePrivateKey:
    """A VM's TLS private key, from HMAC-SHA256(secret, 'tls:' slug ':' name) as a P-256 scalar."""
    from cryptography.hazmat.primitives.asymmetric import ec  # 50 ms to import: only commands that pin a VM pay it

    scalar = int.from_bytes(_digest(secret, _TLS, slug, name), "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def public_key_der(key: EllipticCurvePrivateKey) -> bytes:
    """The public half, as the bytes a certificate's SubjectPublicKeyInfo holds: what a client pins."""
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def certificate_public_key(der_certificate: bytes) -> bytes:
    """The SubjectPublicKeyInfo of a DER certificate, as a server presented it, to compare with a pinned key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return x509.load_der_x509_certificate(der_certificate).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
