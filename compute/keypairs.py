"""SSH key pairs: users register their public keys in the portal; a VM boots with one of them.

Nova key pairs belong to the Nova user, and the portal boots every VM as one service account,
so a user's key reaches Nova under a derived name owned by that account
(`TEACHCLOUD_COMPUTE_NAME_PREFIX` + `u<user id>-k<key pair id>`, e.g. `tc-u12-k34`): the build
task ensures it (created, or replaced when it holds another key) right before the boot, outside
any transaction. The derived name uses the key pair's id rather than its portal name because
Nova (microversion ≤ 2.91) accepts only ASCII letters, digits, spaces, `_` and `-` in key pair
names, while portal names may use any script; the id also keeps a deleted and re-added key of
the same name apart from the old one.

Rules decided here:
- A name is 1–64 letters (any script), digits, spaces, `.`, `@`, `-` or `_`, unique per user
  (409 `key_name_taken`).
- A public key is one line in OpenSSH format: `ssh-ed25519`, `ssh-rsa` (at least 2048 bits) or
  `ecdsa-sha2-nistp256/384/521`, its base64 blob (which must decode and name the same type),
  and an optional comment. A private key is refused with a pointer to the .pub file.
- The fingerprint is what `ssh-keygen -l` shows: `SHA256:` + unpadded base64 of the SHA-256 of
  the key blob.
- A user sees and deletes only their own key pairs (platform staff included: a key is not theirs
  to use). Deleting one removes it from the cloud after commit; servers already booted with it
  keep the key inside the VM.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import struct
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from compute.models import KeyPair
from teachcloud.errors import Conflict, ServiceError
from tenancy.audit import audit_record
from tenancy.permissions import Action, require

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"[\w .@-]{1,64}")  # \w is Unicode: letters of any script, digits, _
MAX_PUBLIC_KEY = 16_000
MIN_RSA_BITS = 2048
KEY_TYPES = {
    "ssh-ed25519": None,
    "ssh-rsa": None,
    "ecdsa-sha2-nistp256": "nistp256",
    "ecdsa-sha2-nistp384": "nistp384",
    "ecdsa-sha2-nistp521": "nistp521",
}
PRIVATE_MARKERS = ("PRIVATE KEY", "PuTTY-User-Key-File", "OPENSSH PRIVATE")


@dataclass(frozen=True)
class PublicKey:
    type: str
    blob: bytes
    comment: str

    @property
    def text(self) -> str:
        """The key as stored and sent to Nova: `type base64 [comment]`."""
        encoded = base64.b64encode(self.blob).decode("ascii")
        return f"{self.type} {encoded} {self.comment}".strip()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)


def fingerprint(blob: bytes) -> str:
    """`ssh-keygen -l`: SHA256: and the unpadded base64 of the blob's SHA-256."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")
    return "SHA256:" + digest.rstrip("=")


def _invalid(message: str) -> ServiceError:
    return ServiceError(message, code="invalid_public_key", fields={"public_key": [message]})


def _read_strings(blob: bytes) -> list[bytes]:
    """The SSH wire format: a sequence of uint32 length + bytes."""
    parts, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise ValueError("truncated length")
        (length,) = struct.unpack(">I", blob[offset : offset + 4])
        offset += 4
        if offset + length > len(blob):
            raise ValueError("truncated field")
        parts.append(blob[offset : offset + length])
        offset += length
    return parts


def parse_public_key(text: Any) -> PublicKey:
    """Validate an OpenSSH public key line (see the module's rules) or raise ServiceError 400
    `invalid_public_key`."""
    text = str(text or "").strip()
    if any(marker in text for marker in PRIVATE_MARKERS):
        raise _invalid(_("This is a private key: paste the .pub file"))
    if not text:
        raise _invalid(_("Paste your public key."))
    if len(text) > MAX_PUBLIC_KEY:
        raise _invalid(_("This is too long for an SSH public key."))
    if "\n" in text or "\r" in text:
        raise _invalid(
            _("An SSH public key is one line: paste the contents of the .pub file as it is.")
        )
    fields = text.split(None, 2)
    if len(fields) < 2 or fields[0] not in KEY_TYPES:
        raise _invalid(
            _(
                "This is not an SSH public key in OpenSSH format (it starts with ssh-ed25519, "
                "ssh-rsa or ecdsa-sha2-nistp256/384/521)."
            )
        )
    key_type, encoded = fields[0], fields[1]
    comment = fields[2].strip() if len(fields) > 2 else ""
    if any(ord(c) < 32 for c in comment):
        raise _invalid(_("The comment of the key may not contain control characters."))
    try:
        blob = base64.b64decode(encoded, validate=True)
        parts = _read_strings(blob)
    except (binascii.Error, ValueError):
        raise _invalid(_("The key data is damaged: copy the whole line again.")) from None
    if not parts or parts[0] != key_type.encode("ascii"):
        raise _invalid(_("The key data does not match its type %(type)s.") % {"type": key_type})
    if key_type == "ssh-ed25519":
        valid = len(parts) == 2 and len(parts[1]) == 32
    elif key_type == "ssh-rsa":
        valid = len(parts) == 3
        if valid:
            bits = int.from_bytes(parts[2], "big").bit_length()
            if bits < MIN_RSA_BITS:
                raise _invalid(
                    _(
                        "This RSA key has only %(bits)d bits; use at least %(min)d (or an "
                        "ed25519 key: ssh-keygen -t ed25519)."
                    )
                    % {"bits": bits, "min": MIN_RSA_BITS}
                )
    else:
        valid = len(parts) == 3 and parts[1] == str(KEY_TYPES[key_type]).encode("ascii")
    if not valid:
        raise _invalid(_("The key data is damaged: copy the whole line again."))
    return PublicKey(type=key_type, blob=blob, comment=comment)


def clean_name(name: Any) -> str:
    name = str(name or "").strip()
    if not NAME_RE.fullmatch(name):
        message = _(
            "Use 1 to 64 letters, digits, spaces, dots, @, hyphens or underscores for the key name."
        )
        raise ServiceError(message, code="invalid_key_name", fields={"name": [message]})
    return name


def cloud_name(keypair: KeyPair) -> str:
    """The Nova key pair name of a portal key pair (ASCII, ≤ 255 characters)."""
    prefix = str(getattr(settings, "TEACHCLOUD_COMPUTE_NAME_PREFIX", "tc-"))
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", prefix)[:200]
    return f"{prefix}u{keypair.user_id}-k{keypair.pk}"


def same_key(a: str, b: str) -> bool:
    """Do two public key lines hold the same key (type and blob; the comment may differ)?"""
    return a.split()[:2] == b.split()[:2]


# -- Writes ------------------------------------------------------------------------------------


@transaction.atomic(durable=True)
def keypair_create(*, actor: Any, name: Any, public_key: Any) -> KeyPair:
    """Register a public key for `actor`. Nothing reaches the cloud until a VM boots with it."""
    require(actor, Action.KEYPAIR_MANAGE)
    name = clean_name(name)
    key = parse_public_key(public_key)
    taken = Conflict(
        _("You already have a key pair called %(name)s.") % {"name": name},
        code="key_name_taken",
        fields={"name": [_("Choose another name.")]},
    )
    if KeyPair.objects.filter(user=actor, name=name).exists():
        raise taken
    try:
        with transaction.atomic():
            keypair = KeyPair.objects.create(
                user=actor, name=name, public_key=key.text, fingerprint=key.fingerprint
            )
    except IntegrityError:  # added at the same moment by another request
        raise taken from None
    audit_record(
        actor=actor,
        action="keypair.create",
        target=keypair,
        after={"name": name, "fingerprint": keypair.fingerprint},
    )
    return keypair


@transaction.atomic(durable=True)
def keypair_delete(*, actor: Any, keypair: KeyPair) -> None:
    """Delete the user's key pair; after commit a task removes it from the cloud (servers booted
    with it keep the key inside the VM)."""
    require(actor, Action.KEYPAIR_MANAGE, keypair)
    row = KeyPair.objects.select_for_update().filter(pk=keypair.pk, user=actor).first()
    if row is None:
        return
    name = cloud_name(row)
    audit_record(
        actor=actor,
        action="keypair.delete",
        target=row,
        before={"name": row.name, "fingerprint": row.fingerprint},
    )
    row.delete()
    from compute.services import _enqueue

    _enqueue("keypair_cloud_delete", name)


def keypair_cloud_delete(*, name: str) -> bool:
    """Remove a Nova key pair of the service account (the task body; missing is fine)."""
    from compute.backends.base import BackendError
    from compute.cloud import get_backend

    try:
        get_backend().keypair_delete(name=name)
    except BackendError as exc:
        log.warning("cloud key pair %s not deleted: %s", name, exc)
        return False
    return True
