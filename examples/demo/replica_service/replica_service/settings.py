"""Settings of the demo's replica service: a storefront that keeps a read-only copy of products.

Everything that differs between runs comes from the environment, set by `examples/demo/run.py`:
- DEMO_DIR: folder of the SQLite database (and of the filesystem broker by default);
- DEMO_TRANSPORT / DEMO_URL: the broker (default kombu `filesystem://` in DEMO_DIR/broker);
- DEMO_EXCHANGE / DEMO_QUEUE: exchange shared with the master, and this service's queue.
"""

from __future__ import annotations

import os
from pathlib import Path

import django

DEMO_DIR = Path(os.environ.get("DEMO_DIR", Path(__file__).resolve().parent.parent / ".demo"))
DEMO_DIR.mkdir(parents=True, exist_ok=True)  # run by hand, the databases go to ./.demo

SECRET_KEY = "cqrs-demo-replica-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "replica_service.urls"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "dj_cqrs",  # tombstones of deleted rows
    "storefront",
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DEMO_DIR / "replica.sqlite3",
        "OPTIONS": {"timeout": 30},
    }
}
if django.VERSION >= (5, 1):
    # Writers take the lock when their transaction starts, so two processes writing this file
    # (the service and its consumer or relay) wait for each other instead of failing with
    # "database is locked" on a read-to-write upgrade.
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"

CQRS = {
    "transport": os.environ.get("DEMO_TRANSPORT", "kombu"),
    "url": os.environ.get("DEMO_URL", f"filesystem://{DEMO_DIR / 'broker'}"),
    "exchange": os.environ.get("DEMO_EXCHANGE", "cqrs"),
    "queue": os.environ.get("DEMO_QUEUE", "storefront"),
    "replica": {"CQRS_MAX_RETRIES": 5, "CQRS_RETRY_DELAY": 1},
}
if CQRS["transport"] == "kafka":  # join the consumer group in seconds rather than ~25 s
    CQRS["kafka"] = {"session_timeout_ms": 6000, "consumer": {"heartbeat.interval.ms": 1000}}

if os.environ.get("DEMO_SPANS_FILE"):  # tracing (issue 16): run.py prints one event's spans
    from _tracing import setup

    CQRS["tracing"] = setup("replica")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django-cqrs": {"handlers": ["console"], "level": "WARNING"}},
}
