"""Portal pages of reports (included into the "portal" namespace by teachcloud.portal_urls)."""

from django.urls import path

from reports import views

urlpatterns = [
    path("reports/", views.report_index, name="reports"),
    path("reports/<slug:slug>/", views.report_detail, name="report"),
    path("reports/<slug:slug>/export/", views.report_export, name="report_export"),
    path("exports/", views.export_job_list, name="export_jobs"),
    path("exports/<uuid:pk>/", views.export_job, name="export_job"),
    path("exports/<uuid:pk>/progress/", views.export_job_progress, name="export_job_progress"),
    path("exports/<uuid:pk>/download/", views.export_job_download, name="export_job_download"),
    path("statements/", views.statement_list, name="statements"),
    path("statements/<int:pk>/", views.statement_detail, name="statement_detail"),
    path("statements/<int:pk>/pdf/", views.statement_pdf_view, name="statement_pdf"),
]
