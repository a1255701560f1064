"""Upgrade tests: a database created by django-ml-audit 0.2.0, migrated by this project."""
