"""Settings of the legacy service, written for django-cqrs 3.x (master and replica in one project).

CQRS_TEST_DB=postgres (127.0.0.1:5432) or mysql (MariaDB, 127.0.0.1:3306) selects that server;
the default is a fresh SQLite file. CQRS_TRANSPORT/CQRS_URL/CQRS_EXCHANGE/CQRS_QUEUE deploy it.
Every run gets its own database name, so parallel runs never share one.
"""

from __future__ import annotations

import os
import tempfile
import uuid

from legacy_project.cqrs_hooks import correlation_id_for

SECRET_KEY = "legacy-service-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
ROOT_URLCONF = "legacy_project.urls"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "mptt",
    "dj_cqrs",
    "legacy_project.master_app",
    "legacy_project.replica_app",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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

_RUN = os.environ.setdefault("LEGACY_SERVICE_RUN_ID", uuid.uuid4().hex[:10])

if os.environ.get("CQRS_TEST_DB", "sqlite") == "postgres":
    _NAME = f"legacy_{_RUN}"
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "USER": "postgres",
            "NAME": _NAME,
            "TEST": {"NAME": _NAME},
        },
    }
elif os.environ.get("CQRS_TEST_DB") == "mysql":
    _NAME = f"legacy_{_RUN}"
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "HOST": "127.0.0.1",
            "PORT": "3306",
            "USER": "root",
            "NAME": _NAME,
            "TEST": {"NAME": _NAME, "CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
        },
    }
else:
    _NAME = os.environ.get(
        "LEGACY_SERVICE_SQLITE",
        os.path.join(tempfile.gettempdir(), f"legacy_{_RUN}.sqlite3"),
    )
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _NAME,
            "TEST": {"NAME": _NAME},
            "OPTIONS": {"timeout": 30},
        },
    }

CQRS = {
    "transport": os.environ.get("CQRS_TRANSPORT", "legacy_project.transport.RecordingTransport"),
    "url": os.environ.get("CQRS_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    "exchange": os.environ.get("CQRS_EXCHANGE", "cqrs"),
    "queue": os.environ.get("CQRS_QUEUE", "legacy_replica"),
    "master": {
        "CQRS_AUTO_UPDATE_FIELDS": False,
        "CQRS_MESSAGE_TTL": 3600,
        "correlation_function": correlation_id_for,
        "meta_function": "legacy_project.cqrs_hooks.service_meta",
    },
    "replica": {
        "CQRS_MAX_RETRIES": 5,
        "CQRS_RETRY_DELAY": 1,
        "CQRS_QUERY_TIMEOUT": 5000,
    },
}
