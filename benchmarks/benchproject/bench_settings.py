"""Django settings of the benchmark project; everything variable comes from the environment.

BENCH_DB=postgres|sqlite, BENCH_DB_NAME (database or file), BENCH_CQRS (JSON: the CQRS dict).
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

if os.environ.get("BENCH_DB", "postgres") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("BENCH_PG_PORT", "5432"),
            "USER": os.environ.get("BENCH_PG_USER", "postgres"),
            "NAME": os.environ.get("BENCH_DB_NAME", "cqrs_bench"),
            # A consumer should keep its connection: with the default 0, every batch reconnects.
            "CONN_MAX_AGE": 600,
            "CONN_HEALTH_CHECKS": True,
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("BENCH_DB_NAME", "/tmp/cqrs_bench.sqlite3"),
            "OPTIONS": {"timeout": 30},
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
