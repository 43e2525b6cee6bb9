"""A throwaway IAP signing key for tests: its public half as a key file, and assertions signed with it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.auth import jwt
from google.auth.crypt import es256

AUDIENCE = "/projects/123456/global/backendServices/987654"
ISSUER = "https://cloud.google.com/iap"


def _pem_pair() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


@dataclass
class IapKeys:
    key_id: str
    private_pem: str
    public_pem: str

    @classmethod
    def generate(cls, key_id: str = "test-key-1") -> "IapKeys":
        return cls(key_id, *_pem_pair())

    def write_public(self, folder: Path) -> str:
        """The file IAP_PUBLIC_KEYS_URL points at (`file:` URL), in IAP's kid → PEM format."""
        path = folder / "iap-keys.json"
        path.write_text(json.dumps({self.key_id: self.public_pem}))
        return f"file:{path}"

    def assertion(self, email: str = "alice@example.com", *, audience: str = AUDIENCE, issuer: str = ISSUER,
                  issued: float | None = None, lifetime: int = 600, private_pem: str | None = None) -> str:
        issued = int(time.time() if issued is None else issued)
        signer = es256.ES256Signer.from_string(private_pem or self.private_pem, self.key_id)
        claims = {"iss": issuer, "aud": audience, "email": f"accounts.google.com:{email}",
                  "sub": "accounts.google.com:1234", "iat": issued, "exp": issued + lifetime}
        return jwt.encode(signer, claims).decode()

    def forged(self, email: str = "mallory@example.com") -> str:
        """Same key id, signed by another key: a bad signature."""
        return self.assertion(email, private_pem=_pem_pair()[0])
