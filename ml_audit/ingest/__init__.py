"""The OTLP/HTTP ingest endpoint: audit spans from model servers outside Django.

``ml_audit.ingest.urls`` mounts ``POST …/v1/traces``, which speaks OTLP/HTTP (protobuf and JSON
bodies, gzip) as an OpenTelemetry exporter or Collector sends it. One module per step:

==================  ==========================================================================
``auth.py``         per-service tokens (:class:`~ml_audit.models.IngestCredential`): issue,
                    revoke, authenticate a request
``decode.py``       request body → ``ExportTraceServiceRequest`` (content type, gzip, limits)
``spans.py``        the request's spans → the ``ml_audit`` ones, as plain Python values
``records.py``      an ``ml_audit`` span → a validated record, redacted again on this server
``persist.py``      records → ``store.write_many`` and the explanation writer, per-span outcomes
``responses.py``    ``ExportTraceServiceResponse`` / ``google.rpc.Status`` bodies
``metrics.py``      counters of stored, duplicate, rejected and ignored spans
``views.py``        the view: the order of the checks, status codes, the concurrency bound
==================  ==========================================================================

Needs the ``ingest`` extra (``opentelemetry-proto``, ``googleapis-common-protos``). See
``docs/ingest.md``.
"""
