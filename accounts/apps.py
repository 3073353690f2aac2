from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"
    verbose_name = _("Accounts")

    def ready(self) -> None:
        from allauth.account.signals import password_reset

        password_reset.connect(_on_password_reset, dispatch_uid="accounts.password_reset_verifies")


def _on_password_reset(sender, request, user, **kwargs) -> None:  # type: ignore[no-untyped-def]
    from accounts.services import email_confirm_by_reset

    email_confirm_by_reset(user=user)
