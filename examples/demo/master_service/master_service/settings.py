"""Settings of the demo's master service: it owns the products and publishes their changes.

Everything that differs between runs comes from the environment, set by `examples/demo/run.py`:
- DEMO_DIR: folder of the SQLite database (and of the filesystem broker by default);
- DEMO_TRANSPORT / DEMO_URL: the broker (default kombu `filesystem://` in DEMO_DIR/broker);
- DEMO_EXCHANGE: exchange (topic prefix on Kafka) shared with the replica.
"""

from __future__ import annotations

import os
from pathlib import Path

import django

DEMO_DIR = Path(os.environ.get("DEMO_DIR", Path(__file__).resolve().parent.parent / ".demo"))
DEMO_DIR.mkdir(parents=True, exist_ok=True)  # run by hand, the databases go to ./.demo

SECRET_KEY = "cqrs-demo-master-not-secret"
DEBUG = True  # a local demo: runserver serves the admin's static files
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "master_service.urls"
STATIC_URL = "static/"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "dj_cqrs",
    "shop",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
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
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DEMO_DIR / "master.sqlite3",
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
    "master": {
        # Every event carries the time it was written, so the replica can measure the lag.
        "meta_function": "shop.cqrs.event_meta",
        "CQRS_MESSAGE_TTL": 3600,
        # The outbox (default) keeps sent events for a day: the demo counts them per type.
        "outbox": {"keep_days": 1},
    },
}

if os.environ.get("DEMO_SPANS_FILE"):  # tracing (issue 16): run.py prints one event's spans
    from _tracing import setup

    CQRS["tracing"] = setup("master")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django-cqrs": {"handlers": ["console"], "level": "WARNING"}},
}
