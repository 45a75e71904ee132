"""Google ID tokens for the sandbox, and what a probe needs to reach the emulated services.

Cloud Run services that require authentication accept ``Authorization: Bearer ID_TOKEN`` where
the token is an RS256 JWT signed by Google whose ``aud`` is the service URL
(https://cloud.google.com/run/docs/authenticating/service-to-service). On Cloud Run, Runback
gets one from ``google.oauth2.id_token.fetch_id_token``; in the sandbox the emulator mints them
at ``GET /_emulator/idtoken?audience=URL`` with its own RSA key, and the Cloud Run emulator
verifies them the way Google's front end does (signature, issuer, audience, expiry).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

from bot.sandbox.emulator.http import HttpError, Request, Response, Router, json_response


def _oauth_error(status: int, message: str) -> Response:
    """OAuth 2's error shape: ``{"error": "invalid_grant"}``."""
    return json_response({"error": message, "error_description": message}, status)


ISSUER = "https://accounts.google.com"
TOKEN_LIFETIME_S = 3600
SANDBOX_IDENTITY = "runback@runback-sandbox.iam.gserviceaccount.com"


class IdentityEmulator:
    """Mints and checks ID tokens; its RSA key is made on first use (emulators start often)."""

    def __init__(self) -> None:
        self.key_id = uuid.uuid4().hex
        self._keys: tuple[Any, bytes] | None = None
        self._access_tokens: set[str] = set()
        self._lock = threading.Lock()

    def _key(self) -> tuple[Any, bytes]:
        """(signer, public key PEM)."""
        with self._lock:
            if self._keys is None:
                from cryptography.hazmat.primitives import serialization
                from cryptography.hazmat.primitives.asymmetric import rsa
                from google.auth import crypt

                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                private_pem = key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                public_pem = key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                self._keys = (crypt.RSASigner.from_string(private_pem, self.key_id), public_pem)
            return self._keys

    def register(self, router: Router) -> None:
        router.add("GET", "/_emulator/idtoken", "_emulator.idtoken", self._mint_route)
        # What a laptop's gcloud ADC (an impersonated service account) calls: Google's OAuth 2
        # token endpoint for the user's refresh token, then IAM Credentials' generateIdToken.
        router.add("POST", "/token", "oauth2.token", self._oauth_token, _oauth_error)
        router.add(
            "POST",
            r"/v1/projects/-/serviceAccounts/(?P<email>[^/:]+):generateIdToken",
            "iamcredentials.generateIdToken",
            self._generate_id_token,
        )

    def _oauth_token(self, request: Request) -> Response:
        """``grant_type=refresh_token`` (an ``authorized_user``'s refresh): an access token."""
        form = parse_qs(request.body.decode(errors="replace"))
        if form.get("grant_type") != ["refresh_token"] or not form.get("refresh_token"):
            return _oauth_error(400, "invalid_grant")
        token = "ya29.sandbox-" + uuid.uuid4().hex
        with self._lock:
            self._access_tokens.add(token)
        return json_response({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _generate_id_token(self, request: Request) -> Response:
        """IAM Credentials ``generateIdToken``: an ID token of the service account for
        ``audience``, for a caller with an access token (roles/iam.serviceAccountTokenCreator)
        (https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateIdToken)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        with self._lock:
            known = scheme.lower() == "bearer" and token in self._access_tokens
        if not known:
            raise HttpError(401, "Request had invalid authentication credentials.")
        body = request.json()
        audience = str(body.get("audience") or "") if isinstance(body, dict) else ""
        if not audience:
            raise HttpError(400, "audience is required")
        return json_response({"token": self.mint(audience, request.params["email"])})

    def mint(self, audience: str, email: str = SANDBOX_IDENTITY) -> str:
        from google.auth import jwt

        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": audience,
            "sub": "1" + str(abs(hash(email)))[:20],
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
        }
        return jwt.encode(self._key()[0], claims).decode()

    def verify(self, authorization: str, audience: str) -> bool:
        """Whether the ``Authorization`` header carries a valid ID token for ``audience``."""
        from google.auth import exceptions, jwt

        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        try:
            claims = jwt.decode(token, certs={self.key_id: self._key()[1]}, audience=audience)
        except (exceptions.GoogleAuthError, ValueError):
            return False
        return claims.get("iss") == ISSUER

    def _mint_route(self, request: Request) -> Response:
        audience = request.arg("audience")
        if not audience:
            raise HttpError(400, "audience is required")
        return json_response({"id_token": self.mint(audience)})


# -- the bot's side, in emulator mode ---------------------------------------------------------
