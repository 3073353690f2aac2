"""Real-name users, enrollment codes and requests, roster imports."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class PlatformRole(models.TextChoices):
    NONE = "", _("None")
    OPERATOR = "operator", _("Platform operator")
    FINANCE = "finance", _("Finance staff")


class User(AbstractUser):
    """A real-name person (实名). Platform staff have no home domain."""

    first_name = None  # type: ignore[assignment]
    last_name = None  # type: ignore[assignment]
    real_name = models.CharField(_("real name"), max_length=150)
    id_number = models.CharField(
        _("student/staff number"),
        max_length=64,
        blank=True,
        help_text=_("Unique within the home domain."),
    )
    email = models.EmailField(_("email address"), blank=True)
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    home_domain = models.ForeignKey(
        "tenancy.Domain",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="users",
        verbose_name=_("home domain"),
    )
    platform_role = models.CharField(
        _("platform role"), max_length=16, choices=PlatformRole.choices, blank=True, default=""
    )
    purged_at = models.DateTimeField(_("purged at"), null=True, blank=True)

    objects = UserManager()

    REQUIRED_FIELDS = ["email", "real_name"]

    class Meta:
        ordering = ["username"]
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [
            models.UniqueConstraint(
                "home_domain",
                "id_number",
                name="user_id_number_unique_in_domain",
                condition=Q(home_domain__isnull=False) & ~Q(id_number=""),
            ),
            models.UniqueConstraint(
                Lower("email"),
                name="user_email_unique_ci",
                condition=~Q(email=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.real_name} ({self.username})" if self.real_name else self.username

    @property
    def is_platform_staff(self) -> bool:
        return self.is_active and (self.is_superuser or self.platform_role == PlatformRole.OPERATOR)

    def get_full_name(self) -> str:
        return self.real_name

    def get_short_name(self) -> str:
        return self.real_name or self.username


def _new_code() -> str:
    return secrets.token_urlsafe(9)


class EnrollmentCode(models.Model):
    """A code/link a project admin hands out; students redeem it and wait for approval."""

    project = models.ForeignKey(
        "tenancy.Project",
        on_delete=models.CASCADE,
        related_name="enrollment_codes",
        verbose_name=_("project"),
    )
    code = models.CharField(_("code"), max_length=32, unique=True, default=_new_code)
    label = models.CharField(_("label"), max_length=120, blank=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    max_uses = models.PositiveIntegerField(_("maximum uses"), null=True, blank=True)
    uses = models.PositiveIntegerField(_("uses"), default=0)
    active = models.BooleanField(_("active"), default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("enrollment code")
        verbose_name_plural = _("enrollment codes")

    def __str__(self) -> str:
        return self.code

    def usable(self, now=None) -> bool:
        now = now or timezone.now()
        if not self.active:
            return False
        if self.expires_at is not None and self.expires_at <= now:
            return False
        return self.max_uses is None or self.uses < self.max_uses


class EnrollmentStatus(models.TextChoices):
    PENDING = "pending", _("Waiting for approval")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")


class EnrollmentRequest(models.Model):
    code = models.ForeignKey(
        EnrollmentCode, on_delete=models.PROTECT, related_name="requests", verbose_name=_("code")
    )
    project = models.ForeignKey(
        "tenancy.Project",
        on_delete=models.CASCADE,
        related_name="enrollment_requests",
        verbose_name=_("project"),
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="enrollment_requests",
        verbose_name=_("user"),
    )
    status = models.CharField(
        _("status"),
        max_length=16,
        choices=EnrollmentStatus.choices,
        default=EnrollmentStatus.PENDING,
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("decided by"),
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("enrollment request")
        verbose_name_plural = _("enrollment requests")
        constraints = [
            models.UniqueConstraint(
                fields=["project", "user"],
                condition=Q(status="pending"),
                name="enrollment_one_pending_per_user",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} → {self.project} ({self.status})"


class ImportStatus(models.TextChoices):
    PENDING = "pending", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class RosterImport(models.Model):
    """One uploaded class roster and its per-row results."""

    domain = models.ForeignKey(
        "tenancy.Domain", on_delete=models.CASCADE, related_name="+", verbose_name=_("domain")
    )
    project = models.ForeignKey(
        "tenancy.Project",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("project"),
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("uploaded by"),
    )
    filename = models.CharField(_("file name"), max_length=255)
    rows = models.JSONField(_("rows"), default=list)
    status = models.CharField(
        _("status"), max_length=16, choices=ImportStatus.choices, default=ImportStatus.PENDING
    )
    total = models.PositiveIntegerField(_("rows in file"), default=0)
    processed = models.PositiveIntegerField(_("rows processed"), default=0)
    created = models.PositiveIntegerField(_("users created"), default=0)
    added = models.PositiveIntegerField(_("members added"), default=0)
    existing = models.PositiveIntegerField(_("already there"), default=0)
    errors = models.PositiveIntegerField(_("errors"), default=0)
    results = models.JSONField(_("results"), default=list)
    error = models.TextField(_("failure"), blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    # Moves with every progress update: an import that stops moving was orphaned by its worker.
    updated_at = models.DateTimeField(_("last progress"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("roster import")
        verbose_name_plural = _("roster imports")

    def __str__(self) -> str:
        return f"{self.filename} ({self.status})"

    @property
    def percent(self) -> int:
        return 100 if not self.total else int(self.processed * 100 / self.total)
