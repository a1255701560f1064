"""Ingest credentials: the management command and the admin."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.test import Client

from ml_audit.ingest.auth import authenticate, hash_token
from ml_audit.models import IngestCredential

pytestmark = pytest.mark.django_db


def _command(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("ml_audit_ingest_token", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_prints_the_token_once_and_stores_its_hash() -> None:
    out, err = _command("create", "scorer", "--tenant", "acme", "--tenant", "globex")

    token = out.strip()
    assert token.startswith("mla_")
    assert "shown once" in err
    credential = IngestCredential.objects.get()
    assert credential.token_hash == hash_token(token)
    assert credential.allowed_tenants == ["acme", "globex"]
    sender = authenticate(token)
    assert sender is not None
    assert (sender.service, sender.allowed_tenants) == ("scorer", frozenset({"acme", "globex"}))
    assert token not in _command("list")[0]


def test_create_needs_tenants_and_a_valid_service() -> None:
    with pytest.raises(CommandError, match="--tenant"):
        _command("create", "scorer")
    with pytest.raises(CommandError, match="actor_id"):
        _command("create", "", "--tenant", "acme")
    assert not IngestCredential.objects.exists()
    out, _ = _command("create", "batch", "--allow-no-tenant")
    assert authenticate(out.strip()) is not None
    assert IngestCredential.objects.get().allowed_tenants == [""]


def test_list_and_revoke_by_id_and_by_prefix() -> None:
    first = _command("create", "a", "--tenant", "t")[0].strip()
    second = _command("create", "b", "--tenant", "t")[0].strip()
    ids = dict(IngestCredential.objects.values_list("service_name", "pk"))

    listing = _command("list")[0]
    assert re.search(rf"^{ids['a']}\ta\t{re.escape(first[:12])}…\tt\t.*\tactive$", listing, re.M)

    assert "Revoked" in _command("revoke", str(ids["a"]))[0]
    assert authenticate(first) is None
    assert "already revoked" in _command("revoke", str(ids["a"]))[0]
    assert "Revoked" in _command("revoke", second[:12] + "…")[0]
    assert authenticate(second) is None
    assert _command("list")[0] == ""
    assert "revoked" in _command("list", "--all")[0]
    with pytest.raises(CommandError, match="no ingest credential"):
        _command("revoke", "999")
    with pytest.raises(CommandError, match="neither"):
        _command("revoke", "nonsense")


@pytest.fixture
def admin_client(client: Client) -> Client:
    user = User.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def test_the_admin_issues_a_token_shown_once(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/ml_audit/ingestcredential/add/",
        {"service_name": "scorer", "tenants": "acme, globex", "allow_no_tenant": "on"},
        follow=True,
    )

    assert response.status_code == 200
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    token = re.search(r"(mla_[A-Za-z0-9_-]{43})", " ".join(shown))
    assert token is not None, shown
    credential = IngestCredential.objects.get()
    assert credential.allowed_tenants == ["", "acme", "globex"]
    assert credential.token_hash == hash_token(token.group(1))
    # The change page shows the prefix, never the token.
    page = admin_client.get(f"/admin/ml_audit/ingestcredential/{credential.pk}/change/")
    assert credential.token_prefix in page.content.decode()
    assert token.group(1) not in page.content.decode()


def test_the_admin_refuses_a_credential_without_tenants(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/ml_audit/ingestcredential/add/", {"service_name": "scorer", "tenants": ""}
    )
    assert response.status_code == 200
    assert "Name at least one tenant" in response.content.decode()
    assert not IngestCredential.objects.exists()


def test_the_admin_revokes_and_never_deletes(admin_client: Client) -> None:
    out, _ = _command("create", "scorer", "--tenant", "acme")
    credential = IngestCredential.objects.get()

    response = admin_client.post(
        "/admin/ml_audit/ingestcredential/",
        {"action": "revoke_selected", "_selected_action": [str(credential.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    assert authenticate(out.strip()) is None
    credential.refresh_from_db()
    assert credential.revoked_at is not None
    delete = admin_client.get(f"/admin/ml_audit/ingestcredential/{credential.pk}/delete/")
    assert delete.status_code == 403
