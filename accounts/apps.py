from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"
    verbose_name = _("Accounts")

    def ready(self) -> None:
        from allauth.account.signals import password_changed, password_reset, password_set

        password_reset.connect(_on_password_reset, dispatch_uid="accounts.password_reset_verifies")
        # Every password change in allauth's views revokes the user's API tokens (the admin
        # site and the demo seed go through accounts.services.user_password_set, which does too).
        for signal, name in (
            (password_changed, "changed"),
            (password_set, "set"),
            (password_reset, "reset"),
        ):
            signal.connect(_on_new_password, dispatch_uid=f"accounts.password_{name}_tokens")


def _on_password_reset(sender, request, user, **kwargs) -> None:  # type: ignore[no-untyped-def]
    from accounts.services import email_confirm_by_reset

    email_confirm_by_reset(user=user)


def _on_new_password(sender, request, user, **kwargs) -> None:  # type: ignore[no-untyped-def]
    from accounts.services import tokens_revoke

    tokens_revoke(user=user)
