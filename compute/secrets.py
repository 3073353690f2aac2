"""Encryption of stored cloud passwords (CloudCredential.password_encrypted).

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`). The key is
`settings.TEACHCLOUD_CREDENTIALS_KEY` (a Fernet key: `python -c "from cryptography.fernet import
Fernet; print(Fernet.generate_key().decode())"`) or, when that is empty, derived from
`settings.SECRET_KEY`. Keys derived from `SECRET_KEY_FALLBACKS` still decrypt, so rotating the
secret key does not lose the stored password (save the credential again to re-encrypt it).
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.utils.translation import gettext as _

_CONTEXT = b"teachcloud.compute.secrets/v1:"


class SecretError(ValueError):
    """The stored value cannot be decrypted with the configured keys."""


def _derived(secret: str) -> bytes:
    digest = hashlib.sha256(_CONTEXT + secret.encode()).digest()
    return base64.urlsafe_b64encode(digest)


def _keys() -> list[bytes]:
    keys: list[bytes] = []
    explicit = getattr(settings, "TEACHCLOUD_CREDENTIALS_KEY", "") or ""
    if explicit:
        keys.append(explicit.encode() if isinstance(explicit, str) else explicit)
    keys.append(_derived(settings.SECRET_KEY))
    keys.extend(_derived(old) for old in getattr(settings, "SECRET_KEY_FALLBACKS", []) or [])
    return keys


def _fernet() -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in _keys()])
    except ValueError as exc:
        raise SecretError(
            _("TEACHCLOUD_CREDENTIALS_KEY is not a valid Fernet key: %(error)s") % {"error": exc}
        ) from exc


def encrypt(text: str) -> str:
    """Encrypt `text` with the first key; returns an ASCII token."""
    return _fernet().encrypt(text.encode()).decode("ascii")


def decrypt(token: str) -> str:
    """Decrypt a token made by `encrypt` (with any configured key)."""
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as exc:
        raise SecretError(
            _(
                "The stored cloud password cannot be decrypted (was SECRET_KEY or "
                "TEACHCLOUD_CREDENTIALS_KEY changed?). Enter the password again."
            )
        ) from exc
