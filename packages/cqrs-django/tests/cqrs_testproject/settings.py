"""Settings of the test project: master and replica apps in one Django project.

Environment knobs (also read by subprocesses such as `manage.py cqrs_consume` in tests):
- CQRS_TEST_DB: `sqlite` (default), `postgres` (127.0.0.1:5432, user postgres) or `mysql`
  (MySQL/MariaDB at 127.0.0.1:3306, user root without password; needs mysqlclient).
- CQRS_TEST_DB_NAME: database name (PostgreSQL, MySQL) or file (SQLite); unique per run by
  default. pytest-django creates it (TEST NAME is the same name) and drops it at the end.
- CQRS_TEST_MYSQL_ISOLATION: the MySQL `isolation_level` option (default "read committed").
- CQRS_TEST_TRANSPORT / CQRS_TEST_URL / CQRS_TEST_QUEUE: the transport settings.
- CQRS_TEST_SETTINGS: a JSON object merged into `CQRS` (its `master` and `replica` dicts are
  merged key by key), e.g. '{"exchange": "x1", "transport_options": {...}}'; used by the root
  end-to-end tests to point `cqrs_consume` subprocesses at unique broker names.
- CQRS_TEST_SQLITE_TRANSACTION_MODE: SQLite `transaction_mode` (e.g. IMMEDIATE, so that a
  master and a consumer process writing one file wait for each other instead of failing).
- CQRS_TEST_ATTEMPTS_DIR: folder where `replica_app.TallyRef` counts its apply attempts.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid

import django

SECRET_KEY = "cqrs-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
ROOT_URLCONF = "cqrs_testproject.urls"
STATIC_URL = "/static/"  # the live server (browser tests) needs it

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "dj_cqrs",
    "cqrs_testproject.master_app",
    "cqrs_testproject.replica_app",
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
            ]
        },
    }
]

_RUN_ID = os.environ.setdefault("CQRS_TEST_RUN_ID", uuid.uuid4().hex[:10])

if os.environ.get("CQRS_TEST_DB", "sqlite") == "postgres":
    _name = os.environ.get("CQRS_TEST_DB_NAME", f"cqrs_{_RUN_ID}")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("CQRS_TEST_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("CQRS_TEST_PG_PORT", "5432"),
            "USER": "postgres",
            "NAME": _name,
            "TEST": {"NAME": _name},
        }
    }
elif os.environ.get("CQRS_TEST_DB") == "mysql":
    _name = os.environ.get("CQRS_TEST_DB_NAME", f"cqrs_{_RUN_ID}")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "HOST": os.environ.get("CQRS_TEST_MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("CQRS_TEST_MYSQL_PORT", "3306"),
            "USER": os.environ.get("CQRS_TEST_MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("CQRS_TEST_MYSQL_PASSWORD", ""),
            "NAME": _name,
            "TEST": {"NAME": _name, "CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
            # Django's own isolation default (READ COMMITTED) unless a test run asks for another
            # one, e.g. "repeatable read", the server's default, to prove the consumer copes.
            "OPTIONS": {
                "charset": "utf8mb4",
                "isolation_level": os.environ.get("CQRS_TEST_MYSQL_ISOLATION", "read committed"),
            },
        }
    }
else:
    _name = os.environ.get(
        "CQRS_TEST_DB_NAME", os.path.join(tempfile.gettempdir(), f"cqrs_{_RUN_ID}.sqlite3")
    )
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _name,
            "TEST": {"NAME": _name},
            "OPTIONS": {"timeout": 30},
        }
    }
    # IMMEDIATE by default: the tests run masters, outbox publishers and consumers against one
    # SQLite file at once, as the README advises users to configure it. Django < 5.1 has no
    # `transaction_mode`: a backend of the test project adds it.
    _mode = os.environ.get("CQRS_TEST_SQLITE_TRANSACTION_MODE", "IMMEDIATE")
    if _mode:
        DATABASES["default"]["OPTIONS"]["transaction_mode"] = _mode
    if django.VERSION < (5, 1):
        DATABASES["default"]["ENGINE"] = "cqrs_testproject.sqlite_immediate"

CQRS = {
    "transport": os.environ.get("CQRS_TEST_TRANSPORT", "memory"),
    "url": os.environ.get("CQRS_TEST_URL", f"memory://tests_{_RUN_ID}"),
    "queue": os.environ.get("CQRS_TEST_QUEUE", "replica"),
    "master": {"CQRS_AUTO_UPDATE_FIELDS": False, "CQRS_MESSAGE_TTL": 86400},
    "replica": {"CQRS_MAX_RETRIES": 30, "CQRS_RETRY_DELAY": 2},
}

_extra = json.loads(os.environ.get("CQRS_TEST_SETTINGS") or "{}")
for _key, _value in _extra.items():
    if _key in ("master", "replica") and isinstance(_value, dict):
        CQRS[_key] = {**CQRS[_key], **_value}
    else:
        CQRS[_key] = _value

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django-cqrs": {"handlers": ["console"], "level": "WARNING"}},
}
