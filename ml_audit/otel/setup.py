"""Wiring: which TracerProvider audit spans come from, and the processor that persists them.

:func:`get_pipeline` builds, once per process (and again after :func:`uninstall`):

- If ``ML_AUDIT['OTEL_ENABLED']`` and the global tracer provider is an SDK ``TracerProvider``,
  the :class:`~ml_audit.otel.processor.MLAuditSpanProcessor` is added to it; the user's own
  processors and exporters are left alone, so audit spans reach the APM like any other span.
- If it is enabled and no SDK provider is installed yet, one is created with the processor and,
  unless ``SET_GLOBAL_TRACER_PROVIDER`` is off, made global (so it must be built after your own
  OpenTelemetry set-up, which is why this happens at first use or in ``AppConfig.ready``).
- If it is disabled, a private provider (not global, exporting nothing) carries audit spans to
  the processor, so recording works the same way and is persisted the same way.

Audit spans come from a tracer whose sampler wraps the provider's: where the provider's sampler
says DROP, the audit sampler says RECORD_ONLY. Every prediction span therefore reaches the
processor, while exporters (which only export *sampled* spans) see exactly what the user's
sampler chose, and child spans of an unsampled audit span stay unsampled.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from ml_audit.conf import audit_settings

__all__ = ["AuditPipeline", "AuditSampler", "get_pipeline", "install", "uninstall"]

logger = logging.getLogger("ml_audit.otel")

TRACER_NAME = "ml_audit"


class AuditSampler(Sampler):
    """Never drops: the delegate's DROP becomes RECORD_ONLY (persisted, not exported)."""

    def __init__(self, delegate: Sampler) -> None:
        self.delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self.delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is Decision.DROP:
            return SamplingResult(Decision.RECORD_ONLY, attributes, result.trace_state)
        return result

    def get_description(self) -> str:
        return f"MLAuditSampler{{{self.delegate.get_description()}}}"


@dataclasses.dataclass(frozen=True)
class AuditPipeline:
    """The provider, processor and tracer that audit spans use in this process."""

    provider: TracerProvider
    processor: Any  # MLAuditSpanProcessor (imported lazily: it imports the models)
    tracer: Tracer
    owns_provider: bool


_lock = threading.RLock()
_pipeline: AuditPipeline | None = None
_attached: dict[int, Any] = {}  # id(provider) -> processor attached to it


def _audit_tracer(provider: TracerProvider) -> Tracer:
    from ml_audit import __version__

    tracer = provider.get_tracer(TRACER_NAME, __version__)
    assert isinstance(tracer, Tracer)
    if not isinstance(tracer.sampler, AuditSampler):
        # This tracer is ours (scope "ml_audit"); wrapping its sampler changes no other span.
        tracer.sampler = AuditSampler(tracer.sampler)
    return tracer


def _processor_for(provider: TracerProvider) -> Any:
    from ml_audit.otel.processor import MLAuditSpanProcessor

    with _lock:
        processor = _attached.get(id(provider))
        if processor is None:
            processor = MLAuditSpanProcessor()
            provider.add_span_processor(processor)
            _attached[id(provider)] = processor
        return processor


def install(
    provider: TracerProvider | None = None, *, set_global: bool | None = None
) -> AuditPipeline:
    """Attach the audit processor to ``provider`` (default: as the settings say) and return it.

    Idempotent per provider: calling it again does not add a second processor.
    """
    global _pipeline
    with _lock:
        owns = False
        if provider is None:
            current = trace.get_tracer_provider()
            if not audit_settings.OTEL_ENABLED:
                provider, owns = TracerProvider(sampler=ALWAYS_ON), True
            elif isinstance(current, TracerProvider):
                provider = current
            else:
                provider, owns = TracerProvider(), True
                wants_global = (
                    audit_settings.SET_GLOBAL_TRACER_PROVIDER if set_global is None else set_global
                )
                if wants_global:
                    trace.set_tracer_provider(provider)
                    if trace.get_tracer_provider() is not provider:
                        logger.warning(
                            "ml_audit: could not install its TracerProvider globally; audit "
                            "spans use a private provider"
                        )
        if not isinstance(provider.get_tracer(TRACER_NAME), Tracer):
            # OTEL_SDK_DISABLED=true makes SDK providers hand out no-op tracers; the audit
            # trail must not depend on it, so audit spans use a private provider then.
            provider, owns = TracerProvider(sampler=ALWAYS_ON), True
        processor = _processor_for(provider)
        _pipeline = AuditPipeline(provider, processor, _audit_tracer(provider), owns)
        return _pipeline


def get_pipeline() -> AuditPipeline:
    """The process's audit pipeline, installed from the settings on first use."""
    pipeline = _pipeline
    if pipeline is not None:
        return pipeline
    return install()


def _detach(provider_id: int, processor: Any) -> None:
    """Take a shut-down processor off its provider (the SDK has no public way to do so)."""
    pipeline = _pipeline
    candidates = [pipeline.provider] if pipeline is not None else []
    candidates.append(trace.get_tracer_provider())  # type: ignore[arg-type]
    for provider in candidates:
        multi = getattr(provider, "_active_span_processor", None)
        current = getattr(multi, "_span_processors", None)
        if id(provider) == provider_id and isinstance(current, tuple):
            lock = getattr(multi, "_lock", None)
            if lock is not None:
                with lock:
                    multi._span_processors = tuple(p for p in current if p is not processor)  # type: ignore[union-attr]
            return


def uninstall() -> None:
    """Flush and detach the audit processor(s) (tests, or re-configuration)."""
    global _pipeline
    with _lock:
        for provider_id, processor in _attached.items():
            processor.shutdown()
            _detach(provider_id, processor)
        _attached.clear()
        pipeline, _pipeline = _pipeline, None
        if (
            pipeline is not None
            and pipeline.owns_provider
            and trace.get_tracer_provider() is not pipeline.provider
        ):
            pipeline.provider.shutdown()
