"""The reports (SPEC "Reports"): one definition per table, used by the API (`reports/{slug}/`),
the portal's report pages and the background export jobs alike.

A report is a scoped, filtered queryset plus a row converter. `Report.queryset(user, filters)`
is everything the viewer may see of it and nothing else (the scope rules are the selectors', the
visibility rule of the report itself is `tenancy.permissions`' REPORT_* actions); `convert(row)`
turns one database row into the final cells, one per column. Paginating is slicing the queryset,
exporting is streaming it through a server-side cursor (`reports.exports`), so memory is bounded
whatever the number of rows.

Filters are a period of local (Asia/Shanghai) dates, both ends inclusive, and for the reports
that have them a domain and a project the viewer can see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from reports.exports import CHUNK_SIZE, CST, Column
from teachcloud.errors import ServiceError
from tenancy.models import Domain, Project
from tenancy.permissions import Action, can
from tenancy.selectors import domains_visible_to, projects_visible_to

DOMAIN = "domain"
PROJECT = "project"
LONGEST_PERIOD_DAYS = 3660  # ten years: a period longer than this is a typo
FIRST_DATE, LAST_DATE = date(1970, 1, 1), date(9998, 12, 31)  # `until` is end + 1 day


@dataclass(frozen=True)
class Filters:
    """What a viewer asked for. Dates are local (Asia/Shanghai) and inclusive."""

    start: date | None = None
    end: date | None = None
    domain: Domain | None = None
    project: Project | None = None

    @property
    def since(self) -> datetime | None:
        """The first instant of the period (aware), or None for "from the beginning"."""
        return None if self.start is None else datetime.combine(self.start, time.min, CST)

    @property
    def until(self) -> datetime | None:
        """The first instant AFTER the period (aware, exclusive), or None for "until now"."""
        if self.end is None:
            return None
        return datetime.combine(self.end + timedelta(days=1), time.min, CST)

    def as_query(self) -> dict[str, str]:
        """The filters as query parameters (links, export jobs, pagination)."""
        query: dict[str, str] = {}
        if self.start:
            query["start"] = self.start.isoformat()
        if self.end:
            query["end"] = self.end.isoformat()
        if self.domain:
            query["domain"] = str(self.domain.pk)
        if self.project:
            query["project"] = str(self.project.pk)
        return query


@dataclass(frozen=True)
class Report:
    slug: str
    title: Any  # lazy translated
    description: Any  # lazy translated: one sentence on what a row is
    columns: Sequence[tuple[str, Column]]  # (JSON key, export column)
    action: Action  # who may open it: can(user, action) with obj None
    build: Callable[[Any, Filters], QuerySet]  # (user, filters) -> scoped, filtered, ordered
    convert: Callable[[Any], Sequence[Any]]  # one row of `build` -> the cells, one per column
    filters: frozenset[str] = field(default_factory=lambda: frozenset({DOMAIN, PROJECT}))
    filename: str = ""

    @property
    def keys(self) -> list[str]:
        return [key for key, _column in self.columns]

    @property
    def export_columns(self) -> list[Column]:
        return [column for _key, column in self.columns]

    def visible_to(self, user: Any) -> bool:
        return can(user, self.action)

    def queryset(self, user: Any, filters: Filters) -> QuerySet:
        return self.build(user, filters)

    def rows(self, user: Any, filters: Filters) -> Iterator[Sequence[Any]]:
        """Every row in scope, converted, read through a server-side cursor."""
        convert = self.convert
        return (
            convert(row) for row in self.queryset(user, filters).iterator(chunk_size=CHUNK_SIZE)
        )


REPORTS: dict[str, Report] = {}


def register(report: Report) -> Report:
    assert report.slug not in REPORTS, report.slug
    REPORTS[report.slug] = report
    return report


def reports_for(user: Any) -> list[Report]:
    """The reports this user may open, in catalogue order."""
    load()
    return [report for report in REPORTS.values() if report.visible_to(user)]


def get_report(user: Any, slug: str) -> Report:
    """The report, or a 404-shaped error when it does not exist or is not the user's to see."""
    load()
    report = REPORTS.get(slug)
    if report is None or not report.visible_to(user):
        raise ServiceError(_("No such report."), code="not_found", status=404)
    return report


def load() -> None:
    # The definitions register themselves on import (kept in their own module).
    import reports.definitions  # noqa: F401


def _date(value: str | None, name: str) -> date | None:
    if value in (None, ""):
        return None
    try:
        parsed = date.fromisoformat(value)
        if not FIRST_DATE <= parsed <= LAST_DATE:  # the period's instants must exist
            raise ValueError(value)
        return parsed
    except ValueError:
        raise ServiceError(
            _("“%(value)s” is not a date: use YYYY-MM-DD.") % {"value": str(value)[:20]},
            code="invalid_filter",
            fields={name: [_("Use YYYY-MM-DD.")]},
        ) from None


def _pk(value: str | None, name: str) -> int | None:
    if value in (None, ""):
        return None
    if not str(value).isdigit() or len(str(value)) > 12:
        raise ServiceError(
            _("“%(value)s” is not an id.") % {"value": str(value)[:20]},
            code="invalid_filter",
            fields={name: [_("Give the number of the item.")]},
        )
    return int(value)


def parse_filters(user: Any, report: Report, params: Mapping[str, Any]) -> Filters:
    """Filters from query parameters; a bad value is a ServiceError (400 `invalid_filter`) and a
    domain or project the viewer cannot see reads as unknown, exactly like a nonexistent one."""
    start = _date(params.get("start"), "start")
    end = _date(params.get("end"), "end")
    if start and end and end < start:
        raise ServiceError(
            _("The period ends before it starts."),
            code="invalid_filter",
            fields={"end": [_("Choose an end on or after the start.")]},
        )
    if start and end and (end - start).days > LONGEST_PERIOD_DAYS:
        raise ServiceError(_("The period is longer than ten years."), code="invalid_filter")
    domain = project = None
    domain_id = _pk(params.get("domain"), "domain")
    project_id = _pk(params.get("project"), "project")
    if domain_id is not None and DOMAIN in report.filters:
        domain = domains_visible_to(user).filter(pk=domain_id).first()
        if domain is None:
            raise ServiceError(
                _("There is no domain #%(id)d you can see.") % {"id": domain_id},
                code="invalid_filter",
                fields={"domain": [_("Unknown domain.")]},
            )
    if project_id is not None and PROJECT in report.filters:
        project = projects_visible_to(user).filter(pk=project_id).first()
        if project is None:
            raise ServiceError(
                _("There is no project #%(id)d you can see.") % {"id": project_id},
                code="invalid_filter",
                fields={"project": [_("Unknown project.")]},
            )
    return Filters(start=start, end=end, domain=domain, project=project)


REPORT_SLUG_HELP = gettext_lazy("The report's name, as listed by `reports/`.")
