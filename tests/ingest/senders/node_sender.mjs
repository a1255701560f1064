// A model server written in Node.js, traced with the OpenTelemetry JS SDK: no ml_audit, no
// Django. It names and attributes its spans by the ml_audit conventions by hand, forgets to
// redact, and exports with @opentelemetry/exporter-trace-otlp-proto (protobuf over HTTP,
// gzip) through the SDK's BatchSpanProcessor.
//
//   node node_sender.mjs <endpoint> <token> <run> <count>
//
// Prints one JSON object: the ids of what it sent.

import { trace, context } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { BatchSpanProcessor, NodeTracerProvider } from "@opentelemetry/sdk-trace-node";

const [endpoint, token, run, countText] = process.argv.slice(2);
const count = Number(countText || "5");
const RAW_EMAIL = "jane.doe@example.com";
const RAW_CARD = "4111 1111 1111 1111";

const results = [];
const exporter = new OTLPTraceExporter({
  url: endpoint,
  headers: { Authorization: `Bearer ${token}` },
  compression: "gzip",
  timeoutMillis: 30000,
});
const originalExport = exporter.export.bind(exporter);
exporter.export = (spans, done) =>
  originalExport(spans, (result) => {
    results.push(result.code === 0 ? "SUCCESS" : `FAILURE: ${result.error}`);
    done(result);
  });

const provider = new NodeTracerProvider({
  spanProcessors: [new BatchSpanProcessor(exporter, { maxExportBatchSize: 512 })],
});
provider.register();
const tracer = trace.getTracer("node-scorer", "1.0");

const sent = [];
for (let i = 0; i < count; i++) {
  const predictionId = `${run}-${i}`;
  const request = tracer.startSpan("POST /score");
  const ctx = trace.setSpan(context.active(), request);
  const prediction = tracer.startSpan(
    "ml_audit.prediction churn",
    {
      attributes: {
        "ml_audit.schema_version": 1,
        "ml_audit.prediction_id": predictionId,
        "ml_audit.timestamp": new Date().toISOString(),
        "ml_audit.model.name": "churn",
        "ml_audit.model.version": "node-3",
        "ml_audit.status": "success",
        "ml_audit.actor.type": "user",
        "ml_audit.actor.id": `customer-${i}`,
        "ml_audit.actor.tenant_id": "globex",
        "ml_audit.features": JSON.stringify({
          tenure_months: 12 + i,
          email: RAW_EMAIL,
          note: `card ${RAW_CARD}`,
        }),
        "ml_audit.output": JSON.stringify({ churn: 0.2 }),
        "ml_audit.confidence": 0.8,
        "ml_audit.decision_outcome": "retain",
      },
    },
    ctx,
  );
  const { traceId, spanId } = prediction.spanContext();
  prediction.end();
  request.end();
  sent.push({
    prediction_id: predictionId,
    trace_id: traceId,
    span_id: spanId,
    parent_span_id: request.spanContext().spanId,
  });
}

await provider.forceFlush();
await provider.shutdown();
console.log(JSON.stringify({ sent, results }));
