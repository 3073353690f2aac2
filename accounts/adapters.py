from allauth.account.adapter import DefaultAccountAdapter
from django.http import HttpRequest


class AccountAdapter(DefaultAccountAdapter):
    """No open sign-up: accounts come from admins, roster imports and enrollment codes."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return False
