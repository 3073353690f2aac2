"""Platform staff's side of compute (the Django admin): cloud credentials, which flavors and
images are offered to whom, and the capacity report.

Writes are services like every other (permission `CLOUD_ADMIN`, one durable transaction with
its audit event); the password of a credential is stored encrypted (compute.secrets) and never
written to the audit log. `cloud_credential_test` and `capacity_report` call the cloud, so they
run outside any transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from compute.backends.base import BackendError
from compute.models import CloudCredential, Flavor, Image, Server, ServerStatus
from teachcloud.errors import ServiceError
from tenancy.audit import audit_record, snapshot
from tenancy.models import Domain, Project
from tenancy.permissions import Action, require

RESOURCES = ("vcpus", "ram_gib", "disk_gib")
CREDENTIAL_FIELDS = [
    "name",
    "auth_url",
    "username",
    "project_name",
    "user_domain_name",
    "project_domain_name",
    "region_name",
    "verify_tls",
    "simulated",
    "active",
]


# -- Cloud credentials ------------------------------------------------------------------------


@transaction.atomic(durable=True)
def cloud_credential_save(
    *,
    actor: Any,
    credential: CloudCredential | None,
    values: dict[str, Any],
    password: str = "",
) -> CloudCredential:
    """Create or change a credential. `password` empty keeps the stored one (a new credential
    needs one). Making it active deactivates the one active before (there is one at most)."""
    from compute.secrets import encrypt

    require(actor, Action.CLOUD_ADMIN)
    if credential is None or credential.pk is None:
        credential = CloudCredential()
        before = None
        if not password:
            raise ServiceError(
                _("A new cloud credential needs the service account's password."),
                code="password_required",
                fields={"password": [_("This field is required.")]},
            )
    else:
        credential = CloudCredential.objects.select_for_update(of=("self",)).get(pk=credential.pk)
        before = snapshot(credential, CREDENTIAL_FIELDS)
    for name in CREDENTIAL_FIELDS:
        if name in values:
            setattr(credential, name, values[name])
    if password:
        credential.password_encrypted = encrypt(password)
    if credential.active:
        CloudCredential.objects.filter(active=True).exclude(pk=credential.pk).update(active=False)
    credential.save()
    after = snapshot(credential, CREDENTIAL_FIELDS)
    after["password_changed"] = bool(password)
    audit_record(
        actor=actor,
        action="compute.credential_save",
        target=credential,
        before=before,
        after=after,
    )
    return credential


def cloud_credential_test(*, actor: Any, credential: CloudCredential) -> dict[str, Any]:
    """Sign in with `credential` and list the catalogue: {"ok", "message", "flavors", "images",
    "hypervisors"}. Never raises for a cloud failure (its message is the answer)."""
    from compute import cloud

    require(actor, Action.CLOUD_ADMIN)
    try:
        backend = cloud.backend_for_credential(credential)
        flavors = backend.list_flavors()
        images = backend.list_images()
    except BackendError as exc:
        return {"ok": False, "message": exc.message, "detail": exc.detail}
    return {
        "ok": True,
        "message": _("Signed in; the cloud lists %(f)d flavors and %(i)d images.")
        % {"f": len(flavors), "i": len(images)},
        "detail": "",
    }


# -- Catalogue choices ------------------------------------------------------------------------


def _catalogue_state(item: Flavor | Image) -> dict[str, Any]:
    return {
        "enabled": item.enabled,
        "domains": sorted(item.domains.values_list("pk", flat=True)),
        "projects": sorted(item.projects.values_list("pk", flat=True)),
    }


@transaction.atomic(durable=True)
def catalogue_item_update(
    *,
    actor: Any,
    item: Flavor | Image,
    enabled: bool,
    domains: Iterable[Domain],
    projects: Iterable[Project],
) -> Flavor | Image:
    """Offer or withdraw a flavor or image, and choose the domains and projects that may use it
    (none of either: everybody). Existing VMs keep running whatever is chosen."""
    require(actor, Action.CLOUD_ADMIN)
    model = type(item)
    item = model.objects.select_for_update(of=("self",)).get(pk=item.pk)
    before = _catalogue_state(item)
    item.enabled = enabled
    item.save(update_fields=["enabled"])
    item.domains.set(list(domains))
    item.projects.set(list(projects))
    audit_record(
        actor=actor,
        action=f"compute.{model._meta.model_name}_update",
        target=item,
        before=before,
        after=_catalogue_state(item),
    )
    return item


@transaction.atomic(durable=True)
def catalogue_offer(*, actor: Any, items: Iterable[Flavor | Image], enabled: bool) -> int:
    """Offer (or withdraw) several flavors or images at once; answers how many changed."""
    require(actor, Action.CLOUD_ADMIN)
    changed = 0
    for item in items:
        if item.enabled == enabled:
            continue
        type(item).objects.filter(pk=item.pk).update(enabled=enabled)
        audit_record(
            actor=actor,
            action=f"compute.{item._meta.model_name}_update",
            target=item,
            before={"enabled": item.enabled},
            after={"enabled": enabled},
        )
        changed += 1
    return changed


# -- Capacity ---------------------------------------------------------------------------------


def capacity_report(*, actor: Any) -> dict[str, Any]:
    """The cloud's hypervisors (total vs used) and TeachCloud's view: the platform capacity
    (× overcommit), what is allocated to domains, and what VMs hold. The cloud part is empty,
    with `cloud_error` set, when the cloud does not answer."""
    from billing.models import Allocation, Level, PlatformCapacity
    from billing.services import held_by_vms
    from compute import cloud

    require(actor, Action.CLOUD_ADMIN)
    report: dict[str, Any] = {"hypervisors": [], "cloud_error": "", "at": timezone.now()}
    try:
        hypervisors = cloud.get_backend().list_hypervisors()
    except BackendError as exc:
        report["cloud_error"] = exc.message
        hypervisors = []
    rows = []
    total = dict.fromkeys(
        ("vcpus", "vcpus_used", "ram_gib", "ram_gib_used", "disk_gib", "disk_gib_used", "vms"), 0
    )
    for h in hypervisors:
        row = {
            "name": h.name,
            "state": h.state,
            "status": h.status,
            "vcpus": h.vcpus,
            "vcpus_used": h.vcpus_used,
            "ram_gib": round(h.ram_mib / 1024, 1),
            "ram_gib_used": round(h.ram_mib_used / 1024, 1),
            "disk_gib": h.disk_gib,
            "disk_gib_used": h.disk_gib_used,
            "vms": h.running_vms,
        }
        rows.append(row)
        for key in total:
            total[key] += row[key]
    report["hypervisors"] = rows
    report["cloud_total"] = {
        k: round(v, 1) if isinstance(v, float) else v for k, v in total.items()
    }

    capacity = PlatformCapacity.objects.filter(pk=1).first()
    overcommit = capacity.overcommit if capacity else 1
    sellable = {r: int(getattr(capacity, r) * overcommit) if capacity else 0 for r in RESOURCES}
    allocated_sums = Allocation.objects.filter(level=Level.DOMAIN, end__isnull=True).aggregate(
        **{r: Sum(r) for r in RESOURCES}
    )
    allocated = {r: int(allocated_sums[r] or 0) for r in RESOURCES}
    held = held_by_vms()
    cloud_total = {
        "vcpus": total["vcpus"],
        "ram_gib": int(total["ram_gib"]),
        "disk_gib": total["disk_gib"],
    }
    report["capacity"] = capacity
    report["resources"] = [
        {
            "resource": r,
            "cloud_total": cloud_total[r] if rows else None,
            "capacity": getattr(capacity, r) if capacity else 0,
            "sellable": sellable[r],
            "allocated": allocated[r],
            "held": held[r],
            "allocated_percent": _percent(allocated[r], sellable[r]),
            "held_percent": _percent(held[r], sellable[r]),
        }
        for r in RESOURCES
    ]
    report["servers"] = {
        row["status"]: row["n"]
        for row in Server.objects.exclude(status=ServerStatus.DELETED)
        .values("status")
        .annotate(n=Count("pk"))
        .order_by()
    }
    return report


def _percent(part: int, whole: int) -> int:
    if whole <= 0:
        return 100 if part else 0
    return min(100, round(100 * part / whole))
