"""The read-only REST API over the audit trail (Django REST framework + django-filter).

Mount it with ``path("api/ml-audit/", include("ml_audit.api.urls"))``; see :mod:`.views` for the
endpoints, :mod:`.filters` for the query parameters and :mod:`.permissions` for who may read.
Needs the ``drf`` extra (``pip install "django-ml-audit[drf]"``).
"""
