"""Domains (schools), projects (courses), who belongs where, and the audit log."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class TenantStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    LOCKED = "locked", _("Locked")
    PURGED = "purged", _("Purged")


class Domain(models.Model):
    """A school's account on the platform (域/学校)."""

    name = models.CharField(_("name"), max_length=200)
    code = models.SlugField(_("code"), max_length=64, unique=True)
    status = models.CharField(
        _("status"), max_length=16, choices=TenantStatus.choices, default=TenantStatus.ACTIVE
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("created by"),
    )

    class Meta:
        ordering = ["code"]
        verbose_name = _("domain")
        verbose_name_plural = _("domains")

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class Project(models.Model):
    """A teacher's project or course inside one domain (项目/课程)."""

    domain = models.ForeignKey(
        Domain, on_delete=models.PROTECT, related_name="projects", verbose_name=_("domain")
    )
    name = models.CharField(_("name"), max_length=200)
    code = models.SlugField(_("code"), max_length=64)
    description = models.TextField(_("description"), blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=TenantStatus.choices, default=TenantStatus.ACTIVE
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("created by"),
    )
    # Course end (SPEC Allocations 7): each step remembers the end date it was done for, so
    # moving the date re-arms the steps that have not yet happened for the new date.
    end_date = models.DateField(
        _("course ends"),
        null=True,
        blank=True,
        help_text=_(
            "Members are reminded 7 days before; VMs are stopped on this date and deleted 30 "
            "days later, then the allocation returns to the domain."
        ),
    )
    course_reminded_for = models.DateField(null=True, blank=True, editable=False)
    course_stopped_for = models.DateField(null=True, blank=True, editable=False)
    course_closed_for = models.DateField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["domain__code", "code"]
        verbose_name = _("project")
        verbose_name_plural = _("projects")
        constraints = [
            models.UniqueConstraint(fields=["domain", "code"], name="project_code_unique_in_domain")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.domain.code}/{self.code})"


class ProjectRole(models.TextChoices):
    MEMBER = "member", _("Member")
    ASSISTANT = "assistant", _("Assistant")
    ADMIN = "admin", _("Admin")


class DomainRoleKind(models.TextChoices):
    ADMIN = "admin", _("Admin")
    ASSISTANT = "assistant", _("Assistant")


def _active_grant_q(now=None) -> Q:
    now = now or timezone.now()
    return Q(expires_at__isnull=True) | Q(expires_at__gt=now)


class GrantQuerySet(models.QuerySet):
    def active(self, now=None):
        return self.filter(_active_grant_q(now))


class Membership(models.Model):
    """A user in a project with a role; assistant grants may expire."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("project")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="memberships",
        verbose_name=_("user"),
    )
    role = models.CharField(
        _("role"), max_length=16, choices=ProjectRole.choices, default=ProjectRole.MEMBER
    )
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    locked = models.BooleanField(_("locked"), default=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    objects = GrantQuerySet.as_manager()

    class Meta:
        ordering = ["project_id", "user__username"]
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_unique"),
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(role="assistant"),
                name="membership_only_assistants_expire",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.project.code} ({self.role})"


class DomainRole(models.Model):
    """An admin or assistant of a domain; assistant grants may expire."""

    domain = models.ForeignKey(
        Domain, on_delete=models.CASCADE, related_name="roles", verbose_name=_("domain")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="domain_roles",
        verbose_name=_("user"),
    )
    role = models.CharField(_("role"), max_length=16, choices=DomainRoleKind.choices)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    objects = GrantQuerySet.as_manager()

    class Meta:
        ordering = ["domain_id", "role", "user__username"]
        verbose_name = _("domain role")
        verbose_name_plural = _("domain roles")
        constraints = [
            models.UniqueConstraint(fields=["domain", "user"], name="domain_role_unique"),
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(role="assistant"),
                name="domain_role_only_assistants_expire",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.domain.code} ({self.role})"


class AuditEvent(models.Model):
    """Append-only record of a change: who did what to which object, before and after."""

    created_at = models.DateTimeField(_("time"), default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("actor"),
    )
    actor_repr = models.CharField(_("actor (as it was)"), max_length=300, blank=True)
    action = models.CharField(_("action"), max_length=64, db_index=True)
    target_type = models.CharField(_("target type"), max_length=64)
    target_id = models.CharField(_("target id"), max_length=64)
    target_repr = models.CharField(_("target"), max_length=300)
    # Scope columns let each admin see the events of their own domain or project.
    domain = models.ForeignKey(
        Domain,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("domain"),
    )
    project = models.ForeignKey(
        Project,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("project"),
    )
    before = models.JSONField(_("before"), null=True, blank=True)
    after = models.JSONField(_("after"), null=True, blank=True)
    ip = models.GenericIPAddressField(_("IP address"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        indexes = [
            models.Index(fields=["domain", "-created_at"], name="audit_domain_time"),
            models.Index(fields=["project", "-created_at"], name="audit_project_time"),
            models.Index(fields=["target_type", "target_id"], name="audit_target"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_repr} {self.action} {self.target_repr}"
        )
