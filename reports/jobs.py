"""Background exports of reports (SPEC Reports: "long exports show progress").

A report with more rows than `TEACHCLOUD_EXPORT_SYNC_MAX_ROWS` is not streamed by the request:
`export_job_create` records an ExportJob and queues `reports.tasks.export_run` after commit;
`export_job_run` re-reads the report AS ITS OWNER (visibility and filters are checked again at
run time), writes the CSV or XLSX to a temporary file next to its final place, updating the
progress in short separate writes, then renames it into place. An owner who is not watching the
progress page when it ends gets the download link by email. `export_jobs_expire` (beat, daily)
deletes files and jobs older than TEACHCLOUD_EXPORT_KEEP_DAYS days.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from reports.catalog import Filters, Report, get_report, parse_filters
from reports.exports import CSV, FORMATS, XLSX, _csv_chunks, _xlsx_file
from reports.models import ExportJob, ExportStatus
from teachcloud.errors import ServiceError

log = logging.getLogger(__name__)

EXPORT_FOLDER = "exports"
PROGRESS_EVERY = 2000  # rows between two progress writes
WATCHING = timedelta(seconds=30)  # a progress poll this recent: the owner is watching


def export_dir() -> Path:
    path = Path(settings.MEDIA_ROOT) / EXPORT_FOLDER
    path.mkdir(parents=True, exist_ok=True)
    return path


def export_job_path(job: ExportJob) -> Path | None:
    """The job's finished file, or None."""
    if not job.file:
        return None
    return Path(settings.MEDIA_ROOT) / job.file


# -- Creating ----------------------------------------------------------------------------------


@transaction.atomic(durable=True)
def export_job_create(
    *, owner: Any, report: Report, filters: Filters, export: str, rows_total: int = 0
) -> ExportJob:
    """Record a background export of `report` for `owner` and queue it after commit."""
    if export not in FORMATS:
        raise ServiceError(
            _("Unknown export format “%(value)s”: use csv or xlsx.") % {"value": export[:20]},
            code="invalid_export",
        )
    job = ExportJob.objects.create(
        owner=owner,
        report=report.slug,
        filters=filters.as_query(),
        format=export,
        language=translation.get_language() or settings.LANGUAGE_CODE,
        rows_total=rows_total,
    )
    transaction.on_commit(lambda: _queue(job.pk))
    return job


def _queue(job_id: Any) -> None:
    from reports.tasks import export_run

    export_run.delay(str(job_id))


def export_job_seen(*, job: ExportJob, now: datetime | None = None) -> None:
    """The owner looked at the job's progress (one short write, no transaction needed)."""
    now = now or timezone.now()
    ExportJob.objects.filter(pk=job.pk).update(last_seen_at=now)
    job.last_seen_at = now


# -- Running -----------------------------------------------------------------------------------


def _claim(job_id: Any, now: datetime) -> ExportJob | None:
    with transaction.atomic(durable=True):
        job = (
            ExportJob.objects.select_for_update(of=("self",))
            .select_related("owner")
            .filter(pk=job_id, status__in=[ExportStatus.QUEUED, ExportStatus.RUNNING])
            .first()
        )
        if job is None:
            return None  # finished already (a repeated delivery of the task)
        job.status = ExportStatus.RUNNING
        job.started_at = now
        job.rows_done = 0
        job.save(update_fields=["status", "started_at", "rows_done"])
    return job


def _write(job: ExportJob, report: Report, filters: Filters, target: Path) -> int:
    """Write the file to `target`; returns the number of rows written."""
    owner = job.owner
    headers = [str(column.header) for column in report.export_columns]
    kinds = [column.kind for column in report.export_columns]
    written = 0

    def rows() -> Iterator:
        nonlocal written
        for written, row in enumerate(report.rows(owner, filters), start=1):
            yield row
            if written % PROGRESS_EVERY == 0:  # a short write of its own (autocommit)
                ExportJob.objects.filter(pk=job.pk).update(rows_done=written)

    if job.format == CSV:
        with open(target, "w", encoding="utf-8", newline="") as handle:
            for chunk in _csv_chunks(headers, rows()):
                handle.write(chunk)
    else:
        with _xlsx_file(headers, kinds, rows()) as source, open(target, "wb") as handle:
            while block := source.read(1024 * 1024):
                handle.write(block)
    return written


def export_job_run(*, job_id: Any, now: datetime | None = None) -> ExportJob | None:
    """Run a queued export job to its end (done or failed). Idempotent for finished jobs."""
    job = _claim(job_id, now or timezone.now())
    if job is None:
        return None
    folder = export_dir()
    final = folder / f"{job.pk}.{job.format}"
    partial = folder / f".{job.pk}.{job.format}.part"
    language = job.language or settings.LANGUAGE_CODE
    try:
        with translation.override(language):
            report = get_report(job.owner, job.report)
            filters = parse_filters(job.owner, report, job.filters)
            total = report.queryset(job.owner, filters).count()
            ExportJob.objects.filter(pk=job.pk).update(rows_total=total)
            job.rows_total = total
            written = _write(job, report, filters, partial)
            stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
            filename = f"{report.filename or report.slug}-{stamp}.{job.format}"
        os.replace(partial, final)
    except ServiceError as exc:
        return _fail(job, partial, _plain(exc, language))
    except Exception:
        log.exception("export job %s failed", job.pk)
        with translation.override(language):
            message = _("The export failed unexpectedly. Try again later.")
        return _fail(job, partial, message)
    finished = timezone.now()
    ExportJob.objects.filter(pk=job.pk).update(
        status=ExportStatus.DONE,
        rows_done=written,
        rows_total=written,
        file=f"{EXPORT_FOLDER}/{final.name}",
        filename=filename,
        finished_at=finished,
        error="",
    )
    job.refresh_from_db()
    _email_if_away(job, now=finished)
    return job


def _plain(exc: ServiceError, language: str) -> str:
    with translation.override(language):
        if exc.code == "not_found":
            return _("You can no longer open this report.")
        return str(exc.detail)


def _fail(job: ExportJob, partial: Path, message: str) -> ExportJob:
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    ExportJob.objects.filter(pk=job.pk).update(
        status=ExportStatus.FAILED, error=message[:2000], finished_at=timezone.now()
    )
    job.refresh_from_db()
    return job


def _email_if_away(job: ExportJob, *, now: datetime) -> None:
    """Mail the download link unless the owner polled the progress in the last WATCHING."""
    owner = job.owner
    if job.last_seen_at is not None and job.last_seen_at >= now - WATCHING:
        return
    if not owner.email or not owner.is_active:
        return
    base = settings.TEACHCLOUD_BASE_URL.rstrip("/")
    with translation.override(job.language or settings.LANGUAGE_CODE):
        try:
            title = str(get_report(owner, job.report).title)
        except ServiceError:
            title = job.report
        context = {
            "user": owner,
            "report": title,
            "rows": job.rows_done,
            "url": base + reverse("portal:export_job", args=[job.pk]),
            "download_url": base + reverse("portal:export_job_download", args=[job.pk]),
            "days": settings.TEACHCLOUD_EXPORT_KEEP_DAYS,
        }
        subject = settings.EMAIL_SUBJECT_PREFIX + _("Your export is ready: %(report)s") % {
            "report": context["report"]
        }
        body = render_to_string("reports/email/export_ready.txt", context)
    try:
        send_mail(subject=subject, message=body, from_email=None, recipient_list=[owner.email])
    except Exception:  # the file is there either way; the exports page lists it
        log.exception("export job %s: email to %s failed", job.pk, owner.email)
        return
    ExportJob.objects.filter(pk=job.pk).update(emailed_at=now)
    job.emailed_at = now


# -- Expiry ------------------------------------------------------------------------------------


def export_jobs_expire(*, now: datetime | None = None) -> int:
    """Delete the files and the jobs older than TEACHCLOUD_EXPORT_KEEP_DAYS; returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.TEACHCLOUD_EXPORT_KEEP_DAYS)
    old = list(ExportJob.objects.filter(created_at__lt=cutoff).values_list("pk", "file"))
    folder = Path(settings.MEDIA_ROOT)
    for pk, file in old:
        paths = [folder / file] if file else []
        paths += [folder / EXPORT_FOLDER / f".{pk}.{fmt}.part" for fmt in (CSV, XLSX)]
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    deleted, _detail = ExportJob.objects.filter(pk__in=[pk for pk, _file in old]).delete()
    if old:
        log.info("export jobs expired: %d", len(old))
    return deleted
