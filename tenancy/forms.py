"""Portal forms of tenancy. They validate input only; the rules live in the services."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from django import forms
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from teachcloud.errors import ServiceError
from tenancy.models import Domain, DomainRoleKind, ProjectRole


def end_of_day(day: date | None) -> datetime | None:
    """An appointment "until 2026-07-01" lasts to the end of that day, local time."""
    if day is None:
        return None
    return timezone.make_aware(datetime.combine(day, time(23, 59, 59)))


def apply_service_error(
    form: forms.Form, exc: ServiceError, *, field_map: dict[str, str] | None = None
) -> None:
    """Show a service's refusal on the form: its detail on top, its `fields` on the fields."""
    field_map = field_map or {}
    for name, messages in (exc.fields or {}).items():
        target = field_map.get(name, name)
        for message in messages if isinstance(messages, list | tuple) else [messages]:
            if target in form.fields:
                form.add_error(target, str(message))
            else:
                form.add_error(None, f"{name}: {message}")
    form.add_error(None, exc.detail)


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs=attrs, format="%Y-%m-%d")


class EndDateField(forms.DateField):
    """An optional date, cleaned to the end of that day as an aware datetime."""

    widget = DateInput

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("label", _("Until (optional)"))
        super().__init__(**kwargs)

    def clean(self, value: Any) -> datetime | None:  # type: ignore[override]
        return end_of_day(super().clean(value))


class UserLookupField(forms.CharField):
    """A user found by username, email, or student/staff number (within the domain)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("label", _("User"))
        kwargs.setdefault("max_length", 254)
        kwargs.setdefault("help_text", _("Username, email address or student/staff number."))
        super().__init__(**kwargs)


def lookup_user(candidates: QuerySet, domain: Domain, value: str) -> Any:
    """The one user among `candidates` that `value` names, else a ValidationError."""
    value = value.strip()
    matches = list(
        candidates.filter(
            Q(username__iexact=value)
            | Q(email__iexact=value)
            | Q(home_domain=domain, id_number=value)
        ).distinct()[:2]
    )
    if not matches:
        raise forms.ValidationError(_("No user of this domain has this username, email or number."))
    if len(matches) > 1:
        raise forms.ValidationError(_("Several users match: use the username."))
    return matches[0]


class _LookupForm(forms.Form):
    def __init__(self, *args: Any, candidates: QuerySet, domain: Domain, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.candidates = candidates
        self.domain = domain

    def clean_user(self) -> Any:
        return lookup_user(self.candidates, self.domain, self.cleaned_data["user"])


class ProjectCreateForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=200)
    code = forms.SlugField(
        label=_("Code"),
        max_length=64,
        help_text=_("Short, unique in the domain: letters, digits, - and _."),
    )
    description = forms.CharField(
        label=_("Description"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


class ProjectEditForm(ProjectCreateForm):
    """The project's settings page: name, code, description and the course end date."""

    end_date = forms.DateField(
        label=_("Course ends"),
        required=False,
        widget=DateInput,
        help_text=_(
            "Optional. Members are reminded 7 days before; on this date every VM of the "
            "project is stopped, 30 days later they are deleted and the project's allocation "
            "returns to the domain. Moving the date before then cancels what has not happened "
            "yet; empty means the course does not end."
        ),
    )


class DomainRoleForm(_LookupForm):
    user = UserLookupField()
    role = forms.ChoiceField(
        label=_("Role"), choices=DomainRoleKind.choices, initial=DomainRoleKind.ASSISTANT
    )
    expires_at = EndDateField(help_text=_("Only assistants can be appointed until a date."))


class MemberAddForm(_LookupForm):
    user = UserLookupField()
    role = forms.ChoiceField(
        label=_("Role"), choices=ProjectRole.choices, initial=ProjectRole.MEMBER
    )
    expires_at = EndDateField(help_text=_("Only assistants can be appointed until a date."))

    def __init__(self, *args: Any, may_appoint: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not may_appoint:
            self.fields["role"].choices = [(ProjectRole.MEMBER, ProjectRole.MEMBER.label)]


class MembershipRoleForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=ProjectRole.choices)
    expires_at = EndDateField()


class UserSearchForm(forms.Form):
    q = forms.CharField(label=_("Search"), required=False, max_length=100)
