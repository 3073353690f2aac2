"""Swagger UI at /api/docs/ under the same Content-Security-Policy as the portal."""

from drf_spectacular.views import SpectacularSwaggerSplitView


class ApiDocsView(SpectacularSwaggerSplitView):
    """drf-spectacular's split view serves the start script as a file of its own (`?script`)
    instead of inlining it; our template (templates/api/swagger_ui.html) also takes the page's
    inline <style> to a static file, so the page needs no 'unsafe-inline' exception."""

    template_name = "api/swagger_ui.html"
