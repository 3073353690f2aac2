"""Portal forms of compute. They validate input only; the rules (limits, locks, what a project
may use) live in compute.services, whose refusals are shown on the form."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

NAME_HELP = _("1–64 characters: letters (also Chinese), digits, hyphens, underscores and dots.")


class ServerCreateForm(forms.Form):
    """A new VM: the template renders the flavors itself (those that do not fit disabled,
    with the reason), so the flavor field only checks that the id is one of the project's."""

    name = forms.CharField(label=_("Name"), max_length=64, help_text=NAME_HELP)
    flavor = forms.ModelChoiceField(
        label=_("Size (flavor)"),
        queryset=None,
        widget=forms.RadioSelect,
        empty_label=None,
        error_messages={"invalid_choice": _("Choose one of the sizes offered.")},
    )
    image = forms.ModelChoiceField(
        label=_("Image"),
        queryset=None,
        empty_label=None,
        error_messages={"invalid_choice": _("Choose one of the images offered.")},
    )
    key_name = forms.ChoiceField(
        label=_("SSH key pair (optional)"),
        required=False,
        help_text=_("The cloud puts this public key into the VM, so you can sign in with ssh."),
        error_messages={"invalid_choice": _("Choose one of your key pairs.")},
    )

    def __init__(
        self,
        *args: Any,
        flavors: QuerySet,
        images: QuerySet,
        keypairs: QuerySet | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["flavor"].queryset = flavors  # type: ignore[attr-defined]
        self.fields["image"].queryset = images  # type: ignore[attr-defined]
        choices: list[tuple[str, Any]] = [("", _("none — use the console"))]
        choices += [(k.name, f"{k.name} ({k.fingerprint})") for k in (keypairs or [])]
        self.fields["key_name"].choices = choices  # type: ignore[attr-defined]


class KeyPairForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=64,
        help_text=_("For example laptop: 1–64 letters, digits, spaces, dots, @, - or _."),
    )
    public_key = forms.CharField(
        label=_("Public key"),
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "class": "font-monospace"}),
        help_text=_(
            "Paste the contents of ~/.ssh/id_ed25519.pub (one line starting with ssh-ed25519, "
            "ssh-rsa or ecdsa-sha2-…). No key yet? Run ssh-keygen -t ed25519. Never paste the "
            "private key."
        ),
    )


class ServerRenameForm(forms.Form):
    name = forms.CharField(label=_("New name"), max_length=64, help_text=NAME_HELP)


class ServerFilterForm(forms.Form):
    """The status filter of a VM list (empty: every VM that is not deleted)."""

    status = forms.ChoiceField(label=_("Status"), required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from compute.models import ServerStatus

        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [("", _("All but deleted")), *ServerStatus.choices]
