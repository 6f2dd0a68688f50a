// @ts-check
// `js-openai`: a provider for OpenAI-compatible chat-completions APIs, in
// JavaScript. It uses `fetch()`, which componentize-js implements over
// `wasi:http/outgoing-handler`, so every request goes through the host's egress
// policy: only granted hosts are reachable, and the API key never enters the
// sandbox — the request carries the placeholder `{{secret:NAME}}`, which the host
// replaces with the provider's secret on the way out.
//
// Configuration (all optional):
//   base_url           API root, default https://api.openai.com/v1
//   api_key_secret     name of the host secret sent as the bearer token, default api_key
//   model              model used when a request names none
//   models             comma-separated model ids advertised by `capabilities`
//   context_window     context window reported for those models (default 128000)
//   max_output_tokens  output limit reported for those models (default 4096)
//   organization       sent as `OpenAI-Organization`

import {
  defineProvider,
  ProviderError,
  capabilities,
  chunk,
  health,
  log,
  model,
  response,
  sseEvents,
  usage,
} from '../../js-sdk/tamma.js';

/** @typedef {import('../../js-sdk/tamma').CompletionRequest} CompletionRequest */
/** @typedef {import('../../js-sdk/tamma').FinishReason} FinishReason */
/** @typedef {import('../../js-sdk/tamma').StreamChunk} StreamChunk */

const SECRET_NAME = /^[A-Za-z0-9_.-]+$/;

/** @type {Record<string, FinishReason>} */
const FINISH = {
  stop: 'stop',
  length: 'length',
  tool_calls: 'tool-calls',
  function_call: 'tool-calls',
  content_filter: 'content-filter',
};

class OpenAI {
  /** @param {import('../../js-sdk/tamma').Config} config */
  static initialize(config) {
    const baseUrl = config.get('base_url', 'https://api.openai.com/v1').replace(/\/+$/, '');
    if (!/^https?:\/\/[^/]+/.test(baseUrl)) {
      throw ProviderError.invalidRequest(`base_url must be an http(s) URL, got \`${baseUrl}\``);
    }
    const secret = config.get('api_key_secret', 'api_key');
    if (!SECRET_NAME.test(secret)) {
      throw ProviderError.invalidRequest(`api_key_secret \`${secret}\` is not a valid secret name`);
    }
    return new OpenAI({
      baseUrl,
      secret,
      defaultModel: config.get('model', ''),
      models: config.list('models'),
      contextWindow: config.number('context_window', 128000),
      maxOutputTokens: config.number('max_output_tokens', 4096),
      organization: config.get('organization'),
    });
  }

  /**
   * @param {{ baseUrl: string, secret: string, defaultModel: string, models: string[],
   *   contextWindow: number, maxOutputTokens: number, organization?: string }} s
   */
  constructor(s) {
    this.s = s;
  }

  /** @param {string} id */
  modelInfo(id) {
    return model(id, {
      contextWindow: this.s.contextWindow,
      maxOutputTokens: this.s.maxOutputTokens,
      supportsTools: true,
    });
  }

  capabilities() {
    return capabilities(this.s.models.map((id) => this.modelInfo(id)), {
      supportsStreaming: true,
      supportsTools: true,
      maxContextTokens: this.s.contextWindow,
      maxOutputTokens: this.s.maxOutputTokens,
      features: ['openai-compatible'],
    });
  }

  headers(extra = {}) {
    /** @type {Record<string, string>} */
    const h = {
      // The host substitutes the secret; the guest never sees the key.
      authorization: `Bearer {{secret:${this.s.secret}}}`,
      accept: 'application/json',
      ...extra,
    };
    if (this.s.organization) h['openai-organization'] = this.s.organization;
    return h;
  }

  /**
   * Send a request; transport failures and unsuccessful statuses become provider
   * errors. @param {string} path @param {RequestInit} init
   */
  async send(path, init) {
    let resp;
    try {
      resp = await fetch(`${this.s.baseUrl}${path}`, init);
    } catch (e) {
      // Refused by the egress policy, DNS, connect, TLS, timeout...
      const what = e instanceof Error ? e.message : String(e);
      throw ProviderError.network(`request to ${this.s.baseUrl}${path} failed: ${what}`);
    }
    if (!resp.ok) throw await statusError(resp);
    return resp;
  }

  /** @param {CompletionRequest} request @param {boolean} stream */
  body(request, stream) {
    const modelId = request.model || this.s.defaultModel;
    if (!modelId) throw ProviderError.invalidRequest('no model: set request.model or config `model`');
    if (request.messages.length === 0) throw ProviderError.invalidRequest('the conversation is empty');
    /** @type {Record<string, unknown>} */
    const body = {
      model: modelId,
      messages: request.messages.map(toOpenAiMessage),
    };
    if (request.maxTokens !== undefined) body.max_tokens = request.maxTokens;
    if (request.temperature !== undefined) body.temperature = request.temperature;
    if (request.topP !== undefined) body.top_p = request.topP;
    if (request.stop.length > 0) body.stop = request.stop;
    if (request.tools.length > 0) {
      body.tools = request.tools.map((t) => ({
        type: 'function',
        function: { name: t.name, description: t.description, parameters: parseJson(t.parametersSchema, `schema of tool ${t.name}`) },
      }));
    }
    const user = request.metadata.find(([k]) => k === 'user');
    if (user) body.user = user[1];
    if (stream) {
      body.stream = true;
      body.stream_options = { include_usage: true };
    }
    return JSON.stringify(body);
  }

  /** @param {CompletionRequest} request */
  async complete(request) {
    const resp = await this.send('/chat/completions', {
      method: 'POST',
      headers: this.headers({ 'content-type': 'application/json' }),
      body: this.body(request, false),
    });
    const json = parseJson(await resp.text(), 'response');
    const choice = json.choices?.[0];
    if (!choice) throw ProviderError.provider('upstream answered without choices');
    const message = choice.message ?? {};
    return response(String(json.id ?? ''), String(json.model ?? request.model), message.content ?? '', {
      finishReason: FINISH[choice.finish_reason] ?? 'stop',
      usage: toUsage(json.usage),
      toolCalls: (message.tool_calls ?? []).map((/** @type {any} */ c) => ({
        id: String(c.id ?? ''),
        name: String(c.function?.name ?? ''),
        arguments: String(c.function?.arguments ?? ''),
      })),
    });
  }

  /**
   * Server-sent events from `/chat/completions`, one chunk per event with content
   * or tool-call fragments. The finish reason is held back until the usage event
   * (sent after it with `include_usage`) so the last chunk carries both.
   * @param {CompletionRequest} request
   * @returns {AsyncGenerator<StreamChunk>}
   */
  async *stream(request) {
    const resp = await this.send('/chat/completions', {
      method: 'POST',
      headers: this.headers({ 'content-type': 'application/json', accept: 'text/event-stream' }),
      body: this.body(request, true),
    });
    if (!resp.body) throw ProviderError.provider('upstream answered without a body');
    let id = '';
    let modelId = request.model || this.s.defaultModel;
    /** @type {StreamChunk | undefined} */
    let held; // the chunk carrying the finish reason, waiting for usage
    let done = false;
    for await (const ev of sseEvents(resp.body)) {
      if (ev.data === '[DONE]') {
        done = true;
        break;
      }
      const json = parseJson(ev.data, 'stream event');
      if (json.error) {
        const e = json.error;
        throw ProviderError.fromHttpStatus(Number(e.status ?? e.code) || 500, String(e.message ?? 'stream error'), {
          upstreamCode: e.code ?? e.type,
        });
      }
      id = String(json.id ?? id);
      modelId = String(json.model ?? modelId);
      const u = json.usage ? toUsage(json.usage) : undefined;
      const choice = json.choices?.[0];
      if (held && u) {
        held.usage = u;
        continue;
      }
      if (!choice) continue;
      const delta = choice.delta ?? {};
      const toolCallDeltas = (delta.tool_calls ?? []).map((/** @type {any} */ t) => ({
        index: Number(t.index ?? 0),
        id: t.id ?? undefined,
        name: t.function?.name ?? undefined,
        argumentsDelta: String(t.function?.arguments ?? ''),
      }));
      const c = chunk(id, modelId, delta.content ?? '', { toolCallDeltas, usage: u });
      if (choice.finish_reason) {
        c.finishReason = FINISH[choice.finish_reason] ?? 'stop';
        if (held) yield held;
        held = c;
        continue;
      }
      if (held) {
        yield held;
        held = undefined;
      }
      if (c.delta !== '' || c.toolCallDeltas.length > 0 || c.usage) yield c;
    }
    if (held) {
      yield held;
    } else if (!done) {
      throw ProviderError.network('the upstream stream ended before it finished');
    }
  }

  async listModels() {
    const resp = await this.send('/models', { method: 'GET', headers: this.headers() });
    const json = parseJson(await resp.text(), 'model list');
    if (!Array.isArray(json.data)) throw ProviderError.provider('model list without `data`');
    return json.data.map((/** @type {any} */ m) => this.modelInfo(String(m.id)));
  }

  async healthCheck() {
    // GET /models: proves reachability and credentials without spending tokens.
    try {
      const resp = await this.send('/models', { method: 'GET', headers: this.headers() });
      await resp.arrayBuffer();
      return health.healthy(`${this.s.baseUrl} answered ${resp.status}`);
    } catch (e) {
      const err = e instanceof ProviderError ? e : ProviderError.provider(String(e));
      log.warn('health check failed', { code: err.code });
      const degraded = err.code === 'rate-limit-exceeded' || err.code === 'service-unavailable' || err.code === 'timeout';
      return degraded ? health.degraded(err.message) : health.unhealthy(err.message);
    }
  }
}

/** @param {import('../../js-sdk/tamma').Message} m */
function toOpenAiMessage(m) {
  /** @type {Record<string, unknown>} */
  const out = { role: m.role, content: m.content };
  if (m.name !== undefined) out.name = m.name;
  if (m.toolCallId !== undefined) out.tool_call_id = m.toolCallId;
  if (m.toolCalls.length > 0) {
    out.tool_calls = m.toolCalls.map((c) => ({
      id: c.id,
      type: 'function',
      function: { name: c.name, arguments: c.arguments },
    }));
    if (m.content === '') out.content = null;
  }
  return out;
}

/** @param {any} u */
function toUsage(u) {
  if (!u) return usage(0, 0);
  const cached = u.prompt_tokens_details?.cached_tokens;
  return usage(Number(u.prompt_tokens ?? 0), Number(u.completion_tokens ?? 0), {
    cacheRead: cached == null ? undefined : Number(cached),
  });
}

/** @param {string} text @param {string} what @returns {any} */
function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (_) {
    throw ProviderError.provider(`upstream ${what} is not JSON`);
  }
}

/** The provider error for an unsuccessful response. @param {Response} resp */
async function statusError(resp) {
  const text = await resp.text().catch(() => '');
  let message = text.slice(0, 500);
  let upstreamCode;
  try {
    const e = JSON.parse(text).error;
    if (e) {
      message = String(e.message ?? message);
      upstreamCode = e.code ?? e.type;
    }
  } catch (_) {
    // not JSON: keep the text
  }
  return ProviderError.fromHttpStatus(resp.status, message, {
    upstreamCode,
    retryAfterMs: retryAfterMs(resp.headers),
  });
}

/** `retry-after-ms`, or `retry-after` in seconds (or an HTTP date). @param {Headers} h */
function retryAfterMs(h) {
  const ms = Number(h.get('retry-after-ms'));
  if (h.get('retry-after-ms') && Number.isFinite(ms)) return ms;
  const after = h.get('retry-after');
  if (!after) return undefined;
  const secs = Number(after);
  if (Number.isFinite(secs)) return secs * 1000;
  const date = Date.parse(after);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
}

export const providerApi = defineProvider(OpenAI);
export const embeddings = providerApi.embeddings;
