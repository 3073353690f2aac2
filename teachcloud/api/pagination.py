from rest_framework.pagination import PageNumberPagination


class PageSizePagination(PageNumberPagination):
    """`?page=` from 1 and `?size=` (default 30, max 100) → {count, next, previous, results}."""

    page_size = 30
    page_size_query_param = "size"
    max_page_size = 100
