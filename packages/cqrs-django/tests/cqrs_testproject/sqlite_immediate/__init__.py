"""SQLite backend that understands `"OPTIONS": {"transaction_mode": ...}` on Django < 5.1.

Django 5.1 added the option; the test settings use this backend on Django 4.2 so that the
tests, which run masters, relays and consumers against one SQLite file, get the same IMMEDIATE
transactions (and the same code paths, which read the option) on every Django they cover.
"""
