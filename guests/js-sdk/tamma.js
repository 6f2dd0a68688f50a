// Helpers for Tamma providers written in JavaScript (componentize-js).
//
// A provider is a class; `defineProvider(MyProvider)` turns it into the
// `provider-api` export the world `tamma:provider/provider` asks for:
//
//   import { defineProvider, ProviderError, usage } from '../../js-sdk/tamma.js';
//   class Hello {
//     static initialize(config) { return new Hello(); }
//     capabilities() { return capabilities([model('hello-1')]); }
//     complete(req) { return response('id-1', req.model, 'hi', { usage: usage(1, 1) }); }
//   }
//   export const providerApi = defineProvider(Hello);
//   export const embeddings = providerApi.embeddings; // the `embeddings` export (0.2.0)
//
// Types are in tamma.d.ts (plain JS with `// @ts-check` gets them via JSDoc).
//
// What `defineProvider` adds, like the Rust SDK's `export_provider!`:
//   - `initialize` receives a `Config` (key lookup, defaults, required keys);
//   - every method may be sync or async (componentize-js runs the event loop until
//     the promise settles, so `await fetch(...)` works);
//   - a thrown `ProviderError` becomes the WIT `provider-error`; any other exception
//     becomes `provider-error` with code `provider-error` (not a trap), so a bug in
//     JSON handling does not cost the instance;
//   - `stream` may return an array, an iterator or an (async) generator of chunks;
//     the first chunk is pulled before `stream` returns, so an error before any
//     output (HTTP 401, ...) is an error of `stream` itself, not of the first `next`;
//   - `listModels`, `stream` (one chunk from `complete`), `healthCheck` and `dispose`
//     have defaults;
//   - so do `embeddingModels` (none) and `embed` (`invalid-request`: "embeddings are
//     not supported by this provider"); `providerApi.embeddings` is the export
//     object, which the module must export as `embeddings`.

import { log as hostLog } from 'tamma:provider/host@0.2.0';

/** Every WIT `error-code`, for reference and validation. */
export const ERROR_CODES = Object.freeze([
  'rate-limit-exceeded',
  'invalid-api-key',
  'model-not-found',
  'context-too-long',
  'network-error',
  'timeout',
  'invalid-request',
  'provider-error',
  'quota-exceeded',
  'service-unavailable',
]);

const RETRYABLE_BY_DEFAULT = new Set([
  'rate-limit-exceeded',
  'network-error',
  'timeout',
  'service-unavailable',
]);

/** A failure reported by the provider; becomes the WIT `provider-error`. */
export class ProviderError extends Error {
  /**
   * @param {string} code one of ERROR_CODES
   * @param {string} message for a person; must not contain secrets
   * @param {{ retryable?: boolean, retryAfterMs?: number }} [opts]
   */
  constructor(code, message, opts = {}) {
    super(message);
    this.name = 'ProviderError';
    this.code = ERROR_CODES.includes(code) ? code : 'provider-error';
    this.retryable = opts.retryable ?? RETRYABLE_BY_DEFAULT.has(this.code);
    this.retryAfterMs = opts.retryAfterMs;
  }

  static rateLimited(message, retryAfterMs) {
    return new ProviderError('rate-limit-exceeded', message, { retryAfterMs });
  }
  static invalidApiKey(message) { return new ProviderError('invalid-api-key', message); }
  static modelNotFound(message) { return new ProviderError('model-not-found', message); }
  static contextTooLong(message) { return new ProviderError('context-too-long', message); }
  static network(message) { return new ProviderError('network-error', message); }
  static timeout(message) { return new ProviderError('timeout', message); }
  static invalidRequest(message) { return new ProviderError('invalid-request', message); }
  static provider(message) { return new ProviderError('provider-error', message); }
  static quotaExceeded(message) { return new ProviderError('quota-exceeded', message); }
  static unavailable(message, retryAfterMs) {
    return new ProviderError('service-unavailable', message, { retryAfterMs });
  }

  /**
   * The error for an unsuccessful upstream HTTP status (the usual mapping of
   * OpenAI-style APIs). `upstreamCode` is the API's own error code/type, if any.
   */
  static fromHttpStatus(status, message, { upstreamCode, retryAfterMs } = {}) {
    const c = String(upstreamCode ?? '');
    const msg = `upstream answered ${status}: ${message}`;
    if (c === 'insufficient_quota') return ProviderError.quotaExceeded(msg);
    if (c === 'context_length_exceeded') return ProviderError.contextTooLong(msg);
    if (c === 'model_not_found') return ProviderError.modelNotFound(msg);
    if (status === 400 || status === 413 || status === 422) return ProviderError.invalidRequest(msg);
    if (status === 401 || status === 403) return ProviderError.invalidApiKey(msg);
    if (status === 404) return ProviderError.modelNotFound(msg);
    if (status === 408 || status === 504) return new ProviderError('timeout', msg, { retryAfterMs });
    if (status === 429) return ProviderError.rateLimited(msg, retryAfterMs);
    if (status === 402) return ProviderError.quotaExceeded(msg);
    if (status >= 500) return ProviderError.unavailable(msg, retryAfterMs);
    return new ProviderError('provider-error', msg, { retryable: false });
  }

  /** The WIT record. */
  toWit() {
    return {
      code: this.code,
      message: String(this.message),
      retryable: Boolean(this.retryable),
      retryAfterMs:
        this.retryAfterMs == null ? undefined : BigInt(Math.max(0, Math.round(this.retryAfterMs))),
    };
  }
}

/** Any thrown value as a WIT `provider-error`. */
export function toWitError(e) {
  if (e instanceof ProviderError) return e.toWit();
  const what = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return new ProviderError('provider-error', `uncaught exception in provider: ${what}`, {
    retryable: false,
  }).toWit();
}

// ---------------------------------------------------------------------------
// Logging

function logAt(level) {
  /** @param {string} message @param {Record<string, unknown>} [fields] */
  return (message, fields = {}) => {
    hostLog(level, String(message), Object.entries(fields).map(([k, v]) => [k, String(v)]));
  };
}

/** Structured logs, attributed by the host to this provider. */
export const log = Object.freeze({
  trace: logAt('trace'),
  debug: logAt('debug'),
  info: logAt('info'),
  warn: logAt('warn'),
  error: logAt('error'),
});

// ---------------------------------------------------------------------------
// Configuration

/** The key/values given to `initialize`. */
export class Config {
  /** @param {[string, string][]} entries */
  constructor(entries) {
    this.entries = entries;
    this.map = new Map(entries);
  }
  /** The value of `key`, or `fallback` when absent. */
  get(key, fallback = undefined) {
    return this.map.has(key) ? this.map.get(key) : fallback;
  }
  /** The value of `key`; an `invalid-request` error naming the key when absent. */
  require(key) {
    if (!this.map.has(key)) {
      throw ProviderError.invalidRequest(`missing configuration key \`${key}\``);
    }
    return this.map.get(key);
  }
  /** A number, `fallback` when absent; an error when not a number. */
  number(key, fallback) {
    const v = this.get(key);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n)) {
      throw ProviderError.invalidRequest(`configuration key \`${key}\` must be a number, got \`${v}\``);
    }
    return n;
  }
  /** A comma-separated list (empty items dropped). */
  list(key) {
    return (this.get(key) ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  }
}

// ---------------------------------------------------------------------------
// Building WIT values

/** Tokens counted as whitespace-separated words. */
export function countWords(text) {
  const t = String(text).trim();
  return t === '' ? 0 : t.split(/\s+/).length;
}

/** The content of the last `user` message, or undefined. */
export function lastUserMessage(request) {
  for (let i = request.messages.length - 1; i >= 0; i--) {
    if (request.messages[i].role === 'user') return request.messages[i].content;
  }
  return undefined;
}

/** The value of a request metadata key, or undefined. */
export function metadata(request, key) {
  const hit = request.metadata.find(([k]) => k === key);
  return hit ? hit[1] : undefined;
}

/** A `usage` record from input and output token counts. */
export function usage(input, output, { cacheRead, cacheWrite } = {}) {
  return {
    inputTokens: input >>> 0,
    outputTokens: output >>> 0,
    totalTokens: (input + output) >>> 0,
    cacheReadTokens: cacheRead == null ? undefined : cacheRead >>> 0,
    cacheWriteTokens: cacheWrite == null ? undefined : cacheWrite >>> 0,
  };
}

/** A `model-info` record; streaming on, images and tools off unless given. */
export function model(id, opts = {}) {
  return {
    id,
    name: opts.name ?? id,
    contextWindow: opts.contextWindow ?? 8192,
    maxOutputTokens: opts.maxOutputTokens ?? 4096,
    supportsStreaming: opts.supportsStreaming ?? true,
    supportsImages: opts.supportsImages ?? false,
    supportsTools: opts.supportsTools ?? false,
  };
}

/** A `capabilities` record derived from the models (flags are the OR, sizes the max). */
export function capabilities(models, opts = {}) {
  return {
    supportsStreaming: opts.supportsStreaming ?? (models.length === 0 || models.some((m) => m.supportsStreaming)),
    supportsImages: opts.supportsImages ?? models.some((m) => m.supportsImages),
    supportsTools: opts.supportsTools ?? models.some((m) => m.supportsTools),
    maxContextTokens: opts.maxContextTokens ?? Math.max(0, ...models.map((m) => m.contextWindow)),
    maxOutputTokens: opts.maxOutputTokens ?? Math.max(0, ...models.map((m) => m.maxOutputTokens)),
    models,
    features: opts.features ?? [],
  };
}

/** A `completion-response` record. */
export function response(id, modelId, content, opts = {}) {
  return {
    id,
    model: modelId,
    content,
    toolCalls: opts.toolCalls ?? [],
    finishReason: opts.finishReason ?? 'stop',
    usage: opts.usage ?? usage(0, 0),
  };
}

/** A `stream-chunk` carrying text. */
export function chunk(id, modelId, delta, opts = {}) {
  return {
    id,
    model: modelId,
    delta,
    toolCallDeltas: opts.toolCallDeltas ?? [],
    finishReason: opts.finishReason,
    usage: opts.usage,
  };
}

/** A `health` record. */
/** An embedding model (WIT `embedding-model-info`). */
export function embeddingModel(id, dimensions, opts = {}) {
  return {
    id,
    name: opts.name ?? id,
    dimensions,
    maxInputTokens: opts.maxInputTokens ?? 8192,
  };
}

/** An embedding answer (WIT `embedding-response`), input tokens counted as the total. */
export function embeddingResponse(modelId, vectors, inputTokens) {
  return { model: modelId, vectors, usage: { inputTokens, totalTokens: inputTokens } };
}

export const health = Object.freeze({
  healthy: (message = 'ok') => ({ status: 'healthy', message }),
  degraded: (message) => ({ status: 'degraded', message }),
  unhealthy: (message) => ({ status: 'unhealthy', message }),
});

// ---------------------------------------------------------------------------
// Server-sent events

/**
 * Split a byte stream (a `fetch` body) into server-sent events. Yields
 * `{ event, data }` for each event (data lines joined by "\n"); comments and
 * events without data are skipped.
 * @param {ReadableStream<Uint8Array>} body
 */
export async function* sseEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let event = '';
  let data = [];
  const flush = function* () {
    if (data.length > 0) yield { event: event || 'message', data: data.join('\n') };
    event = '';
    data = [];
  };
  for (;;) {
    const { done, value } = await reader.read();
    buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + (buffer[nl] === '\r' && buffer[nl + 1] === '\n' ? 2 : 1));
      if (line === '') {
        yield* flush();
      } else if (line.startsWith(':')) {
        // comment / keep-alive
      } else {
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'data') data.push(value);
        else if (field === 'event') event = value;
      }
    }
    if (done) {
      if (buffer !== '') data.push(...(buffer.startsWith('data:') ? [buffer.slice(5).trimStart()] : []));
      yield* flush();
      return;
    }
  }
}

// ---------------------------------------------------------------------------
// The export

const isPromise = (v) => v != null && typeof v.then === 'function';

/** Call `f`; map a thrown error (sync or async) to the WIT error (thrown). */
function guarded(f) {
  let out;
  try {
    out = f();
  } catch (e) {
    throw toWitError(e);
  }
  return isPromise(out)
    ? out.then(undefined, (e) => {
        throw toWitError(e);
      })
    : out;
}

/** Continue with `k` after `v`, synchronously when `v` is not a promise. */
const then = (v, k) => (isPromise(v) ? v.then(k) : k(v));

/** Make an iterator (sync or async) out of what `stream` returned. */
function iteratorOf(value) {
  if (value == null) throw ProviderError.provider('stream returned nothing');
  if (typeof value[Symbol.asyncIterator] === 'function') return value[Symbol.asyncIterator]();
  if (typeof value[Symbol.iterator] === 'function') return value[Symbol.iterator]();
  if (typeof value.next === 'function') return value;
  throw ProviderError.provider('stream must return an array, an iterator or a generator');
}

/** The `completion-stream` resource: pulls chunks from an iterator. */
class CompletionStream {
  constructor(iterator, first) {
    this.iterator = iterator;
    this.pending = first; // the first result, pulled by `stream`
    this.done = false;
  }

  next() {
    if (this.done) return undefined;
    if (this.pending !== undefined) {
      const r = this.pending;
      this.pending = undefined;
      return this.settle(r);
    }
    return guarded(() =>
      then(this.iterator.next(), (r) => this.settle(r))
    );
  }

  settle(r) {
    if (r.done) {
      this.done = true;
      return undefined;
    }
    return r.value;
  }
}

/**
 * Turn a provider class into the `provider-api` export. The class has a static
 * `initialize(config: Config)` returning an instance (or a promise of one) and
 * instance methods `capabilities`, `complete`, and optionally `listModels`,
 * `stream`, `healthCheck` and `dispose`.
 */
export function defineProvider(Provider) {
  if (typeof Provider.initialize !== 'function') {
    throw new TypeError('a provider class needs a static initialize(config)');
  }
  let instance = null;
  const self = () => {
    if (instance === null) throw ProviderError.provider('provider used before initialize');
    return instance;
  };

  const embeddings = {
    models() {
      // Infallible in WIT: list none rather than trap.
      const p = instance;
      if (p === null || typeof p.embeddingModels !== 'function') return [];
      try {
        return p.embeddingModels();
      } catch (_) {
        return [];
      }
    },

    embed(request) {
      return guarded(() => {
        const p = self();
        if (typeof p.embed !== 'function') {
          throw ProviderError.invalidRequest('embeddings are not supported by this provider');
        }
        return p.embed(request);
      });
    },
  };

  return {
    CompletionStream,
    embeddings,

    initialize(config) {
      return guarded(() =>
        then(Provider.initialize(new Config(config)), (p) => {
          instance = p;
        })
      );
    },

    capabilities() {
      // Infallible in WIT: an exception here is a bug and traps.
      return self().capabilities();
    },

    listModels() {
      return guarded(() => {
        const p = self();
        return typeof p.listModels === 'function' ? p.listModels() : p.capabilities().models;
      });
    },

    complete(request) {
      return guarded(() => self().complete(request));
    },

    stream(request) {
      return guarded(() => {
        const p = self();
        if (typeof p.stream !== 'function') {
          // Default: the whole answer as one chunk.
          return then(p.complete(request), (r) => {
            const one = chunk(r.id, r.model, r.content, {
              finishReason: r.finishReason,
              usage: r.usage,
              toolCallDeltas: r.toolCalls.map((c, index) => ({
                index,
                id: c.id,
                name: c.name,
                argumentsDelta: c.arguments,
              })),
            });
            return new CompletionStream([one][Symbol.iterator](), undefined);
          });
        }
        return then(p.stream(request), (value) => {
          const it = iteratorOf(value);
          return then(it.next(), (first) => new CompletionStream(it, first));
        });
      });
    },

    healthCheck() {
      const p = instance;
      if (p === null) return health.unhealthy('not initialized');
      if (typeof p.healthCheck !== 'function') return health.healthy('ready');
      try {
        const out = p.healthCheck();
        return isPromise(out)
          ? out.then(undefined, (e) => health.unhealthy(toWitError(e).message))
          : out;
      } catch (e) {
        return health.unhealthy(toWitError(e).message);
      }
    },

    dispose() {
      const p = instance;
      instance = null;
      if (p && typeof p.dispose === 'function') {
        try {
          return p.dispose();
        } catch (_) {
          // nothing to report to: the instance is going away
        }
      }
    },
  };
}
