"""Settings shared by every environment. Everything that differs comes from the environment."""

import json
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "teachcloud.admin_site.TeachCloudAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "axes",
    "accounts",
    "tenancy",
    "billing",
    "compute",
    "reports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "tenancy.middleware.AuditContextMiddleware",
    "accounts.middleware.MfaEnrolmentMiddleware",
    # Last: turns a sign-in to a locked account into its answer (accounts.signin_limits).
    "axes.middleware.AxesMiddleware",
]

# Content-Security-Policy (django-csp) on every answer: pages, API, Swagger UI, admin. Scripts
# and styles come from our own static files only — no inline <script>, style="" or on* handler,
# no eval (htmx's is switched off in base.html) — so an injected tag or attribute does not run.
# Images may be data: URIs (the TOTP QR code, Bootstrap's icons). Nothing is framed: a VM's
# console (noVNC) opens in a tab of its own, and no site may frame the portal.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "frame-src": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
        "base-uri": [SELF],
        "object-src": [NONE],
    }
}

ROOT_URLCONF = "teachcloud.urls"
WSGI_APPLICATION = "teachcloud.wsgi.application"
ASGI_APPLICATION = "teachcloud.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "tenancy.context_processors.portal",
                "compute.context_processors.compute",
            ],
        },
    }
]

# Database: PostgreSQL everywhere (DATABASES in local.py, test.py, production.py).
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    # First: refuses every sign-in to a locked account before a password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "portal:dashboard"
LOGOUT_REDIRECT_URL = "account_login"

# Internationalisation: Chinese (simplified) first, English second; China Standard Time.
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True
CURRENCY = "CNY"

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_ROOT = env.path("DJANGO_MEDIA_ROOT", default=str(VAR_DIR / "media"))
MEDIA_URL = "/media/"
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://teachcloud")}

# Email: console in development, SMTP (EMAIL_URL=smtp://user:pass@host:port) in production.
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="TeachCloud <noreply@teachcloud.local>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_SUBJECT_PREFIX = "[TeachCloud] "

# django-allauth: no open sign-up, login by username or email, verified email, MFA by TOTP.
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_EMAIL_SUBJECT_PREFIX = EMAIL_SUBJECT_PREFIX
ACCOUNT_RATE_LIMITS = {
    "login_failed": "10/m/ip,5/5m/key",
    "reset_password": "20/m/ip,5/m/key",
    "change_password": "5/m/user",
}
# django-axes: failed sign-ins are counted per account (not per address) across the portal, the
# admin and POST /api/v1/auth/token/ (accounts.signin_limits). After TEACHCLOUD_SIGNIN_FAILURE_LIMIT
# failures with no pause of TEACHCLOUD_SIGNIN_LOCKOUT_MINUTES between them, the account is locked,
# whatever the password, until that many minutes after the last failure. Attempts during a lock
# are refused without extending it; a successful sign-in clears the count. Only failures are
# kept (no log of successful sign-ins); platform staff see and delete them in the admin.
AXES_ENABLED = True
AXES_FAILURE_LIMIT = env.int("TEACHCLOUD_SIGNIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("TEACHCLOUD_SIGNIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username"]
AXES_USERNAME_CALLABLE = "accounts.signin_limits.account_key"
AXES_CLIENT_IP_CALLABLE = "accounts.signin_limits.client_address"
AXES_LOCKOUT_CALLABLE = "accounts.signin_limits.lockout_response"
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_DISABLE_ACCESS_LOG = True
AXES_HTTP_RESPONSE_CODE = 429
# axes.W006 asks for the address in the lockout key. Deliberately not: per address, a school
# behind one NAT address would be locked out together, and addresses are limited already (DRF's
# throttle on the token endpoint, allauth's ACCOUNT_RATE_LIMITS on the portal).
SILENCED_SYSTEM_CHECKS = ["axes.W006"]
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "TeachCloud"
MFA_RECOVERY_CODE_COUNT = 10

# TeachCloud's own switches.
# Who must enrol in MFA before using the portal: platform staff and domain/project admins.
TEACHCLOUD_MFA_ENFORCED = env.bool("TEACHCLOUD_MFA_ENFORCED", default=True)
TEACHCLOUD_MFA_REQUIRED_ROLES = env.list(
    "TEACHCLOUD_MFA_REQUIRED_ROLES", default=["platform", "domain_admin", "project_admin"]
)
TEACHCLOUD_THROTTLE_ENABLED = env.bool("TEACHCLOUD_THROTTLE_ENABLED", default=True)
# API tokens (django-rest-knox: stored as SHA-512 digests) expire this many hours after they are
# made; a day covers a lab session or a night's script without leaving keys valid for weeks.
TEACHCLOUD_TOKEN_TTL_HOURS = env.int("TEACHCLOUD_TOKEN_TTL_HOURS", default=24)
if TEACHCLOUD_TOKEN_TTL_HOURS <= 0:
    raise ImproperlyConfigured("TEACHCLOUD_TOKEN_TTL_HOURS must be a positive number of hours.")
# Reverse proxies in front of the app that append to X-Forwarded-For (nginx: 1). The client's
# address is taken that many places from the right; 0 = REMOTE_ADDR, X-Forwarded-For ignored.
TEACHCLOUD_TRUSTED_PROXIES = env.int("TEACHCLOUD_TRUSTED_PROXIES", default=0)
# The public enrollment form: at most N submissions per client address per window (seconds).
TEACHCLOUD_JOIN_RATE = (10, 600)
TEACHCLOUD_ROSTER_MAX_ROWS = 20000
TEACHCLOUD_ROSTER_MAX_BYTES = 5 * 1024 * 1024
# Imports with at most this many rows run inside the request; larger ones go to Celery.
TEACHCLOUD_ROSTER_INLINE_ROWS = 200
# Billing enforcement and notifications (SPEC Locking 3, Notifications).
TEACHCLOUD_BUDGET_ALERTS = [50, 80, 90]  # percent of a member's budget, alerted once each
TEACHCLOUD_MAIL_RATE = (5, 600)  # at most 5 emails per recipient address per 600 s
TEACHCLOUD_WEBHOOK_TIMEOUT = 5  # seconds
# Webhooks go to the internet only: an address that resolves to a loopback, private,
# link-local or otherwise non-public IP is refused when saved and when posted (tenant admins
# type these URLs; the server must not probe its own network for them). Redirects are not
# followed. The demo and the tests post to 127.0.0.1 and switch this on.
TEACHCLOUD_WEBHOOK_ALLOW_PRIVATE = env.bool("TEACHCLOUD_WEBHOOK_ALLOW_PRIVATE", default=False)
# Reports: exports up to this many rows stream at once (about a second); larger ones run as a
# background job (reports.jobs) whose file is kept TEACHCLOUD_EXPORT_KEEP_DAYS days.
TEACHCLOUD_EXPORT_SYNC_MAX_ROWS = env.int("TEACHCLOUD_EXPORT_SYNC_MAX_ROWS", default=100_000)
TEACHCLOUD_EXPORT_KEEP_DAYS = 7

REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes "not signed in" a 401 rather than a 403.
    # knox's tokens: `Authorization: Token <key>`, stored hashed, expiring, revocable.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["teachcloud.api.permissions.IsAuthenticatedAndEnrolled"],
    "DEFAULT_PAGINATION_CLASS": "teachcloud.api.pagination.PageSizePagination",
    "PAGE_SIZE": 30,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "teachcloud.api.errors.exception_handler",
    # JSON only: no browsable HTML API (Swagger UI at /api/docs/ documents it).
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "teachcloud.api.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_THROTTLE_RATES": {"auth_token": "10/min"},
    # Throttles identify the client like teachcloud.net.client_ip: X-Forwarded-For is believed
    # only as far as the trusted proxies (DRF's default None would trust all of it).
    "NUM_PROXIES": TEACHCLOUD_TRUSTED_PROXIES,
    "COERCE_DECIMAL_TO_STRING": True,
    "DATETIME_FORMAT": "iso-8601",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# django-rest-knox: tokens are made by accounts.services.token_create (the expiry comes from
# TEACHCLOUD_TOKEN_TTL_HOURS there; TOKEN_TTL is knox's own default for the same), never renewed
# by use, and sent with the same `Token` prefix as before.
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=TEACHCLOUD_TOKEN_TTL_HOURS),
    "AUTO_REFRESH": False,
    "AUTH_HEADER_PREFIX": "Token",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "TeachCloud API",
    "DESCRIPTION": "Tenancy, allocations, billing and self-service VMs of a teaching cloud.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema is public (it describes the API, not data), so a client with an expired
    # token can still read it.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Enums that share a field name ("status", "role") get stable, readable component names.
    "ENUM_NAME_OVERRIDES": {
        "TenantStatusEnum": "tenancy.models.TenantStatus",
        "ProjectRoleEnum": "tenancy.models.ProjectRole",
        "DomainRoleEnum": "tenancy.models.DomainRoleKind",
        "RequestStatusEnum": "billing.models.RequestStatus",
        "ServerStatusEnum": "compute.models.ServerStatus",
        "ServerTaskEnum": "compute.models.ServerTask",
        "StopCauseEnum": "compute.models.StopCause",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "teachcloud.api.schema.add_error_responses",
    ],
    # Swagger UI served from our own static files (drf-spectacular-sidecar), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery: JSON only, bounded task time, beat schedule kept in the database.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=None)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_TIME_LIMIT = 30 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 25 * 60
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Absolute address of the portal, for links in emails.
TEACHCLOUD_BASE_URL = env("TEACHCLOUD_BASE_URL", default="http://127.0.0.1:8000")

# Compute (OpenStack, compute.cloud): an active CloudCredential (admin) wins; else
# TEACHCLOUD_CLOUD (a cloud name in clouds.yaml, or openstack.connect() kwargs as JSON); else
# OS_CLOUD.
_cloud = env("TEACHCLOUD_CLOUD", default="").strip()
TEACHCLOUD_CLOUD = (
    (json.loads(_cloud) if _cloud.startswith("{") else {"cloud": _cloud}) if _cloud else None
)
# Label the portal "simulated cloud" (the development cloud in devcloud/).
TEACHCLOUD_CLOUD_SIMULATED = env.bool("TEACHCLOUD_CLOUD_SIMULATED", default=False)
TEACHCLOUD_COMPUTE_TIMEOUT = env.float("TEACHCLOUD_COMPUTE_TIMEOUT", default=30.0)  # s per call
TEACHCLOUD_COMPUTE_RETRIES = env.int("TEACHCLOUD_COMPUTE_RETRIES", default=2)  # idempotent calls
TEACHCLOUD_COMPUTE_BACKOFF = env.float("TEACHCLOUD_COMPUTE_BACKOFF", default=1.0)  # s, doubling
# Network of new servers: "auto" (Nova allocates), "none", or comma-separated network ids.
TEACHCLOUD_COMPUTE_NETWORK = env("TEACHCLOUD_COMPUTE_NETWORK", default="auto")
# Role the service account takes in each Keystone project it creates (to boot servers there).
TEACHCLOUD_COMPUTE_PROJECT_ROLE = env("TEACHCLOUD_COMPUTE_PROJECT_ROLE", default="member")
# Keystone domain name = prefix + TeachCloud domain code; project name = project code.
TEACHCLOUD_COMPUTE_NAME_PREFIX = env("TEACHCLOUD_COMPUTE_NAME_PREFIX", default="tc-")
# Fernet key for stored cloud passwords (compute.secrets); empty: derived from SECRET_KEY.
TEACHCLOUD_CREDENTIALS_KEY = env("TEACHCLOUD_CREDENTIALS_KEY", default="")
# How long a build/action task waits for the cloud before the sync takes over, when a running
# task counts as lost, and how often the task polls (seconds).
TEACHCLOUD_COMPUTE_BUILD_WAIT = env.float("TEACHCLOUD_COMPUTE_BUILD_WAIT", default=120.0)
TEACHCLOUD_COMPUTE_ACTION_WAIT = env.float("TEACHCLOUD_COMPUTE_ACTION_WAIT", default=60.0)
TEACHCLOUD_COMPUTE_TASK_STALE = env.float("TEACHCLOUD_COMPUTE_TASK_STALE", default=600.0)
TEACHCLOUD_COMPUTE_POLL_INTERVAL = env.float("TEACHCLOUD_COMPUTE_POLL_INTERVAL", default=0.5)
# A lock, unlock, budget stop or purge queues the compute task at commit (beat stays the net).
TEACHCLOUD_COMPUTE_REQUESTS_NOW = env.bool("TEACHCLOUD_COMPUTE_REQUESTS_NOW", default=True)
# The compute sync (compute.sync): what to do with servers in our cloud projects the portal does
# not know ("report", "adopt" when their metadata names a member, "delete"), and after how many
# minutes a build that never reached the cloud is given up (error, reservation released).
TEACHCLOUD_COMPUTE_ORPHANS = env("TEACHCLOUD_COMPUTE_ORPHANS", default="report")
TEACHCLOUD_COMPUTE_STUCK_BUILD_MINUTES = env.int(
    "TEACHCLOUD_COMPUTE_STUCK_BUILD_MINUTES", default=15
)
