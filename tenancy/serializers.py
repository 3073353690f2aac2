"""API serializers of the tenancy app: explicit input (request) and output (response) shapes.

Input serializers only check types and sizes; every rule lives in the services. Ids in request
bodies are looked up among the objects the caller may see (the scoped selectors), so a foreign
id answers 400 with `fields: {<field>: ["… not found."]}` instead of revealing that it exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from accounts.models import User
from teachcloud.api.fields import InstantField, LocalDateField
from tenancy import selectors
from tenancy.models import (
    Domain,
    DomainRole,
    DomainRoleKind,
    Membership,
    Project,
    ProjectRole,
)

# Ids are PostgreSQL bigints: anything larger is refused as invalid input, never a server error.
MAX_ID = 2**63 - 1


def id_field(**kwargs: Any) -> serializers.IntegerField:
    """An optional integer id (query filters)."""
    return serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False, **kwargs)


class VisiblePrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """An id looked up among the objects `selector(request.user)` returns."""

    default_error_messages = {
        "required": _("This field is required."),
        "does_not_exist": _("Object {pk_value} not found."),
        "incorrect_type": _("Expected an id (integer), got {data_type}."),
    }

    def __init__(self, *, selector: Callable[[Any], QuerySet], **kwargs: Any) -> None:
        self.selector = selector
        kwargs.setdefault("pk_field", serializers.IntegerField(min_value=1, max_value=MAX_ID))
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("incorrect_type", data_type=type(data).__name__)
        return super().to_internal_value(data)

    def get_queryset(self) -> QuerySet:
        request = self.context.get("request")
        return self.selector(getattr(request, "user", None))


class StrictStringMixin:
    """Only JSON strings: DRF would otherwise turn the number 0 into the string "0"."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            raise serializers.ValidationError(_("Not a valid string."), code="invalid")
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictCharField(StrictStringMixin, serializers.CharField):
    pass


class StrictSlugField(StrictStringMixin, serializers.SlugField):
    pass


class StrictEmailField(StrictStringMixin, serializers.EmailField):
    pass


class StrictBooleanField(serializers.BooleanField):
    """Only JSON true/false (DRF would also take "yes", "on", 1…)."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


# -- Domains ----------------------------------------------------------------------------------


class DomainSerializer(serializers.ModelSerializer):
    class Meta:
        model = Domain
        fields = ["id", "name", "code", "status"]
        read_only_fields = fields


class DomainCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=200)
    code = StrictSlugField(max_length=64)


class DomainUpdateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=200, required=False)


# -- Projects ---------------------------------------------------------------------------------


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "domain", "name", "code", "status", "description", "end_date"]
        read_only_fields = fields


class ProjectFilterSerializer(serializers.Serializer):
    domain = id_field(help_text=_("Only projects of this domain."))


class ProjectCreateSerializer(serializers.Serializer):
    domain = VisiblePrimaryKeyRelatedField(
        selector=selectors.domains_visible_to, queryset=Domain.objects.none()
    )
    name = StrictCharField(max_length=200)
    code = StrictSlugField(max_length=64)
    description = StrictCharField(max_length=10000, required=False, allow_blank=True, default="")


class ProjectUpdateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=200, required=False)
    code = StrictSlugField(max_length=64, required=False)
    description = StrictCharField(max_length=10000, required=False, allow_blank=True)
    end_date = LocalDateField(
        required=False,
        allow_null=True,
        help_text=_(
            "When the course ends (null: no end). Members are reminded 7 days before, the "
            "project's VMs are stopped on that date and deleted 30 days later, then its "
            "allocation returns to the domain. Not in the past."
        ),
    )


# -- Memberships ------------------------------------------------------------------------------


class ConsumptionField(serializers.DecimalField):
    """The member's rated consumption, from `tenancy.selectors.membership_consumption`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=18, decimal_places=4, read_only=True, **kwargs)

    def get_attribute(self, instance: Membership) -> Any:
        return selectors.membership_consumption(instance)


class MembershipSerializer(serializers.ModelSerializer):
    consumption = ConsumptionField(help_text=_("Rated consumption in the project (CNY)."))

    class Meta:
        model = Membership
        fields = ["id", "project", "user", "role", "locked", "consumption", "expires_at"]
        read_only_fields = fields


class MembershipFilterSerializer(serializers.Serializer):
    project = id_field(help_text=_("Only memberships of this project."))
    user = id_field(help_text=_("Only memberships of this user."))


class MembershipCreateSerializer(serializers.Serializer):
    project = VisiblePrimaryKeyRelatedField(
        selector=selectors.projects_visible_to, queryset=Project.objects.none()
    )
    user = VisiblePrimaryKeyRelatedField(
        selector=selectors.users_visible_to, queryset=User.objects.none()
    )
    role = serializers.ChoiceField(choices=ProjectRole.choices)
    expires_at = InstantField(
        required=False,
        allow_null=True,
        default=None,
        help_text=_("Only for assistants: the appointment ends at this instant."),
    )


class MembershipUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=ProjectRole.choices, required=False)
    expires_at = InstantField(
        required=False,
        allow_null=True,
        help_text=_("Only for assistants. Left out: kept while the role stays the same."),
    )


# -- Domain roles -----------------------------------------------------------------------------


class DomainRoleSerializer(serializers.ModelSerializer):
    class Meta:
        model = DomainRole
        fields = ["id", "domain", "user", "role", "expires_at"]
        read_only_fields = fields


class DomainRoleFilterSerializer(serializers.Serializer):
    domain = id_field(help_text=_("Only roles in this domain."))
    user = id_field(help_text=_("Only roles of this user."))


class DomainRoleCreateSerializer(serializers.Serializer):
    domain = VisiblePrimaryKeyRelatedField(
        selector=selectors.domains_visible_to, queryset=Domain.objects.none()
    )
    user = VisiblePrimaryKeyRelatedField(
        selector=selectors.users_visible_to, queryset=User.objects.none()
    )
    role = serializers.ChoiceField(choices=DomainRoleKind.choices)
    expires_at = InstantField(
        required=False,
        allow_null=True,
        default=None,
        help_text=_("Only for assistants: the appointment ends at this instant."),
    )
