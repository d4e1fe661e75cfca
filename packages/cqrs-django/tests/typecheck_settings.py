"""Django settings for the django-stubs mypy plugin (`hatch run types`).

The plugin imports the installed apps' models to type the ORM. Only `dj_cqrs` and the
contrib apps its modules use are installed, so that the check needs no test app, database or
broker.
"""

from __future__ import annotations

SECRET_KEY = "cqrs-typecheck-only"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "django.contrib.sessions",
    "dj_cqrs",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CQRS = {"transport": "memory", "queue": "typecheck"}
