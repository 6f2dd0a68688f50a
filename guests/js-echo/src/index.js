// @ts-check
// `js-echo`: the echo provider (guests/echo) in JavaScript. Deterministic, no
// network: it answers with the last user message (prefixed by the config key
// `prefix`), counts whitespace-separated words as tokens, honours `max_tokens` by
// truncating the answer (finish reason `length`) and streams word by word. Its
// embedding model `echo-embed-1` gives a deterministic toy unit vector per input
// (FNV-1a of the text and the component index), as the Rust echo does.
//
// For sandbox tests, request metadata `spin`="1" loops forever and `grow`="1"
// allocates without bound.

import {
  defineProvider,
  ProviderError,
  capabilities,
  chunk,
  countWords,
  embeddingModel,
  embeddingResponse,
  health,
  lastUserMessage,
  log,
  metadata,
  model,
  response,
  usage,
} from '../../js-sdk/tamma.js';

const MODEL = 'echo-1';
const EMBED_MODEL = 'echo-embed-1';
const EMBED_DIMENSIONS = 8;
const MAX_EMBED_DIMENSIONS = 4096;
const MASK64 = (1n << 64n) - 1n;

/** A deterministic unit vector for `text`. @param {string} text @param {number} dimensions */
function toyEmbedding(text, dimensions) {
  const bytes = new TextEncoder().encode(text);
  const raw = [];
  for (let i = 0; i < dimensions; i++) {
    let h = 0xcbf29ce484222325n;
    const index = [i & 0xff, (i >> 8) & 0xff, (i >> 16) & 0xff, (i >>> 24) & 0xff];
    for (const b of [...bytes, ...index]) {
      h ^= BigInt(b);
      h = (h * 0x100000001b3n) & MASK64;
    }
    raw.push((Number(h >> 40n) / 2 ** 24) * 2 - 1);
  }
  const norm = Math.sqrt(raw.reduce((s, x) => s + x * x, 0));
  return norm === 0 ? raw : raw.map((x) => x / norm);
}

/** @typedef {import('../../js-sdk/tamma').CompletionRequest} CompletionRequest */

class Echo {
  /** @param {import('../../js-sdk/tamma').Config} config */
  static initialize(config) {
    return new Echo(config.get('prefix', ''));
  }

  /** @param {string} prefix */
  constructor(prefix) {
    this.prefix = prefix;
    this.counter = 0;
  }

  capabilities() {
    return capabilities([model(MODEL, { name: 'Echo (JavaScript)' })], {
      features: ['deterministic'],
    });
  }

  /** @param {CompletionRequest} request */
  answer(request) {
    adversarial(request);
    const last = lastUserMessage(request);
    if (last === undefined) {
      throw ProviderError.invalidRequest('the conversation has no user message');
    }
    let words = `${this.prefix}${last}`.split(/\s+/).filter(Boolean);
    /** @type {'stop' | 'length'} */
    let finishReason = 'stop';
    if (request.maxTokens !== undefined && words.length > request.maxTokens) {
      words = words.slice(0, request.maxTokens);
      finishReason = 'length';
    }
    const input = request.messages.reduce((n, m) => n + countWords(m.content), 0);
    this.counter += 1;
    return {
      id: `echo-${this.counter}`,
      model: request.model || MODEL,
      words,
      finishReason,
      usage: usage(input, words.length),
    };
  }

  /** @param {CompletionRequest} request */
  complete(request) {
    const a = this.answer(request);
    log.debug(`echo answered ${a.words.length} words (finish: ${a.finishReason})`, {
      id: a.id,
      model: a.model,
    });
    return response(a.id, a.model, a.words.join(' '), {
      finishReason: a.finishReason,
      usage: a.usage,
    });
  }

  /** @param {CompletionRequest} request */
  *stream(request) {
    const a = this.answer(request);
    if (a.words.length === 0) {
      yield chunk(a.id, a.model, '', { finishReason: a.finishReason, usage: a.usage });
      return;
    }
    for (const [i, w] of a.words.entries()) {
      const last = i === a.words.length - 1;
      yield chunk(a.id, a.model, i === 0 ? w : ` ${w}`, last ? { finishReason: a.finishReason, usage: a.usage } : {});
    }
  }

  embeddingModels() {
    return [embeddingModel(EMBED_MODEL, EMBED_DIMENSIONS)];
  }

  /** @param {import('../../js-sdk/tamma').EmbeddingRequest} request */
  embed(request) {
    const dimensions = request.dimensions ?? EMBED_DIMENSIONS;
    if (dimensions < 1 || dimensions > MAX_EMBED_DIMENSIONS) {
      throw ProviderError.invalidRequest(
        `dimensions must be between 1 and ${MAX_EMBED_DIMENSIONS}, got ${dimensions}`
      );
    }
    const vectors = request.inputs.map((t) => toyEmbedding(t, dimensions));
    const tokens = request.inputs.reduce((n, t) => n + countWords(t), 0);
    return embeddingResponse(request.model || EMBED_MODEL, vectors, tokens);
  }

  healthCheck() {
    return health.healthy('echo is ready');
  }
}

/** Misbehave on request, to exercise the sandbox limits. @param {CompletionRequest} request */
function adversarial(request) {
  if (metadata(request, 'spin') === '1') {
    let n = 0;
    for (;;) n = (n + 1) | 0;
  }
  if (metadata(request, 'grow') === '1') {
    const hoard = [];
    for (;;) hoard.push(new Uint8Array(1 << 20).fill(0xa5));
  }
}

export const providerApi = defineProvider(Echo);
export const embeddings = providerApi.embeddings;
