"""API of monthly statements: `statements/` (list, show) and `statements/{id}/pdf/`; and of the
reports (reports.catalog): `reports/` (the reports you may open) and `reports/{slug}/` (a
report's rows, a page of JSON or `?export=csv|xlsx` of the whole filtered set).

Scoped like wallets (billing.selectors.wallets_visible_to): a statement of a wallet you cannot
see is a 404. Statements are read-only; they are issued by `statements_issue` (beat, monthly).
A report you may not open is a 404 too, exactly like one that does not exist.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.http import HttpResponse
from django.http.response import HttpResponseBase
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response

from billing.models import RATE
from billing.money import q2, q4
from billing.serializers import money_output
from reports import statements
from reports.catalog import (
    DOMAIN,
    PROJECT,
    REPORT_SLUG_HELP,
    Report,
    get_report,
    parse_filters,
    reports_for,
)
from reports.exports import (
    DATETIME,
    EXPORT_PARAMETER,
    FORMATS,
    MONEY,
    NUMBER,
    TEXT,
    export_response,
    export_responses,
    requested_export,
)
from reports.models import LineKind, Statement, StatementLine
from reports.pdf import statement_filename, statement_pdf
from tenancy.api import JsonApiMixin, validated_query
from tenancy.serializers import id_field

PDF_MEDIA_TYPE = "application/pdf"


class IgnoreAccept(BaseContentNegotiation):
    """The PDF download answers PDF whatever `Accept` says; its errors are JSON."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0]

    def select_renderer(self, request: Request, renderers: Any, format_suffix: Any = None):
        return renderers[0], renderers[0].media_type


class StatementFilterSerializer(serializers.Serializer):
    wallet = id_field(help_text=gettext_lazy("Only the statements of this wallet."))
    month = serializers.RegexField(
        r"^\d{4}-(0[1-9]|1[0-2])$",
        required=False,
        help_text=gettext_lazy("Only the statements of this month, YYYY-MM (Asia/Shanghai)."),
    )


class StatementLineSerializer(serializers.ModelSerializer):
    kind = serializers.ChoiceField(choices=LineKind.choices)
    quantity = serializers.DecimalField(
        max_digits=20,
        decimal_places=4,
        read_only=True,
        allow_null=True,
        help_text=gettext_lazy("Resource-hours (vCPU-hours or GiB-hours); null for sums."),
    )
    unit_price = serializers.DecimalField(
        read_only=True,
        allow_null=True,
        **RATE,
        help_text=gettext_lazy("¥ per unit; null for sums."),
    )
    amount = money_output(help_text=gettext_lazy("Exact amount, signed as it moved the wallet."))
    amount_rounded = serializers.SerializerMethodField(
        help_text=gettext_lazy("The amount rounded to cents (half up).")
    )
    transaction_ids = serializers.ListField(
        child=serializers.IntegerField(),
        help_text=gettext_lazy("The ledger transactions this line sums."),
    )

    class Meta:
        model = StatementLine
        fields = [
            "position",
            "kind",
            "name",
            "quantity",
            "unit",
            "unit_price",
            "amount",
            "amount_rounded",
            "transaction_ids",
            "price_version_id",
        ]

    def get_amount_rounded(self, line: StatementLine) -> str:
        return f"{q2(line.amount):.2f}"


class StatementSerializer(serializers.ModelSerializer):
    month = serializers.SerializerMethodField(help_text=gettext_lazy("YYYY-MM (Asia/Shanghai)."))
    opening_balance = money_output()
    closing_balance = money_output()
    opening_rounded = serializers.SerializerMethodField()
    closing_rounded = serializers.SerializerMethodField()
    lines = StatementLineSerializer(many=True, read_only=True)

    class Meta:
        model = Statement
        fields = [
            "id",
            "wallet",
            "month",
            "wallet_name",
            "tenant_name",
            "period_start",
            "period_end",
            "cutoff",
            "issued_at",
            "opening_balance",
            "opening_rounded",
            "closing_balance",
            "closing_rounded",
            "lines",
        ]

    def get_month(self, statement: Statement) -> str:
        return f"{statement.month:%Y-%m}"

    def get_opening_rounded(self, statement: Statement) -> str:
        return f"{q2(statement.opening_balance):.2f}"

    def get_closing_rounded(self, statement: Statement) -> str:
        return f"{q2(statement.closing_balance):.2f}"


@extend_schema(tags=["statements"])
class StatementViewSet(JsonApiMixin, viewsets.GenericViewSet):
    """Monthly statements of the wallets you can see (issued on the 1st for the month before)."""

    queryset = Statement.objects.none()
    serializer_class = StatementSerializer

    def get_queryset(self):
        return statements.statements_visible_to(self.request.user)

    @extend_schema(
        summary="List the monthly statements you can see, newest first",
        parameters=[StatementFilterSerializer],
        responses=StatementSerializer,
    )
    def list(self, request: Request) -> Response:
        filters = validated_query(StatementFilterSerializer, request)
        queryset = self.get_queryset()
        if "wallet" in filters:
            queryset = queryset.filter(wallet_id=filters["wallet"])
        if "month" in filters:
            queryset = queryset.filter(month=statements.parse_month(filters["month"]))
        return self.paginated(queryset.order_by("-month", "wallet_id"), StatementSerializer)

    @extend_schema(summary="Show a statement with its lines", responses=StatementSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(StatementSerializer(self.get_object()).data)

    @extend_schema(
        summary="Download a statement as PDF",
        responses={
            (200, PDF_MEDIA_TYPE): OpenApiResponse(
                OpenApiTypes.BINARY, description=gettext_lazy("The statement (PDF, A4).")
            ),
            503: OpenApiResponse(
                description=gettext_lazy(
                    "`pdf_font_missing`: the server lacks the CJK font PDFs are drawn with."
                )
            ),
        },
    )
    @action(detail=True, methods=["get"], content_negotiation_class=IgnoreAccept)
    def pdf(self, request: Request, pk: str) -> HttpResponse:
        statement = self.get_object()
        response = HttpResponse(statement_pdf(statement), content_type=PDF_MEDIA_TYPE)
        response["Content-Disposition"] = f'attachment; filename="{statement_filename(statement)}"'
        return response


# -- Reports ------------------------------------------------------------------------------------

KINDS = [TEXT, NUMBER, MONEY, DATETIME]


class ReportColumnSerializer(serializers.Serializer):
    key = serializers.CharField(help_text=gettext_lazy("The key of this cell in each row."))
    title = serializers.CharField(help_text=gettext_lazy("The column's heading (translated)."))
    kind = serializers.ChoiceField(
        choices=KINDS,
        help_text=gettext_lazy(
            "text; number (JSON number, or a decimal string when fractional); money (decimal "
            "string with 4 places); datetime (ISO-8601 with offset, Asia/Shanghai)."
        ),
    )


class ReportSerializer(serializers.Serializer):
    slug = serializers.CharField(help_text=REPORT_SLUG_HELP)
    title = serializers.CharField()
    description = serializers.CharField()
    filters = serializers.ListField(
        child=serializers.ChoiceField(choices=[DOMAIN, PROJECT]),
        help_text=gettext_lazy("Besides the period: the filters this report accepts."),
    )
    columns = ReportColumnSerializer(many=True)


def report_entry(report: Report) -> dict[str, Any]:
    return {
        "slug": report.slug,
        "title": str(report.title),
        "description": str(report.description),
        "filters": sorted(report.filters),
        "columns": [
            {"key": key, "title": str(column.header), "kind": column.kind}
            for key, column in report.columns
        ],
    }


def json_cell(kind: str, value: Any) -> Any:
    """Money as a 4-place decimal string, other Decimals as their text, the rest as is."""
    if isinstance(value, Decimal):
        return f"{q4(value)}" if kind == MONEY else str(value)
    return value


REPORT_PAGE = inline_serializer(
    "ReportPage",
    fields={
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": serializers.ListField(
            child=serializers.DictField(),
            help_text=gettext_lazy(
                "One object per row, keyed by the report's column keys (see `reports/`); "
                "an empty cell is null."
            ),
        ),
    },
)
REPORT_PARAMETERS = [
    OpenApiParameter("slug", OpenApiTypes.STR, OpenApiParameter.PATH, description=REPORT_SLUG_HELP),
    OpenApiParameter(
        "start",
        OpenApiTypes.DATE,
        description=gettext_lazy(
            "First day of the period (YYYY-MM-DD, Asia/Shanghai, inclusive); 400 if invalid."
        ),
    ),
    OpenApiParameter(
        "end",
        OpenApiTypes.DATE,
        description=gettext_lazy(
            "Last day of the period (YYYY-MM-DD, Asia/Shanghai, inclusive); 400 if it is "
            "invalid, before the start or more than ten years after it."
        ),
    ),
    OpenApiParameter(
        "domain",
        OpenApiTypes.INT,
        description=gettext_lazy(
            "Only this domain (reports with the domain filter); 400 if you cannot see it."
        ),
    ),
    OpenApiParameter(
        "project",
        OpenApiTypes.INT,
        description=gettext_lazy(
            "Only this project (reports with the project filter); 400 if you cannot see it."
        ),
    ),
    OpenApiParameter("page", OpenApiTypes.INT, description=gettext_lazy("Page number, from 1.")),
    OpenApiParameter(
        "size",
        OpenApiTypes.INT,
        description=gettext_lazy("Rows per page (default 30, at most 100)."),
    ),
    EXPORT_PARAMETER,
]


@extend_schema(tags=["reports"])
class ReportViewSet(JsonApiMixin, viewsets.GenericViewSet):
    """The reports (SPEC Reports): every table filters by period and exports to CSV and XLSX."""

    lookup_field = "slug"
    lookup_value_regex = "[^/]+"
    serializer_class = ReportSerializer

    @extend_schema(summary="List the reports you may open", responses=ReportSerializer)
    def list(self, request: Request) -> Response:
        entries = [report_entry(report) for report in reports_for(request.user)]
        page = self.paginate_queryset(entries)
        return self.get_paginated_response(ReportSerializer(page, many=True).data)

    @extend_schema(
        summary="A report's rows: a page of JSON, or the whole filtered set as CSV or XLSX",
        parameters=REPORT_PARAMETERS,
        responses=export_responses(REPORT_PAGE),
    )
    def retrieve(self, request: Request, slug: str) -> Response | HttpResponseBase:
        user = request.user
        report = get_report(user, slug)
        filters = parse_filters(user, report, request.query_params)
        export = requested_export(request)
        if export in FORMATS:
            return export_response(
                export=export,
                filename=report.filename or report.slug,
                columns=report.export_columns,
                rows=report.rows(user, filters),
            )
        page = self.paginate_queryset(report.queryset(user, filters))
        kinds = [column.kind for column in report.export_columns]
        results = [
            {
                key: json_cell(kind, value)
                for key, kind, value in zip(report.keys, kinds, report.convert(row), strict=True)
            }
            for row in page or []
        ]
        return self.get_paginated_response(results)
