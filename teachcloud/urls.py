from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from accounts import views as accounts_views
from teachcloud.api.docs import ApiDocsView

urlpatterns = [
    path("admin/", admin.site.urls),
    # Before allauth: the email address is a real-name field changed by admins (audited), so
    # allauth's add/remove/make-primary page is replaced by a read-only one at the same URL.
    path("accounts/email/", accounts_views.my_email, name="account_email"),
    path("accounts/", include("allauth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/v1/", include("teachcloud.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", ApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("teachcloud.portal_urls")),
]

# JSON {code, detail} on /api/ paths, the portal's pages elsewhere (teachcloud.api.errors).
handler400 = "teachcloud.api.errors.bad_request"
handler403 = "teachcloud.api.errors.permission_denied"
handler404 = "teachcloud.api.errors.page_not_found"
handler500 = "teachcloud.api.errors.server_error"

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
