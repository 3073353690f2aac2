import re
from typing import Any

from django.utils.translation import gettext as _
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


class PageSizePagination(PageNumberPagination):
    """`?page=` from 1 and `?size=` (default 30, max 100) → {count, next, previous, results}."""

    page_size = 30
    page_size_query_param = "size"
    max_page_size = 100

    def get_page_size(self, request: Any) -> int:
        """A size that is not a whole number ≥ 1 is a 400; above the maximum it is capped."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        digits = raw.lstrip("0")
        if not re.fullmatch(r"[0-9]+", raw) or not digits:
            raise ValidationError(
                {self.page_size_query_param: [_("Enter a whole number from 1 (at most 100).")]}
            )
        return self.max_page_size if len(digits) > 6 else min(int(digits), self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
        return parameters
