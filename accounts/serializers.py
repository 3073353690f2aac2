"""API serializers of the accounts app: explicit input (request) and output (response) shapes.

Input serializers check types and sizes only; the rules (uniqueness, who may change what,
auditing) live in accounts.services.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from accounts.models import User
from tenancy import selectors
from tenancy.models import Domain
from tenancy.serializers import (
    StrictBooleanField,
    StrictCharField,
    StrictEmailField,
    VisiblePrimaryKeyRelatedField,
    id_field,
)


class AuthTokenRequestSerializer(serializers.Serializer):
    username = StrictCharField(
        max_length=254, help_text=_("Username or email address."), trim_whitespace=True
    )
    password = StrictCharField(
        max_length=4096, trim_whitespace=False, style={"input_type": "password"}
    )
    otp = StrictCharField(
        max_length=64,
        required=False,
        allow_blank=True,
        help_text=_(
            "Required when the account uses two-factor authentication: a code from the "
            "authenticator app, or an unused recovery code."
        ),
    )


class AuthTokenSerializer(serializers.Serializer):
    token = serializers.CharField(
        read_only=True,
        help_text=_(
            "Send it as `Authorization: Token <token>`. Shown once: the server keeps only a "
            "digest of it."
        ),
    )
    expiry = serializers.DateTimeField(
        read_only=True,
        help_text=_(
            "When the token stops working. It is revoked earlier by DELETE, a password change "
            "or the account's deactivation."
        ),
    )


class AuthTokenRevokeQuerySerializer(serializers.Serializer):
    # Exactly one way to revoke every token: `?all=1` (anything else is a 400).
    all = serializers.ChoiceField(
        choices=["1"],
        required=False,
        help_text=_("`1`: revoke every token of yours, not only the one this request carries."),
    )


PERSONAL_FIELDS = ("id_number", "email", "phone")


class UserSerializer(serializers.ModelSerializer):
    """A user; the personal fields are null where the reader may see the user (to add them to
    a project) but not their personal data (tenancy.selectors.with_personal_data)."""

    # Plain strings: accounts made before email was required may hold an empty address.
    email = serializers.CharField(
        read_only=True, allow_null=True, help_text=_("Null: not yours to see.")
    )
    id_number = serializers.CharField(
        read_only=True, allow_null=True, help_text=_("Null: not yours to see.")
    )
    phone = serializers.CharField(
        read_only=True, allow_null=True, help_text=_("Null: not yours to see.")
    )
    domain = serializers.IntegerField(
        source="home_domain_id",
        read_only=True,
        allow_null=True,
        help_text=_("Home domain (null for platform staff)."),
    )

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "real_name",
            "id_number",
            "email",
            "phone",
            "domain",
            "is_active",
        ]
        read_only_fields = fields

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        if not getattr(instance, "personal", False):  # fail closed: annotate to show
            for name in PERSONAL_FIELDS:
                data[name] = None
        return data


class UserFilterSerializer(serializers.Serializer):
    domain = id_field(help_text=_("Only users whose home domain is this one."))
    search = serializers.CharField(
        max_length=150,
        required=False,
        allow_blank=True,
        help_text=_("Part of the username, real name, student/staff number or email."),
    )


class UserCreateSerializer(serializers.Serializer):
    username = StrictCharField(max_length=150)
    real_name = StrictCharField(max_length=150)
    id_number = StrictCharField(max_length=64)
    email = StrictEmailField(max_length=254)
    domain = VisiblePrimaryKeyRelatedField(
        selector=selectors.domains_visible_to,
        queryset=Domain.objects.none(),
        help_text=_("The user's home domain."),
    )
    password = StrictCharField(
        max_length=4096,
        required=False,
        write_only=True,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text=_("Left out: the user is emailed a link to choose one."),
    )
    phone = StrictCharField(max_length=32, required=False, allow_blank=True, default="")


class UserUpdateSerializer(serializers.Serializer):
    real_name = StrictCharField(max_length=150, required=False)
    id_number = StrictCharField(max_length=64, required=False, allow_blank=True)
    email = StrictEmailField(max_length=254, required=False)
    phone = StrictCharField(max_length=32, required=False, allow_blank=True)
    is_active = StrictBooleanField(required=False)
