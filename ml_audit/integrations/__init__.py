"""Integrations with other frameworks (Django REST framework)."""
