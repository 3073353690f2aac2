"""Portal forms of accounts: real-name users, enrollment, roster uploads."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from tenancy.forms import EndDateField


class UserCreateForm(forms.Form):
    real_name = forms.CharField(label=_("Real name"), max_length=150)
    id_number = forms.CharField(label=_("Student/staff number"), max_length=64)
    email = forms.EmailField(label=_("Email address"))
    phone = forms.CharField(label=_("Phone"), max_length=32, required=False)
    username = forms.CharField(
        label=_("Username"),
        max_length=150,
        required=False,
        help_text=_("Leave empty to make one from the domain code and the number."),
    )
    password = forms.CharField(
        label=_("Initial password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("Leave empty to email an invitation to choose a password."),
    )


class MemberCreateForm(UserCreateForm):
    """A new user of the project's domain, added to the project at once."""

    password = None  # type: ignore[assignment]


class UserEditForm(forms.Form):
    real_name = forms.CharField(label=_("Real name"), max_length=150)
    id_number = forms.CharField(label=_("Student/staff number"), max_length=64, required=False)
    email = forms.EmailField(label=_("Email address"))
    phone = forms.CharField(label=_("Phone"), max_length=32, required=False)


class EnrollmentRedeemForm(forms.Form):
    real_name = forms.CharField(label=_("Real name"), max_length=150)
    id_number = forms.CharField(label=_("Student/staff number"), max_length=64)
    email = forms.EmailField(label=_("Email address"))
    username = forms.CharField(
        label=_("Username (optional)"),
        max_length=150,
        required=False,
        help_text=_("Leave empty to get one made from your school and number."),
    )
    password1 = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label=_("Password (again)"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if (
            data.get("password1")
            and data.get("password2")
            and (data["password1"] != data["password2"])
        ):
            self.add_error("password2", _("The two passwords differ."))
        return data


class EnrollmentCodeForm(forms.Form):
    label = forms.CharField(
        label=_("Label"),
        max_length=120,
        required=False,
        help_text=_("For example the class or the term."),
    )
    expires_at = EndDateField(label=_("Valid until (optional)"))
    max_uses = forms.IntegerField(label=_("Maximum uses (optional)"), required=False, min_value=1)


class RosterUploadForm(forms.Form):
    file = forms.FileField(
        label=_("Roster file (CSV or XLSX)"),
        help_text=_(
            "First row: column names — real_name, id_number, email (or 姓名, 学号, 邮箱); "
            "username is optional."
        ),
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.xlsx"}),
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > settings.TEACHCLOUD_ROSTER_MAX_BYTES:
            raise forms.ValidationError(_("The file is too large (at most 5 MB)."))
        if not upload.name.lower().endswith((".csv", ".xlsx", ".txt")):
            raise forms.ValidationError(_("Upload a .csv or .xlsx file."))
        return upload
