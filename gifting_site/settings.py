"""Giftstream settings: everything that varies between deployments comes from the environment."""

import re
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A .env file is read only when asked for, so a stray file never changes a deployment silently.
if env.bool("DJANGO_READ_DOT_ENV_FILE", default=False):
    env.read_env(str(BASE_DIR / ".env"))

SECRET_KEY = env("SECRET_KEY", default="insecure-development-key-change-me")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    # daphne first, so `runserver` serves websockets in development.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "wallets",
    "gifts",
    "rankings",
    "relay",
    "refunds",
    "engagement",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "gifting_site.middleware.LazyMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "gifting_site.urls"

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
            ],
        },
    },
]

WSGI_APPLICATION = "gifting_site.wsgi.application"
ASGI_APPLICATION = "gifting_site.asgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# Money services open their own durable transactions; a request-wide transaction would nest them.
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Under an ASGI server (uvicorn, daphne) each request runs in a thread of its own, so a
# persistent connection would stay open for every finished thread until PostgreSQL refuses
# new ones (bench/throughput.py hit "too many clients" in seconds). So by default each
# request opens and closes its connection; production ASGI servers set DATABASE_POOL_SIZE,
# a per-process pool of that many connections reused across requests. CONN_MAX_AGE is for
# servers that reuse their threads (WSGI).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASE_POOL_SIZE = env.int("DATABASE_POOL_SIZE", default=0)
if DATABASE_POOL_SIZE and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend with a pool that replaces cut connections at once (see its docstring).
    DATABASES["default"]["ENGINE"] = "gifting_site.postgresql"
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": DATABASE_POOL_SIZE,
        "max_size": DATABASE_POOL_SIZE,
        "timeout": 10,
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent writers wait for the lock instead of failing at once. A deferred transaction
    # that reads and then writes cannot wait (SQLite fails the upgrade to a write lock at
    # once), so every transaction takes the write lock up front.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # A room hub waits for its next message with BZPOPMIN, up to channels_redis's 5 s;
                # redis-py's default read timeout is also 5 s, and a quiet room's wait would end
                # in a timeout error (the hub would take it for a lost layer) instead of "nothing".
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                # Each server process reads one channel for all its rooms; give it room for bursts.
                "capacity": 5000,
                # Deployments (or test runs) sharing one Redis keep their rooms apart by prefix.
                "prefix": env("CHANNEL_LAYER_PREFIX", default="giftstream"),
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"pool_class": "gifting_site.cache.ProcessWideConnectionPool"},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

GIFT_MERGE_WINDOW_MS = env.int("GIFT_MERGE_WINDOW_MS", default=100)
if not 50 <= GIFT_MERGE_WINDOW_MS <= 200:
    raise ImproperlyConfigured("GIFT_MERGE_WINDOW_MS must be between 50 and 200.")
# How often each server process checks for PK battles whose time is up (engagement.clock); 0: never.
PK_CLOCK_SECONDS = env.float("PK_CLOCK_SECONDS", default=0.5)
# A host's PK invite that not every other host accepted in this time is declined.
PK_INVITE_TTL_S = env.int("PK_INVITE_TTL_S", default=120)
if not 10 <= PK_INVITE_TTL_S <= 86400:
    raise ImproperlyConfigured("PK_INVITE_TTL_S must be between 10 and 86400.")
HOST_SHARE_PERCENT = env.int("HOST_SHARE_PERCENT", default=50)
if not 0 <= HOST_SHARE_PERCENT <= 100:
    raise ImproperlyConfigured("HOST_SHARE_PERCENT must be between 0 and 100.")
GIFT_SEND_RATE = env("GIFT_SEND_RATE", default="20/s")
# Coins anyone may spend on gifts per UTC day (unset: no limit for everyone; staff and people
# may still set their own, see wallets.models.SpendingLimit).
GIFT_DAILY_LIMIT = env.int("GIFT_DAILY_LIMIT", default=None)
if GIFT_DAILY_LIMIT is not None and GIFT_DAILY_LIMIT < 1:
    raise ImproperlyConfigured("GIFT_DAILY_LIMIT must be a positive number of coins, or unset.")
# A gift costing at least this much is logged at WARNING and listed under its own admin filter.
LARGE_GIFT_COINS = env.int("LARGE_GIFT_COINS", default=100_000)
SERVER_API_ROOM_RATE = env.int("SERVER_API_ROOM_RATE", default=20)
# The most viewer sends one process writes in one transaction (group commit); 1 writes each alone.
GIFT_GROUP_COMMIT_MAX = env.int("GIFT_GROUP_COMMIT_MAX", default=100)
if not 1 <= GIFT_GROUP_COMMIT_MAX <= 1000:
    raise ImproperlyConfigured("GIFT_GROUP_COMMIT_MAX must be between 1 and 1000.")

# The game vendor (ZEGO MiniGameEngine) that relay_game_gifts delivers relayed games' gifts to.
# Regional hosts serve too: https://mini-game-api-{sha,hkg,fra,lax,bom,sgp}.zego.im
GAME_VENDOR_URL = env("GAME_VENDOR_URL", default="https://mini-game-api.zego.im")
GAME_VENDOR_APP_ID = env("GAME_VENDOR_APP_ID", default="")
if GAME_VENDOR_APP_ID and not (GAME_VENDOR_APP_ID.isdigit() and int(GAME_VENDOR_APP_ID) < 2**32):
    raise ImproperlyConfigured("GAME_VENDOR_APP_ID must be the vendor's numeric AppId (uint32).")
GAME_VENDOR_SERVER_SECRET = env("GAME_VENDOR_SERVER_SECRET", default="")
GAME_VENDOR_CALLBACK_SECRET = env("GAME_VENDOR_CALLBACK_SECRET", default="")
GAME_VENDOR_TIMEOUT_S = env.float("GAME_VENDOR_TIMEOUT_S", default=5.0)
if not 0 < GAME_VENDOR_TIMEOUT_S <= 60:
    raise ImproperlyConfigured("GAME_VENDOR_TIMEOUT_S must be more than 0 and at most 60.")
GAME_VENDOR_MERGE_MS = env.int("GAME_VENDOR_MERGE_MS", default=100)
if not 50 <= GAME_VENDOR_MERGE_MS <= 200:
    raise ImproperlyConfigured("GAME_VENDOR_MERGE_MS must be between 50 and 200.")
GAME_VENDOR_BATCH = env.int("GAME_VENDOR_BATCH", default=50)
if not 1 <= GAME_VENDOR_BATCH <= 500:
    raise ImproperlyConfigured("GAME_VENDOR_BATCH must be between 1 and 500.")
GAME_VENDOR_MAX_ATTEMPTS = env.int("GAME_VENDOR_MAX_ATTEMPTS", default=20)
if GAME_VENDOR_MAX_ATTEMPTS < 1:
    raise ImproperlyConfigured("GAME_VENDOR_MAX_ATTEMPTS must be at least 1.")
# The avatar the vendor is sent for people without one (it requires an http or https URL).
GAME_VENDOR_DEFAULT_AVATAR = env("GAME_VENDOR_DEFAULT_AVATAR", default="")
if GAME_VENDOR_DEFAULT_AVATAR and not (
    re.fullmatch(r"https?://\S+", GAME_VENDOR_DEFAULT_AVATAR, re.IGNORECASE)
    and len(GAME_VENDOR_DEFAULT_AVATAR.encode()) <= 1024
):
    raise ImproperlyConfigured("GAME_VENDOR_DEFAULT_AVATAR must be an http or https URL of at most 1024 bytes.")
# How long every relay stops calling after the vendor refused our credentials or clock.
GAME_VENDOR_PAUSE_S = env.int("GAME_VENDOR_PAUSE_S", default=30)

# `Authorization: Bearer <METRICS_TOKEN>` reads /metrics (staff signed in always may). Unset: staff only.
METRICS_TOKEN = env("METRICS_TOKEN", default="")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").exists() else []

# Viewers sign in on the site's own page; the admin keeps its staff-only login at /admin/login/.
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

# A gift request is tiny; refuse anything large before parsing it.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "wallets.authentication.ProfileTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["gifting_site.parsers.StorableJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "gifting_site.errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"gift_send": GIFT_SEND_RATE},
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Giftstream API",
    "DESCRIPTION": "Virtual gifting for live-streaming rooms.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from this project's own static files: /api/docs/ works offline and never
    # changes under us with a CDN's "latest".
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOG_LEVEL = env("LOG_LEVEL", default="INFO")
# text: for people reading a console; json: one object per line, for a log pipeline.
LOG_FORMAT = env("LOG_FORMAT", default="text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured("LOG_FORMAT must be text or json.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "gifting_site.logs.TextFormatter"},
        "json": {"()": "gifting_site.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Django's own "django" logger prints to the console in DEBUG and passes every line on
    # to the root logger, which printed it again; here it only passes them on.
    "loggers": {"django": {"handlers": [], "level": LOG_LEVEL, "propagate": True}},
}
