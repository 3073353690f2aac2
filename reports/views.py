"""Portal pages of reports: the catalogue, one page per report (filters, table, exports),
background export jobs with their progress, and the monthly statements.

Reports are looked up with `reports.catalog.get_report` (an invisible report is a 404) and their
rows come from `Report.queryset` (scoped by the selectors); statements are scoped like wallets
(`reports.statements.statements_visible_to`). A bad filter is a message, never a 500.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from billing.models import Wallet, WalletKind
from billing.money import q2
from billing.selectors import wallets_visible_to
from reports import jobs
from reports.catalog import DOMAIN, PROJECT, Filters, Report, get_report, parse_filters, reports_for
from reports.exports import CSV, DATETIME, FORMATS, MONEY, NUMBER, XLSX, export_response
from reports.models import ExportJob, ExportStatus, Statement
from reports.pdf import statement_filename, statement_pdf
from reports.statements import parse_month, statements_visible_to
from teachcloud.errors import ServiceError
from tenancy.models import Domain, Project
from tenancy.selectors import domains_visible_to, projects_visible_to
from tenancy.views import error_message, is_htmx

REPORT_PAGE_SIZE = 30
STATEMENT_PAGE_SIZE = 30
RECENT_JOBS = 50
PDF_MEDIA_TYPE = "application/pdf"


def _report(request: HttpRequest, slug: str) -> Report:
    try:
        return get_report(request.user, slug)
    except ServiceError as exc:
        raise Http404(exc.detail) from None


def _query(params: dict[str, Any]) -> str:
    """`?a=1&b=2` (or "" when empty)."""
    encoded = urlencode(params)
    return f"?{encoded}" if encoded else ""


# -- Catalogue and report pages ---------------------------------------------------------------


@login_required
def report_index(request: HttpRequest) -> HttpResponse:
    return render(request, "reports/index.html", {"reports": reports_for(request.user)})


class ProjectChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Project) -> str:
        return f"{obj.domain.name} · {obj.name}"


class ReportFilterForm(forms.Form):
    """Renders the filters (parse_filters validates them); the selects list only what the
    viewer can see, and only the filters the report supports are there."""

    start = forms.DateField(
        label=gettext_lazy("From"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    end = forms.DateField(
        label=gettext_lazy("To"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    domain = forms.ModelChoiceField(
        label=gettext_lazy("Domain"),
        queryset=Domain.objects.none(),
        required=False,
        empty_label=gettext_lazy("All domains"),
    )
    project = ProjectChoiceField(
        label=gettext_lazy("Project"),
        queryset=Project.objects.none(),
        required=False,
        empty_label=gettext_lazy("All projects"),
    )

    def __init__(self, *args: Any, user: Any, report: Report, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if DOMAIN in report.filters:
            self.fields["domain"].queryset = domains_visible_to(user).order_by("name")
        else:
            del self.fields["domain"]
        if PROJECT in report.filters:
            self.fields["project"].queryset = (
                projects_visible_to(user).select_related("domain").order_by("domain__name", "name")
            )
        else:
            del self.fields["project"]


def _cell(value: Any, kind: str) -> dict[str, Any]:
    """One table cell: its text, its alignment, and the exact value as a tooltip."""
    if value is None or value == "":
        return {"text": "", "css": "", "title": ""}
    if kind == MONEY:
        negative = str(value).startswith("-")
        css = "text-end text-nowrap money" + (" text-danger" if negative else "")
        return {"text": str(value), "css": css, "title": ""}
    if kind == NUMBER:
        return {"text": str(value), "css": "text-end", "title": ""}
    if kind == DATETIME:
        # iso_local text: "2026-10-05T10:00:00+08:00" (Asia/Shanghai) shown to the minute.
        return {"text": str(value)[:16].replace("T", " "), "css": "text-nowrap", "title": value}
    return {"text": str(value), "css": "", "title": ""}


@login_required
def report_detail(request: HttpRequest, slug: str) -> HttpResponse:
    user = request.user
    report = _report(request, slug)
    try:
        filters = parse_filters(user, report, request.GET)
        invalid = False
    except ServiceError as exc:
        messages.error(request, error_message(exc))
        filters, invalid = Filters(), True
    form = ReportFilterForm(
        user=user,
        report=report,
        initial={
            "start": filters.start,
            "end": filters.end,
            "domain": filters.domain,
            "project": filters.project,
        },
    )
    page = Paginator(report.queryset(user, filters), REPORT_PAGE_SIZE).get_page(
        None if invalid else request.GET.get("page")
    )
    kinds = [column.kind for column in report.export_columns]
    rows = [
        [_cell(value, kind) for value, kind in zip(report.convert(row), kinds, strict=True)]
        for row in page.object_list
    ]
    query = filters.as_query()
    return render(
        request,
        "reports/report.html",
        {
            "report": report,
            "form": form,
            "filters": filters,
            "filtered": bool(query),
            "headers": [
                {
                    "text": str(column.header),
                    "css": "text-end" if column.kind in (MONEY, NUMBER) else "",
                }
                for column in report.export_columns
            ],
            "rows": rows,
            "page": page,
            "page_query": urlencode(query),
            "export_csv": _query({**query, "format": CSV}),
            "export_xlsx": _query({**query, "format": XLSX}),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def report_export(request: HttpRequest, slug: str) -> HttpResponseBase:
    """The report as CSV or XLSX: streamed now when small; else a background job, which a GET
    only offers (a page with the row count and a button) and a POST creates — a link, a
    prefetch or another site cannot start work on the user's behalf."""
    user = request.user
    report = _report(request, slug)
    back = reverse("portal:report", args=[slug])
    params = request.POST if request.method == "POST" else request.GET
    export = params.get("format", CSV)
    if export not in FORMATS:
        messages.error(
            request,
            _("Unknown export format “%(value)s”: use csv or xlsx.") % {"value": export[:20]},
        )
        return redirect(back)
    try:
        filters = parse_filters(user, report, params)
    except ServiceError as exc:
        messages.error(request, error_message(exc))
        return redirect(back)
    count = report.queryset(user, filters).count()
    if count <= settings.TEACHCLOUD_EXPORT_SYNC_MAX_ROWS:
        return export_response(
            export=export,
            filename=report.filename or report.slug,
            columns=report.export_columns,
            rows=report.rows(user, filters),
        )
    if request.method != "POST":
        return render(
            request,
            "reports/export_confirm.html",
            {
                "report": report,
                "count": count,
                "export": export,
                "fields": {**filters.as_query(), "format": export},
                "back": back + _query(filters.as_query()),
            },
        )
    job = jobs.export_job_create(
        owner=user, report=report, filters=filters, export=export, rows_total=count
    )
    messages.info(
        request,
        _(
            "%(count)d rows are too many to download at once: the file is being prepared. "
            "You may leave this page; we will email you the link when it is ready."
        )
        % {"count": count},
    )
    return redirect("portal:export_job", pk=job.pk)


# -- Export jobs -------------------------------------------------------------------------------


def _own_job(request: HttpRequest, pk: UUID) -> ExportJob:
    return get_object_or_404(ExportJob, pk=pk, owner=request.user)


def _job_context(request: HttpRequest, job: ExportJob) -> dict[str, Any]:
    try:
        title = get_report(request.user, job.report).title
    except ServiceError:
        title = job.report
    return {"job": job, "report_title": title, "running": not job.finished}


@login_required
def export_job(request: HttpRequest, pk: UUID) -> HttpResponse:
    job = _own_job(request, pk)
    jobs.export_job_seen(job=job)
    return render(request, "reports/export_job.html", _job_context(request, job))


@login_required
def export_job_progress(request: HttpRequest, pk: UUID) -> HttpResponse:
    """The htmx partial polled while the job runs (it stops polling once finished)."""
    job = _own_job(request, pk)
    jobs.export_job_seen(job=job)
    response = render(request, "reports/partials/export_progress.html", _job_context(request, job))
    if not is_htmx(request):
        response["Cache-Control"] = "no-store"
    return response


@login_required
def export_job_download(request: HttpRequest, pk: UUID) -> HttpResponseBase:
    job = _own_job(request, pk)
    path = jobs.export_job_path(job)
    if job.status != ExportStatus.DONE or path is None or not Path(path).is_file():
        raise Http404(_("This export has no file (not finished, failed or expired)."))
    content_type = (
        "text/csv; charset=utf-8"
        if job.format == CSV
        else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    return FileResponse(
        open(path, "rb"),  # FileResponse closes it
        as_attachment=True,
        filename=job.filename or Path(path).name,
        content_type=content_type,
    )


@login_required
def export_job_list(request: HttpRequest) -> HttpResponse:
    titles = {report.slug: report.title for report in reports_for(request.user)}
    recent = list(
        ExportJob.objects.filter(owner=request.user).order_by("-created_at")[:RECENT_JOBS]
    )
    for job in recent:
        job.report_title = titles.get(job.report, job.report)
    return render(
        request,
        "reports/export_jobs.html",
        {"jobs": recent, "keep_days": settings.TEACHCLOUD_EXPORT_KEEP_DAYS},
    )


# -- Statements --------------------------------------------------------------------------------


def _wallet_label(wallet: Wallet) -> str:
    if wallet.kind == WalletKind.PLATFORM:
        return _("Platform wallet")
    if wallet.project_id is not None:
        return f"{wallet.project.domain.name} · {wallet.project.name}"
    return wallet.domain.name if wallet.domain_id is not None else str(wallet.pk)


class StatementFilterForm(forms.Form):
    wallet = forms.TypedChoiceField(label=gettext_lazy("Wallet"), required=False, coerce=int)
    month = forms.CharField(
        label=gettext_lazy("Month"),
        required=False,
        widget=forms.TextInput(attrs={"type": "month", "placeholder": "YYYY-MM"}),
    )

    def __init__(self, *args: Any, wallets: list[Wallet], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["wallet"].choices = [("", _("All wallets"))] + [
            (wallet.pk, _wallet_label(wallet)) for wallet in wallets
        ]


@login_required
def statement_list(request: HttpRequest) -> HttpResponse:
    user = request.user
    wallets = sorted(
        wallets_visible_to(user).select_related("domain", "project__domain"), key=_wallet_label
    )
    queryset = statements_visible_to(user).prefetch_related(None).order_by("-month", "wallet_id")
    form = StatementFilterForm(request.GET or None, wallets=wallets)
    query: dict[str, str] = {}
    if form.is_bound:
        if form.is_valid():
            wallet, month = form.cleaned_data["wallet"], form.cleaned_data["month"].strip()
            try:
                if wallet not in (None, ""):
                    queryset = queryset.filter(wallet_id=wallet)
                    query["wallet"] = str(wallet)
                if month:
                    queryset = queryset.filter(month=parse_month(month))
                    query["month"] = month
            except ServiceError as exc:
                messages.error(request, error_message(exc))
                queryset = queryset.none()
        else:
            messages.error(request, _("Choose a wallet from the list."))
    page = Paginator(queryset, STATEMENT_PAGE_SIZE).get_page(request.GET.get("page"))
    for statement in page.object_list:
        statement.opening_rounded = q2(statement.opening_balance)
        statement.closing_rounded = q2(statement.closing_balance)
    return render(
        request,
        "reports/statements.html",
        {
            "form": form,
            "page": page,
            "statements": page.object_list,
            "filtered": bool(query),
            "page_query": urlencode(query),
            "has_wallets": bool(wallets),
        },
    )


def _statement(request: HttpRequest, pk: int) -> Statement:
    return get_object_or_404(statements_visible_to(request.user), pk=pk)


@login_required
def statement_detail(request: HttpRequest, pk: int) -> HttpResponse:
    statement = _statement(request, pk)
    lines = list(statement.lines.all())
    total = sum((line.amount for line in lines), Decimal(0))
    return render(
        request,
        "reports/statement_detail.html",
        {
            "statement": statement,
            "lines": [{"line": line, "rounded": q2(line.amount)} for line in lines],
            "opening_rounded": q2(statement.opening_balance),
            "closing_rounded": q2(statement.closing_balance),
            "total": total,
            "total_rounded": q2(total),
        },
    )


@login_required
def statement_pdf_view(request: HttpRequest, pk: int) -> HttpResponse:
    statement = _statement(request, pk)
    response = HttpResponse(statement_pdf(statement), content_type=PDF_MEDIA_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{statement_filename(statement)}"'
    return response
