"""Sandbox service-account keys and the check of the JWT google-auth sends to the token endpoint.

google-auth signs an RS256 JWT with the key file's private key and posts it to the key file's
`token_uri` (RFC 7523 JWT-bearer grant). The sandbox verifies it the way Google does: signature
against the public key it issued, issuer = the service account, audience = a token endpoint,
issued-at/expiry within a small skew and a lifetime of at most an hour.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

SANDBOX_CLIENT_EMAIL = "phonesync-sandbox@sandbox.iam.gserviceaccount.com"
#: google-auth puts Google's own token URL in `aud` whatever the key file's `token_uri` says;
#: Google accepts these, so the sandbox does too (plus its own URL).
GOOGLE_TOKEN_AUDIENCES = frozenset(
    {
        "https://oauth2.googleapis.com/token",
        "https://www.googleapis.com/oauth2/v4/token",
        "https://accounts.google.com/o/oauth2/token",
    }
)
CLOCK_SKEW_S = 300.0
MAX_LIFETIME_S = 3600.0


def make_service_account(
    token_uri: str, client_email: str = SANDBOX_CLIENT_EMAIL
) -> tuple[dict[str, str], RSAPublicKey]:
    """A fresh RSA key as a service-account key-file dict, and the public half to verify with.

    When the server's port is only known after it starts, set `key["token_uri"]` afterwards:
    the JWT does not depend on it.
    """
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key = {
        "type": "service_account",
        "project_id": "phonesync-sandbox",
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": client_email,
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    return key, private.public_key()


class GrantRejected(ValueError):
    """The JWT grant is not acceptable; the message is the OAuth `error_description`."""


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify_grant(
    assertion: str,
    public_key: RSAPublicKey,
    client_email: str,
    token_url: str,
    now: float | None = None,
) -> dict[str, Any]:
    """The claims of a valid JWT-bearer assertion; `GrantRejected` with Google's wording else."""
    try:
        head_b64, body_b64, sig_b64 = assertion.split(".")
        header = json.loads(_b64(head_b64))
        claims = json.loads(_b64(body_b64))
        signature = _b64(sig_b64)
    except ValueError:
        raise GrantRejected("Invalid JWT: malformed assertion") from None
    if not isinstance(header, dict) or header.get("alg") != "RS256" or not isinstance(claims, dict):
        raise GrantRejected("Invalid JWT: only RS256 is accepted")
    signed = f"{head_b64}.{body_b64}".encode()
    try:
        public_key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise GrantRejected("Invalid JWT Signature.") from None
    _check_claims(claims, client_email, token_url, time.time() if now is None else now)
    return claims


def _check_claims(claims: dict[str, Any], client_email: str, token_url: str, now: float) -> None:
    if claims.get("iss") != client_email:
        raise GrantRejected("Invalid JWT: unknown issuer")
    if claims.get("aud") not in GOOGLE_TOKEN_AUDIENCES | {token_url}:
        raise GrantRejected("Invalid JWT: audience is not a token endpoint")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int | float) or not isinstance(exp, int | float):
        raise GrantRejected("Invalid JWT: iat and exp are required")
    if iat > now + CLOCK_SKEW_S or exp < now - CLOCK_SKEW_S or exp - iat > MAX_LIFETIME_S:
        raise GrantRejected(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
            "timeframe. Check your iat and exp values in the JWT claim."
        )
