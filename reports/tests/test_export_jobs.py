"""Background exports: a report too big to stream becomes an ExportJob run by Celery (eager in
tests), with progress, a download for its owner only, an email when the owner is away, a plain
error when it fails, and expiry after a week."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from billing import services
from billing.models import Wallet
from reports import jobs
from reports.catalog import Filters, get_report
from reports.models import ExportJob, ExportStatus
from tenancy.models import Domain, DomainRole
from tenancy.services import domain_role_remove

pytestmark = pytest.mark.django_db

EXPORT = reverse("portal:report_export", args=["recharges"])


@pytest.fixture
def w(world, settings, tmp_path):
    settings.TEACHCLOUD_EXPORT_SYNC_MAX_ROWS = 2
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TEACHCLOUD_BASE_URL = "https://cloud.example.edu"
    services.platform_capacity_set(
        actor=world.platform, vcpus=1000, ram_gib=4000, disk_gib=100_000, overcommit="1"
    )
    for tenant in (world.domain, world.other_domain):
        services.wallet_open(domain=tenant)
    for tenant in (world.project, world.other_project):
        services.wallet_open(project=tenant)
    for number in range(4):
        recharge(world, world.project, f"{number + 1}.2500", f"P-{number}")
    recharge(world, world.domain, "100.0000", "D-0")
    recharge(world, world.other_domain, "777.0000", "FOREIGN")
    return world


def recharge(w, tenant, amount: str, reference: str) -> None:
    kind = {"domain": tenant} if isinstance(tenant, Domain) else {"project": tenant}
    services.wallet_recharge(
        actor=w.platform,
        wallet=Wallet.objects.get(**kind),
        amount=amount,
        method="bank",
        reference=reference,
    )


def client_for(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def start_export(client: Client, capture, *, execute: bool = True, **params):
    """Ask for an export; returns (response, the job, the captured on-commit callbacks)."""
    with capture(execute=execute) as callbacks:
        response = client.post(EXPORT, {"format": "csv", **params})
    assert response.status_code == 302, response.status_code
    job = ExportJob.objects.get()
    assert response["Location"] == reverse("portal:export_job", args=[job.pk])
    return response, job, callbacks


def download(client: Client, job: ExportJob):
    response = client.get(reverse("portal:export_job_download", args=[job.pk]))
    assert response.status_code == 200, response.status_code
    assert response["Content-Disposition"].startswith('attachment; filename="recharges-')
    return b"".join(response.streaming_content)


def test_a_big_export_becomes_a_job_that_runs_to_the_end(w, django_capture_on_commit_callbacks):
    client = client_for(w.domain_admin)
    _response, job, callbacks = start_export(client, django_capture_on_commit_callbacks)
    assert len(callbacks) == 1
    job.refresh_from_db()
    assert job.owner == w.domain_admin
    assert job.report == "recharges"
    assert job.status == ExportStatus.DONE
    assert job.rows_total == job.rows_done == 5  # the domain's and its project's, not FOREIGN
    assert job.finished_at is not None
    path = Path(jobs.export_job_path(job))
    assert path.is_file() and path.parent == Path(w_media(w)) / "exports"
    assert not list(path.parent.glob(".*.part"))

    html = client.get(reverse("portal:export_job", args=[job.pk])).content.decode()
    assert "100%" in html and reverse("portal:export_job_download", args=[job.pk]) in html
    progress = client.get(reverse("portal:export_job_progress", args=[job.pk]))
    text = progress.content.decode()
    assert progress.status_code == 200
    assert 'aria-valuenow="100"' in text and "The file is ready: 5 rows." in text
    assert "hx-get" not in text  # polling stops once finished

    rows = list(csv.reader(io.StringIO(download(client, job).decode("utf-8-sig"))))
    assert rows[0][0] == "Transaction"
    assert len(rows) == 6
    assert sorted(row[8] for row in rows[1:]) == ["D-0", "P-0", "P-1", "P-2", "P-3"]
    assert {row[5] for row in rows[1:]} == {"1.2500", "2.2500", "3.2500", "4.2500", "100.0000"}

    listing = client.get(reverse("portal:export_jobs")).content.decode()
    assert reverse("portal:export_job", args=[job.pk]) in listing
    assert "Recharges" in listing


def w_media(w) -> str:
    from django.conf import settings

    return settings.MEDIA_ROOT


def test_an_xlsx_job_holds_every_row_with_filters(w, django_capture_on_commit_callbacks):
    client = client_for(w.domain_admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(EXPORT, {"format": "xlsx", "project": w.project.pk})
    job = ExportJob.objects.get()
    assert response["Location"] == reverse("portal:export_job", args=[job.pk])
    job.refresh_from_db()
    assert job.filters == {"project": str(w.project.pk)}
    assert job.status == ExportStatus.DONE and job.rows_done == 4
    sheet = load_workbook(io.BytesIO(download(client, job))).active
    values = list(sheet.values)
    assert values[0][5] == "Amount (CNY)"
    assert len(values) == 5
    assert sorted(Decimal(str(row[5])) for row in values[1:]) == [
        Decimal("1.25"),
        Decimal("2.25"),
        Decimal("3.25"),
        Decimal("4.25"),
    ]


def test_small_exports_still_stream_at_once(w, settings):
    settings.TEACHCLOUD_EXPORT_SYNC_MAX_ROWS = 5
    response = client_for(w.domain_admin).get(EXPORT, {"format": "csv"})
    assert response.status_code == 200
    assert ExportJob.objects.count() == 0


def test_only_the_owner_sees_and_downloads_the_job(w, django_capture_on_commit_callbacks):
    _response, job, _callbacks = start_export(
        client_for(w.domain_admin), django_capture_on_commit_callbacks
    )
    for user in (w.domain_assistant, w.platform, w.other_admin):
        other = client_for(user)
        for name in (
            "portal:export_job",
            "portal:export_job_progress",
            "portal:export_job_download",
        ):
            assert other.get(reverse(name, args=[job.pk])).status_code == 404
        assert reverse("portal:export_job", args=[job.pk]) not in (
            other.get(reverse("portal:export_jobs")).content.decode()
        )
    assert Client().get(reverse("portal:export_job_download", args=[job.pk])).status_code == 302


def test_a_queued_job_polls_and_has_no_download_yet(w, django_capture_on_commit_callbacks):
    client = client_for(w.domain_admin)
    _response, job, callbacks = start_export(
        client, django_capture_on_commit_callbacks, execute=False
    )
    html = client.get(reverse("portal:export_job_progress", args=[job.pk])).content.decode()
    assert "Queued…" in html
    assert f'hx-get="{reverse("portal:export_job_progress", args=[job.pk])}"' in html
    assert "0 / 5" in html
    response = client.get(reverse("portal:export_job_download", args=[job.pk]))
    assert response.status_code == 404
    for callback in callbacks:
        callback()
    job.refresh_from_db()
    assert job.status == ExportStatus.DONE


def test_the_owner_who_went_away_gets_an_email(w, django_capture_on_commit_callbacks):
    client = client_for(w.domain_admin)
    _response, job, callbacks = start_export(
        client, django_capture_on_commit_callbacks, execute=False
    )
    client.get(reverse("portal:export_job", args=[job.pk]))  # watched once, then left
    ExportJob.objects.filter(pk=job.pk).update(
        last_seen_at=timezone.now() - jobs.WATCHING - timedelta(seconds=5)
    )
    mail.outbox.clear()
    for callback in callbacks:
        callback()
    job.refresh_from_db()
    assert job.status == ExportStatus.DONE
    assert job.emailed_at is not None
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [w.domain_admin.email]
    assert "Recharges" in message.subject
    link = "https://cloud.example.edu" + reverse("portal:export_job_download", args=[job.pk])
    assert link in message.body
    assert "5 rows" in message.body


def test_the_owner_watching_gets_no_email(w, django_capture_on_commit_callbacks):
    client = client_for(w.domain_admin)
    _response, job, callbacks = start_export(
        client, django_capture_on_commit_callbacks, execute=False
    )
    client.get(reverse("portal:export_job_progress", args=[job.pk]))  # polling right now
    job.refresh_from_db()
    assert job.last_seen_at is not None
    mail.outbox.clear()
    for callback in callbacks:
        callback()
    job.refresh_from_db()
    assert job.status == ExportStatus.DONE
    assert job.emailed_at is None
    assert mail.outbox == []


def test_the_email_goes_over_real_smtp(w, smtp, django_capture_on_commit_callbacks):
    start_export(client_for(w.project_admin), django_capture_on_commit_callbacks)
    job = ExportJob.objects.get()
    assert job.emailed_at is not None
    received = smtp.to(w.project_admin.email)
    assert len(received) == 1
    assert reverse("portal:export_job_download", args=[job.pk]) in smtp.body(received[0])


def test_a_job_whose_filters_became_invalid_fails_in_plain_words(
    w, django_capture_on_commit_callbacks
):
    # Created while the domain was in scope; by the time it runs it is not (scope re-checked).
    report = get_report(w.domain_admin, "recharges")
    with django_capture_on_commit_callbacks(execute=True):
        job = jobs.export_job_create(
            owner=w.domain_admin,
            report=report,
            filters=Filters(domain=w.other_domain),
            export="csv",
            rows_total=1,
        )
    job.refresh_from_db()
    assert job.status == ExportStatus.FAILED
    assert job.error == f"There is no domain #{w.other_domain.pk} you can see."
    assert job.file == "" and job.finished_at is not None
    assert not list((Path(w_media(w)) / "exports").glob("*"))
    client = client_for(w.domain_admin)
    html = client.get(reverse("portal:export_job", args=[job.pk])).content.decode()
    assert "The export failed:" in html and job.error in html
    assert client.get(reverse("portal:export_job_download", args=[job.pk])).status_code == 404


def test_a_job_of_a_report_the_owner_may_no_longer_open_fails(
    w, django_capture_on_commit_callbacks
):
    client = client_for(w.domain_assistant)
    _response, job, callbacks = start_export(
        client, django_capture_on_commit_callbacks, execute=False
    )
    grant = DomainRole.objects.get(domain=w.domain, user=w.domain_assistant)
    domain_role_remove(actor=w.platform, grant=grant)
    for callback in callbacks:
        callback()
    job.refresh_from_db()
    assert job.status == ExportStatus.FAILED
    assert job.error == "You can no longer open this report."
    assert job.rows_done == 0 and not job.file


def test_a_finished_job_is_not_run_again(w, django_capture_on_commit_callbacks):
    _response, job, _callbacks = start_export(
        client_for(w.domain_admin), django_capture_on_commit_callbacks
    )
    job.refresh_from_db()
    assert jobs.export_job_run(job_id=job.pk) is None
    assert ExportJob.objects.get(pk=job.pk).finished_at == job.finished_at


def test_expiry_deletes_old_files_and_jobs(w, django_capture_on_commit_callbacks):
    _response, job, _callbacks = start_export(
        client_for(w.domain_admin), django_capture_on_commit_callbacks
    )
    job.refresh_from_db()
    path = Path(jobs.export_job_path(job))
    assert path.is_file()
    assert jobs.export_jobs_expire(now=timezone.now() + timedelta(days=6)) == 0
    assert path.is_file() and ExportJob.objects.filter(pk=job.pk).exists()

    from reports.tasks import expire_exports

    assert expire_exports() == 0  # the beat task: nothing is a week old yet
    assert jobs.export_jobs_expire(now=timezone.now() + timedelta(days=7, minutes=1)) == 1
    assert not path.exists()
    assert not ExportJob.objects.filter(pk=job.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_the_job_runs_after_a_real_commit_with_progress_writes(
    world, settings, tmp_path, monkeypatch
):
    # No test transaction around it: the view's durable transaction commits, on_commit queues
    # the (eager) task, the run claims the job in its own transaction and writes its progress
    # every 2 rows while reading through the server-side cursor.
    settings.TEACHCLOUD_EXPORT_SYNC_MAX_ROWS = 2
    settings.MEDIA_ROOT = tmp_path / "media"
    monkeypatch.setattr(jobs, "PROGRESS_EVERY", 2)
    w = world
    services.platform_capacity_set(
        actor=w.platform, vcpus=1000, ram_gib=4000, disk_gib=100_000, overcommit="1"
    )
    services.wallet_open(domain=w.domain)
    services.wallet_open(project=w.project)
    for number in range(7):
        recharge(w, w.project, f"{number + 1}.0000", f"P-{number}")
    client = client_for(w.project_admin)
    response = client.post(EXPORT, {"format": "csv"})
    job = ExportJob.objects.get()
    assert response["Location"] == reverse("portal:export_job", args=[job.pk])
    assert job.status == ExportStatus.DONE and job.rows_done == 7
    rows = list(csv.reader(io.StringIO(download(client, job).decode("utf-8-sig"))))
    assert len(rows) == 8
    assert len(mail.outbox) == 1  # never polled: emailed


def test_a_large_export_is_offered_by_get_and_started_only_by_post(w, settings):
    settings.TEACHCLOUD_EXPORT_SYNC_MAX_ROWS = 2
    client = client_for(w.domain_admin)
    client.handler.enforce_csrf_checks = True
    response = client.get(EXPORT, {"format": "xlsx", "project": w.project.pk})
    assert response.status_code == 200
    html = response.content.decode()
    assert "4 rows: too many to download at once" in html
    assert 'name="csrfmiddlewaretoken"' in html and 'name="format" value="xlsx"' in html
    assert f'name="project" value="{w.project.pk}"' in html
    assert ExportJob.objects.count() == 0  # a GET starts nothing

    assert client.post(EXPORT, {"format": "xlsx"}).status_code == 403  # no CSRF token
    assert ExportJob.objects.count() == 0


def test_platform_staff_look_at_jobs_in_the_admin_read_only(w, django_capture_on_commit_callbacks):
    _response, job, _callbacks = start_export(
        client_for(w.domain_admin), django_capture_on_commit_callbacks
    )
    changelist = reverse("admin:reports_exportjob_changelist")
    change = reverse("admin:reports_exportjob_change", args=[job.pk])
    staff = client_for(w.platform)
    page = staff.get(changelist)
    assert page.status_code == 200 and "recharges" in page.content.decode()
    detail = staff.get(change)
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert staff.post(change, {"status": "failed"}).status_code == 403
    assert staff.get(reverse("admin:reports_exportjob_add")).status_code == 403
    assert client_for(w.finance).get(changelist).status_code == 403  # not a money view
