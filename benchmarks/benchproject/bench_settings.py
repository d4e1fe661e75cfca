"""Django settings of the benchmark project; everything variable comes from the environment.

BENCH_DB=postgres|mariadb|sqlite, BENCH_DB_NAME (database or file), BENCH_CQRS (JSON: the CQRS
dict), BENCH_CONN_MAX_AGE. The same module serves this repository's dj_cqrs and django-cqrs 3.1.0
(whichever the interpreter running it has installed).
"""

from __future__ import annotations

import json
import os

SECRET_KEY = "cqrs-benchmarks-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "dj_cqrs", "bench_app"]

ENGINE = os.environ.get("BENCH_DB", "postgres")
CONN_MAX_AGE = int(os.environ.get("BENCH_CONN_MAX_AGE", "0"))
"""Django's default 0 is what a django-cqrs 3.x service has; the tuned runs set 600 (a consumer
that keeps its connection; with 0, `close_old_connections()` reconnects for every batch)."""

if ENGINE == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("BENCH_PG_PORT", "5432"),
            "USER": os.environ.get("BENCH_PG_USER", "postgres"),
            "NAME": os.environ.get("BENCH_DB_NAME", "cqrs_bench"),
            "CONN_MAX_AGE": CONN_MAX_AGE,
            "CONN_HEALTH_CHECKS": CONN_MAX_AGE > 0,
        }
    }
elif ENGINE == "mariadb":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "HOST": os.environ.get("BENCH_MARIADB_HOST", "127.0.0.1"),
            "PORT": os.environ.get("BENCH_MARIADB_PORT", "3306"),
            "USER": os.environ.get("BENCH_MARIADB_USER", "root"),
            "PASSWORD": os.environ.get("BENCH_MARIADB_PASSWORD", ""),
            "NAME": os.environ.get("BENCH_DB_NAME", "cqrs_bench"),
            "CONN_MAX_AGE": CONN_MAX_AGE,
            "CONN_HEALTH_CHECKS": CONN_MAX_AGE > 0,
            "OPTIONS": {"charset": "utf8mb4"},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("BENCH_DB_NAME", "/tmp/cqrs_bench.sqlite3"),
            # IMMEDIATE: the saving thread and the outbox publisher write one file; without it
            # a deferred transaction that upgrades its lock waits in SQLite's busy handler.
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
        }
    }

CQRS = json.loads(
    os.environ.get("BENCH_CQRS") or '{"transport": "memory", "url": "memory://bench"}'
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django-cqrs": {"handlers": ["console"], "level": "ERROR"}},
}
