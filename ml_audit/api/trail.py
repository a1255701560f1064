"""Read-only API over the trail's tamper evidence: seals, a prediction's seal with its inclusion
proof, and legal holds.

=====================================  =========================================================
``GET seals/``                         the seals, newest first (cursor or page pagination)
``GET seals/{id}/``                    one seal by its number
``GET predictions/{uuid}/seal/``       the seal covering one prediction, the checks it passes
                                       and its inclusion proof (``ml_audit.inclusion/1``)
``GET holds/``                         legal holds (placements and releases), newest first
``GET holds/{uuid}/``                  one hold
=====================================  =========================================================

Permissions: ``ML_AUDIT['API_PERMISSION_CLASSES']`` as for every endpoint, **and**
``ml_audit.view_seal`` (seals, a prediction's seal) or ``ml_audit.view_legalhold`` (holds).

Tenant scope: a seal covers the rows of every tenant, and its head holds no row's content, no
tenant, actor or model: only counts per table, times and hashes. Seals are therefore shown to
every user holding ``view_seal``, tenant-scoped or not (a scoped user learns how many rows all
tenants recorded per seal, nothing else). A prediction's seal is a 404 unless the prediction is
visible to the user (the API's tenant scope); its audit path holds hashes of subtrees only,
from which no other row's content or id can be read. Holds are tenant-scoped
(:func:`ml_audit.api.access.visible_holds`): a scoped user sees the placements on its tenants
and their releases, never a placement without a tenant.

Every request is access-logged as ``seals-list``, ``seals-detail``, ``predictions-seal`` (with
the prediction's id in ``returned_ids``), ``holds-list``, ``holds-detail``.

The JSON shapes are :func:`ml_audit.sealing.proof.seal_json` and
:meth:`~ml_audit.sealing.proof.RowProof.as_json`; the serializers below declare them for the
OpenAPI document and render through those functions, so there is one definition of each.
"""

from __future__ import annotations

import uuid
from typing import Any

import django_filters  # type: ignore[import-untyped]
from django.db.models import QuerySet
from django.http import Http404
from django_filters.rest_framework import DjangoFilterBackend  # type: ignore[import-untyped]
from rest_framework import serializers, viewsets
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from ml_audit import store
from ml_audit.api import access, filters, permissions, views
from ml_audit.retention_models import HoldAction, LegalHold
from ml_audit.seal_models import Seal
from ml_audit.sealing import proof
from ml_audit.sealing.proof import RowProof
from ml_audit.sealing.tables import PREDICTION

__all__ = [
    "HoldFilterSet",
    "HoldSerializer",
    "HoldViewSet",
    "PredictionSealSerializer",
    "PredictionSealView",
    "SealSerializer",
    "SealViewSet",
]

#: A seal number: at most 18 digits, so that it always fits a bigint.
SEAL_ID_PATTERN = "[0-9]{1,18}"


# ----------------------------------------------------------------------------- serializers


class SealHeadSerializer(serializers.Serializer[Any]):
    """The authenticated head of a seal (format ml_audit.seal/1): its canonical JSON (sorted
    keys, no spaces, UTF-8) hashes to head_hash, and its HMAC-SHA-256 under the key key_id is
    mac."""

    format = serializers.CharField()
    seal = serializers.IntegerField()
    created_at = serializers.CharField()
    previous_hash = serializers.CharField()
    root = serializers.CharField()  # type: ignore[assignment]  # popped by the metaclass
    leaves = serializers.IntegerField()
    members = serializers.ListField(child=serializers.IntegerField(), min_length=2, max_length=2)
    counts = serializers.DictField(child=serializers.IntegerField())
    horizon = serializers.CharField()
    covered = serializers.ListField(
        child=serializers.CharField(allow_null=True), min_length=2, max_length=2
    )
    algorithm = serializers.CharField()
    key_id = serializers.CharField()


class SealSerializer(serializers.Serializer[Seal]):
    """A seal: its columns, its head and head hash (ml_audit.sealing.proof.seal_json). Times are
    ISO 8601 in UTC with microseconds, as in the head."""

    id = serializers.IntegerField()
    created_at = serializers.CharField()
    previous_hash = serializers.CharField()
    root = serializers.CharField()  # type: ignore[assignment]  # popped by the metaclass
    leaves = serializers.IntegerField()
    members_from = serializers.IntegerField()
    members_to = serializers.IntegerField()
    counts = serializers.DictField(child=serializers.IntegerField())
    horizon = serializers.CharField()
    covered_from = serializers.CharField(allow_null=True)
    covered_to = serializers.CharField(allow_null=True)
    algorithm = serializers.CharField()
    key_id = serializers.CharField()
    mac = serializers.CharField()
    head = SealHeadSerializer()
    head_hash = serializers.CharField()

    def to_representation(self, instance: Seal) -> dict[str, Any]:
        return proof.seal_json(instance)


class CheckSerializer(serializers.Serializer[Any]):
    """One check: ok is true (passed), false (failed) or null (could not be made)."""

    name = serializers.ChoiceField(choices=sorted(proof.CHECK_TITLES))
    ok = serializers.BooleanField(allow_null=True)
    message = serializers.CharField()


class InclusionProofSerializer(serializers.Serializer[Any]):
    """An inclusion proof (format ml_audit.inclusion/1): the RFC 6962 audit path of one leaf,
    nearest the leaf first (docs/tamper-evidence.md says how to check it)."""

    format = serializers.CharField()
    kind = serializers.IntegerField()
    row_id = serializers.UUIDField()
    row_hash = serializers.CharField()
    leaf = serializers.CharField()
    leaf_index = serializers.IntegerField()
    tree_size = serializers.IntegerField()
    audit_path = serializers.ListField(child=serializers.CharField())
    root = serializers.CharField()  # type: ignore[assignment]  # popped by the metaclass


class PredictionSealSerializer(serializers.Serializer[Any]):
    """The seal covering one prediction, the checks it passes, and its inclusion proof."""

    table = serializers.CharField()
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=["sealed", "not_sealed", "missing"])
    verified = serializers.BooleanField(allow_null=True)
    summary = serializers.CharField()
    checks = CheckSerializer(many=True)
    content_hash = serializers.CharField(allow_null=True)
    recomputed_hash = serializers.CharField(allow_null=True)
    seal = SealSerializer(allow_null=True)
    proof = InclusionProofSerializer(allow_null=True)

    def to_representation(self, instance: RowProof) -> dict[str, Any]:
        return instance.as_json()


class HoldSerializer(serializers.ModelSerializer[LegalHold]):
    """A placement or a release of a legal hold. released_by (the release's id) and in_force
    are a placement's; both are null on a release."""

    released_by = serializers.SerializerMethodField()
    in_force = serializers.SerializerMethodField()

    class Meta:
        model = LegalHold
        fields = (
            "id",
            "action",
            "releases",
            "released_by",
            "in_force",
            "tenant_id",
            "actor_type",
            "actor_id",
            "model_name",
            "prediction_ids",
            "time_from",
            "time_to",
            "reference",
            "reason",
            "created_by",
            "created_at",
        )
        read_only_fields = fields

    @staticmethod
    def _release(obj: LegalHold) -> LegalHold | None:
        try:
            return obj.released_by  # select_related by the view
        except LegalHold.DoesNotExist:
            return None

    def get_released_by(self, obj: LegalHold) -> uuid.UUID | None:
        if obj.action != HoldAction.PLACE:
            return None
        release = self._release(obj)
        return release.pk if release is not None else None

    def get_in_force(self, obj: LegalHold) -> bool | None:
        if obj.action != HoldAction.PLACE:
            return None
        return self._release(obj) is None


# ----------------------------------------------------------------------------- filters


class InForceFilter(django_filters.Filter):  # type: ignore[misc]
    field_class = filters.StrictBooleanField

    def filter(self, qs: QuerySet[Any], value: bool | None) -> QuerySet[Any]:
        if value is None:
            return qs
        return qs.filter(action=HoldAction.PLACE, released_by__isnull=value)


class HoldFilterSet(filters._CachedFormFilterSet):
    """The filters of ``GET holds/``: ``action`` (``place`` or ``release``), ``in_force``
    (true: placements not released; false: placements released) and ``tenant_id`` (exact)."""

    action = django_filters.ChoiceFilter(field_name="action", choices=HoldAction.choices)
    in_force = InForceFilter()
    tenant_id = django_filters.CharFilter(field_name="tenant_id")

    class Meta:
        model = LegalHold
        fields: list[str] = []


# ----------------------------------------------------------------------------- views


class SealViewSet(views._AuditAPIMixin, viewsets.ReadOnlyModelViewSet[Seal]):
    """The seals of the trail, newest first (``GET seals/``), or one by its number
    (``GET seals/{id}/``): each seal's columns, its head (the document its HMAC authenticates)
    and head hash, which the next seal names as its ``previous_hash``.

    Needs ``ml_audit.view_seal`` besides the API's permission. Seals span tenants and hold
    only counts, times and hashes: they are shown to tenant-scoped users too. Pages of
    ``page_size`` seals.
    """

    serializer_class = SealSerializer
    pagination_ordering = ("-id",)
    access_log_resource = "seals"
    access_log_predictions = False
    lookup_value_regex = SEAL_ID_PATTERN

    def get_permissions(self) -> list[Any]:
        return [*super().get_permissions(), permissions.CanViewSeals()]

    def get_queryset(self) -> QuerySet[Seal]:
        return Seal.objects.using(store.resolve_alias()).order_by(*self.pagination_ordering)


class HoldViewSet(views._AuditAPIMixin, viewsets.ReadOnlyModelViewSet[LegalHold]):
    """Legal holds, newest first (``GET holds/``), or one by its UUID (``GET holds/{uuid}/``):
    placements (scope, who, when, why; ``in_force`` and ``released_by``) and the releases that
    end them (``releases``: the placement).

    Needs ``ml_audit.view_legalhold`` besides the API's permission. Tenant-scoped: a scoped user
    sees the placements on its tenants and their releases. Filters of the list: ``action``,
    ``in_force`` (true/false), ``tenant_id``. Pages of ``page_size`` holds.
    """

    serializer_class = HoldSerializer
    filter_backends = (DjangoFilterBackend,)
    filterset_class = HoldFilterSet
    pagination_ordering = ("-created_at", "-id")
    access_log_resource = "holds"
    access_log_predictions = False
    lookup_value_regex = views.UUID_PATTERN

    def get_permissions(self) -> list[Any]:
        return [*super().get_permissions(), permissions.CanViewHolds()]

    def get_queryset(self) -> QuerySet[LegalHold]:
        holds = LegalHold.objects.using(store.resolve_alias()).select_related("released_by")
        return access.visible_holds(self.request, holds.order_by(*self.pagination_ordering))


class PredictionSealView(views._AuditAPIMixin, GenericAPIView[Any]):
    """The seal covering one prediction (``GET predictions/{uuid}/seal/``), whether it
    verifies, and its inclusion proof.

    ``status`` is ``sealed`` or ``not_sealed``; ``verified`` is true when every check passed
    (the row still hashes to its content hash, which is the hash its seal lists; the seal's
    members hash to its root; the audit path leads there; the seal head's HMAC verifies; it
    chains to its neighbours), false when one failed (``summary`` and ``checks`` say which),
    null when it is not sealed yet or a check could not be made (a key that is not configured).
    ``proof`` (format ``ml_audit.inclusion/1``) lets a third party check offline that the row
    hash is in the seal whose head is ``seal.head``: see docs/tamper-evidence.md.

    Needs ``ml_audit.view_seal`` besides the API's permission; another tenant's prediction is a
    404.
    """

    serializer_class = PredictionSealSerializer
    access_log_resource = "predictions"
    lookup_value_regex = views.UUID_PATTERN
    detail = True

    def access_log_endpoint(self) -> str:
        return "predictions-seal"

    def get_permissions(self) -> list[Any]:
        return [*super().get_permissions(), permissions.CanViewSeals()]

    def get_queryset(self) -> QuerySet[Any]:
        return access.visible_predictions(self.request)

    def get(self, request: Request, pk: str) -> Response:
        try:
            key = uuid.UUID(pk)
        except ValueError:  # pragma: no cover - the URL pattern takes UUIDs only
            raise Http404 from None
        visible = self.get_queryset().filter(pk=key)
        if permissions.checks_objects(self.get_permissions()):
            event = visible.first()
            if event is None:
                raise Http404("No prediction matches the given query.")
            self.check_object_permissions(request, event)
        elif not visible.exists():
            raise Http404("No prediction matches the given query.")
        found = proof.prove_row(PREDICTION.kind, key, using=store.resolve_alias())
        if found.status == "missing":  # deleted between the two reads
            raise Http404("No prediction matches the given query.")
        return Response(PredictionSealSerializer(found).data)
