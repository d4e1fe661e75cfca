"""SQLite backend whose transactions start with BEGIN IMMEDIATE, for Django < 5.1.

Django 5.1 added `"OPTIONS": {"transaction_mode": "IMMEDIATE"}`; the test settings use this
backend instead on Django 4.2, so that tests running masters, relays and consumers against one
SQLite file wait for each other instead of failing with "database is locked".
"""
