"""Compute records: the cloud catalogue, the cloud side of each tenant, and servers.

The cloud is the truth for what runs; these rows are the truth for who owns what and what it
holds against limits. Writes go through compute.services (and compute.sync); the OpenStack calls
go through compute.backends.
"""

from __future__ import annotations

import math

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class CloudCredential(models.Model):
    """Service-account credentials edited by platform staff in the admin (the password is stored
    encrypted, see compute.secrets). The active record wins over clouds.yaml/environment."""

    name = models.CharField(_("name"), max_length=100, unique=True)
    auth_url = models.URLField(_("Keystone URL"), max_length=300)
    username = models.CharField(_("username"), max_length=200)
    password_encrypted = models.TextField(_("password (encrypted)"), blank=True)
    project_name = models.CharField(_("project"), max_length=200)
    user_domain_name = models.CharField(_("user domain"), max_length=200, default="Default")
    project_domain_name = models.CharField(_("project domain"), max_length=200, default="Default")
    region_name = models.CharField(_("region"), max_length=100, blank=True)
    verify_tls = models.BooleanField(_("verify TLS certificates"), default=True)
    simulated = models.BooleanField(
        _("simulated cloud"),
        default=False,
        help_text=_("Label the portal as running on a simulated (development) cloud."),
    )
    active = models.BooleanField(_("active"), default=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("cloud credential")
        verbose_name_plural = _("cloud credentials")
        constraints = [
            models.UniqueConstraint(
                fields=["active"], condition=models.Q(active=True), name="one_active_credential"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.auth_url})"


class CatalogueItem(models.Model):
    """A flavor or image mirrored from the cloud; platform staff choose who may use it."""

    cloud_id = models.CharField(_("cloud id"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=200)
    enabled = models.BooleanField(
        _("offered"), default=True, help_text=_("Offered to users in the portal and the API.")
    )
    removed = models.BooleanField(
        _("gone from the cloud"), default=False, help_text=_("No longer listed by the cloud.")
    )
    domains = models.ManyToManyField(
        "tenancy.Domain",
        blank=True,
        related_name="+",
        verbose_name=_("only for domains"),
        help_text=_("Empty: every domain (unless projects are chosen)."),
    )
    projects = models.ManyToManyField(
        "tenancy.Project",
        blank=True,
        related_name="+",
        verbose_name=_("only for projects"),
        help_text=_("Empty: every project (unless domains are chosen)."),
    )
    synced_at = models.DateTimeField(_("synced at"), default=timezone.now)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name


class Flavor(CatalogueItem):
    vcpus = models.PositiveIntegerField(_("vCPUs"))
    ram_mib = models.PositiveIntegerField(_("RAM (MiB)"))
    disk_gib = models.PositiveIntegerField(_("disk (GiB)"))

    class Meta:
        ordering = ["vcpus", "ram_mib", "disk_gib", "name"]
        verbose_name = _("flavor")
        verbose_name_plural = _("flavors")

    @property
    def ram_gib(self) -> int:
        """RAM as held against limits: whole GiB, rounded up (512 MiB holds 1 GiB)."""
        return math.ceil(self.ram_mib / 1024)


class Image(CatalogueItem):
    min_disk_gib = models.PositiveIntegerField(_("minimum disk (GiB)"), default=0)
    min_ram_mib = models.PositiveIntegerField(_("minimum RAM (MiB)"), default=0)

    class Meta:
        ordering = ["name"]
        verbose_name = _("image")
        verbose_name_plural = _("images")


class CloudDomain(models.Model):
    """The Keystone domain of a TeachCloud domain."""

    domain = models.OneToOneField(
        "tenancy.Domain", on_delete=models.PROTECT, related_name="cloud", verbose_name=_("domain")
    )
    cloud_id = models.CharField(_("Keystone domain id"), max_length=64, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    deleted_at = models.DateTimeField(_("deleted at"), null=True, blank=True)

    class Meta:
        verbose_name = _("cloud domain")
        verbose_name_plural = _("cloud domains")

    def __str__(self) -> str:
        return f"{self.domain.code} → {self.cloud_id or '?'}"


class CloudProject(models.Model):
    """The Keystone project of a TeachCloud project, and the quota last set on it."""

    project = models.OneToOneField(
        "tenancy.Project", on_delete=models.PROTECT, related_name="cloud", verbose_name=_("project")
    )
    cloud_id = models.CharField(_("Keystone project id"), max_length=64, blank=True)
    quota_vcpus = models.IntegerField(_("quota: vCPUs"), null=True, blank=True)
    quota_ram_gib = models.IntegerField(_("quota: RAM (GiB)"), null=True, blank=True)
    quota_synced_at = models.DateTimeField(_("quota set at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    deleted_at = models.DateTimeField(_("deleted at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)

    class Meta:
        verbose_name = _("cloud project")
        verbose_name_plural = _("cloud projects")

    def __str__(self) -> str:
        return f"{self.project.code} → {self.cloud_id or '?'}"


class ServerStatus(models.TextChoices):
    BUILDING = "building", _("Building")
    ACTIVE = "active", _("Active")
    STOPPED = "stopped", _("Stopped")
    ERROR = "error", _("Error")
    DELETED = "deleted", _("Deleted")


class ServerTask(models.TextChoices):
    NONE = "", _("None")
    STARTING = "starting", _("Starting")
    STOPPING = "stopping", _("Stopping")
    REBOOTING = "rebooting", _("Rebooting")
    DELETING = "deleting", _("Deleting")


class StopCause(models.TextChoices):
    NONE = "", _("None")
    USER = "user", _("Stopped by a user")
    LOCK = "lock", _("Tenant locked")
    BUDGET = "budget", _("Budget used up")
    COURSE = "course", _("Course ended")
    CLOUD = "cloud", _("Stopped in the cloud")


#: Statuses whose resources count against limits (a reservation is a building server).
HOLDING_STATUSES = (ServerStatus.BUILDING, ServerStatus.ACTIVE, ServerStatus.STOPPED)


class Server(models.Model):
    """A member's VM. Its resources are held (billing.Holding) from reservation to deletion."""

    project = models.ForeignKey(
        "tenancy.Project",
        on_delete=models.PROTECT,
        related_name="servers",
        verbose_name=_("project"),
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="servers",
        verbose_name=_("owner"),
    )
    membership = models.ForeignKey(
        "tenancy.Membership",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="servers",
        verbose_name=_("membership"),
    )
    name = models.CharField(_("name"), max_length=64)
    flavor = models.ForeignKey(Flavor, on_delete=models.PROTECT, related_name="servers")
    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="servers")
    key_name = models.CharField(_("key pair"), max_length=200, blank=True)
    vcpus = models.PositiveIntegerField(_("vCPUs"))
    ram_gib = models.PositiveIntegerField(_("RAM (GiB)"))
    disk_gib = models.PositiveIntegerField(_("disk (GiB)"))
    status = models.CharField(
        _("status"), max_length=10, choices=ServerStatus.choices, default=ServerStatus.BUILDING
    )
    task = models.CharField(
        _("task"), max_length=10, choices=ServerTask.choices, default="", blank=True
    )
    stop_cause = models.CharField(
        _("stopped because"), max_length=8, choices=StopCause.choices, default="", blank=True
    )
    #: Running when a lock, budget or course end stopped it (unlock may restart it).
    running_at_lock = models.BooleanField(_("running when locked"), default=False)
    cloud_id = models.CharField(_("cloud id"), max_length=64, null=True, blank=True, unique=True)
    cloud_status = models.CharField(_("cloud status"), max_length=32, blank=True)
    addresses = models.JSONField(_("addresses"), default=dict, blank=True)
    fault = models.TextField(_("fault"), blank=True)
    holding = models.ForeignKey(
        "billing.Holding", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)
    active_at = models.DateTimeField(_("active since"), null=True, blank=True)
    deleted_at = models.DateTimeField(_("deleted at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("server")
        verbose_name_plural = _("servers")
        indexes = [
            models.Index(fields=["project", "status"], name="server_project_status"),
            models.Index(fields=["owner", "status"], name="server_owner_status"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def ip_list(self) -> list[str]:
        return [ip for ips in (self.addresses or {}).values() for ip in ips]


class UnknownServer(models.Model):
    """A server found in one of our cloud projects that the portal has no record of."""

    class Resolution(models.TextChoices):
        REPORTED = "reported", _("Reported")
        ADOPTED = "adopted", _("Adopted")
        DELETED = "deleted", _("Deleted")

    cloud_id = models.CharField(_("cloud id"), max_length=64, unique=True)
    cloud_project_id = models.CharField(_("cloud project"), max_length=64)
    name = models.CharField(_("name"), max_length=255)
    cloud_status = models.CharField(_("cloud status"), max_length=32)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    first_seen = models.DateTimeField(_("first seen"), default=timezone.now)
    last_seen = models.DateTimeField(_("last seen"), default=timezone.now)
    resolution = models.CharField(
        _("resolution"), max_length=10, choices=Resolution.choices, default=Resolution.REPORTED
    )

    class Meta:
        ordering = ["-last_seen"]
        verbose_name = _("unknown cloud server")
        verbose_name_plural = _("unknown cloud servers")

    def __str__(self) -> str:
        return f"{self.name} ({self.cloud_id})"


class KeyPair(models.Model):
    """An SSH public key a user registered in the portal (compute.keypairs). It reaches Nova
    under a derived name, owned by the portal's service account, when a VM boots with it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="keypairs",
        verbose_name=_("user"),
    )
    name = models.CharField(_("name"), max_length=64)
    public_key = models.TextField(_("public key"))
    fingerprint = models.CharField(_("fingerprint"), max_length=100)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["name", "pk"]
        verbose_name = _("SSH key pair")
        verbose_name_plural = _("SSH key pairs")
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], name="keypair_user_name_unique")
        ]

    def __str__(self) -> str:
        return self.name
