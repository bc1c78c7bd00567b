// A Node app instrumented as teams run it: the AI SDK (`ai` 7 with `@ai-sdk/otel`, both
// integrations) over its mock model, OpenLLMetry's Anthropic instrumentation over the
// Anthropic SDK and OpenInference's OpenAI instrumentation over the OpenAI SDK, both SDKs
// against the test's HTTP stand-in for the providers. Each integration has its own tracer
// provider and OTLP/protobuf exporter pointed at the edge.
//
//   node app.mjs PLAN.json
//
// PLAN: {"endpoint", "key", "provider_url", "runs": [...]}; each run names its integration
// and the usage of each model call (the test's oracle owns the numbers). Prints one line,
// "exported N runs", once every exporter has flushed.

import { readFileSync } from "node:fs";
import * as anthropicModule from "@anthropic-ai/sdk";
import { OpenAIInstrumentation } from "@arizeai/openinference-instrumentation-openai";
import { LegacyOpenTelemetry, OpenTelemetry } from "@ai-sdk/otel";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { AnthropicInstrumentation } from "@traceloop/instrumentation-anthropic";
import { generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";
import { MockLanguageModelV4, simulateReadableStream } from "ai/test";
import * as openaiModule from "openai";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));

function providerFor(name) {
  const exporter = new OTLPTraceExporter({
    url: plan.endpoint,
    headers: { authorization: `Bearer ${plan.key}` },
  });
  return new NodeTracerProvider({
    resource: resourceFromAttributes({
      "service.name": `interop-${name}`,
      "deployment.environment.name": "test",
      "tokenledger.tenant_id": "acme",
      "tokenledger.feature": name,
    }),
    spanProcessors: [new BatchSpanProcessor(exporter, { maxExportBatchSize: 64 })],
  });
}

const providers = {
  otel: providerFor("ai-otel"),
  legacy: providerFor("ai-legacy"),
  traceloop: providerFor("traceloop-anthropic"),
  openinference: providerFor("openinference-openai"),
};
const integrations = {
  otel: new OpenTelemetry({
    tracer: providers.otel.getTracer("ai"),
    usage: true, // the reasoning split: without it only the output total is reported
    enrichSpan: ({ runtimeContext }) => ({ "tokenledger.feature": runtimeContext?.feature }),
  }),
  legacy: new LegacyOpenTelemetry({ tracer: providers.legacy.getTracer("ai") }),
};

function v4Usage(u) {
  return {
    inputTokens: {
      total: u.input,
      noCache: u.input - u.cache_read - u.cache_write,
      cacheRead: u.cache_read,
      cacheWrite: u.cache_write,
    },
    outputTokens: { total: u.output, text: u.output - u.reasoning, reasoning: u.reasoning },
  };
}

const STOP = { unified: "stop", raw: "stop" };
const TOOLS = { unified: "tool-calls", raw: "tool_calls" };

// A call's result: a tool call for every step but the last, then text.
function stepResult(usage, last, i) {
  const content = last
    ? [{ type: "text", text: "done" }]
    : [{ type: "tool-call", toolCallId: `c${i}`, toolName: "lookup", input: '{"q":"x"}' }];
  return {
    content,
    finishReason: last ? STOP : TOOLS,
    usage: v4Usage(usage),
    response: { id: `r${i}`, modelId: plan.model, timestamp: new Date() },
    warnings: [],
  };
}

function streamResult(usage, last, i) {
  const parts = [
    { type: "stream-start", warnings: [] },
    { type: "response-metadata", id: `r${i}`, modelId: plan.model, timestamp: new Date() },
  ];
  if (last) {
    parts.push({ type: "text-start", id: "t" }, { type: "text-delta", id: "t", delta: "done" });
    parts.push({ type: "text-end", id: "t" });
  } else {
    parts.push({ type: "tool-call", toolCallId: `c${i}`, toolName: "lookup", input: '{"q":"x"}' });
  }
  parts.push({ type: "finish", finishReason: last ? STOP : TOOLS, usage: v4Usage(usage) });
  return { stream: simulateReadableStream({ chunks: parts, chunkDelayInMs: 0 }) };
}

const lookup = tool({
  description: "look a thing up",
  inputSchema: jsonSchema({ type: "object", properties: { q: { type: "string" } } }),
  execute: async () => ({ found: true }),
});

async function aiSdkRun(run) {
  const n = run.calls.length;
  const results = run.calls.map((u, i) => (run.stream ? streamResult : stepResult)(u, i === n - 1, i));
  const model = new MockLanguageModelV4({
    provider: plan.model_provider,
    modelId: plan.model,
    ...(run.stream ? { doStream: results } : { doGenerate: results }),
  });
  const options = {
    model,
    prompt: "plan the trip",
    tools: { lookup },
    stopWhen: stepCountIs(n),
    runtimeContext: { feature: run.feature },
    telemetry: {
      integrations: integrations[run.integration],
      functionId: run.feature,
      includeRuntimeContext: { feature: true },
    },
  };
  if (run.stream) {
    const result = streamText(options);
    await result.consumeStream();
    await result.text;
  } else {
    await generateText(options);
  }
}

// An app's own span around its calls, repeating their summed usage: the mapping file's
// aggregate_spans rule names it.
function appSpan(run) {
  const span = providers.otel.getTracer("checkout-app").startSpan(`checkout-run ${run.feature}`);
  span.setAttributes({
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": plan.model,
    "gen_ai.usage.input_tokens": run.total.input,
    "gen_ai.usage.output_tokens": run.total.output,
  });
  span.end();
}

const traceloop = new AnthropicInstrumentation();
traceloop.setTracerProvider(providers.traceloop);
traceloop.manuallyInstrument(anthropicModule);
const openinference = new OpenAIInstrumentation();
openinference.setTracerProvider(providers.openinference);
openinference.manuallyInstrument(openaiModule);
const anthropic = new anthropicModule.Anthropic({ apiKey: "test-key", baseURL: plan.provider_url, maxRetries: 0 });
const openai = new openaiModule.OpenAI({ apiKey: "test-key", baseURL: `${plan.provider_url}/v1`, maxRetries: 0 });

async function providerCall(run) {
  const messages = [{ role: "user", content: `call ${run.call}` }];
  if (run.integration === "traceloop") {
    await anthropic.messages.create({ model: run.model, max_tokens: 64, messages });
  } else {
    await openai.chat.completions.create({ model: run.model, messages });
  }
}

for (const run of plan.runs) {
  if (run.integration === "app") appSpan(run);
  else if (run.integration === "otel" || run.integration === "legacy") await aiSdkRun(run);
  else await providerCall(run);
}
await Promise.all(Object.values(providers).map((p) => p.shutdown()));
console.log(`exported ${plan.runs.length} runs`);
