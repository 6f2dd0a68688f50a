// Types of the world `tamma:provider/provider` (wit/provider.wit) as componentize-js
// maps them, and of the helpers in tamma.js. Hand-written: WIT records are plain
// objects with camelCase fields, enums are kebab-case strings, `option<T>` is
// `T | undefined`, `u64` is `bigint`, and `result<T, E>` is "return T or throw E".
//
// Use from plain JavaScript with `// @ts-check` and JSDoc:
//   /** @param {import('../../js-sdk/tamma').CompletionRequest} request */
// or from TypeScript (compiled to JS before componentize-js).

// ---------------------------------------------------------------------------
// tamma:provider/types

export type Role = 'system' | 'user' | 'assistant' | 'tool';

export interface ToolCall {
  id: string;
  name: string;
  /** JSON text. */
  arguments: string;
}

export interface Message {
  role: Role;
  content: string;
  name?: string;
  toolCallId?: string;
  toolCalls: ToolCall[];
}

export interface ToolDefinition {
  name: string;
  description: string;
  /** JSON Schema, as a JSON text. */
  parametersSchema: string;
}

export interface CompletionRequest {
  /** Model id as listed by list-models; may be empty (the provider's default). */
  model: string;
  messages: Message[];
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  stop: string[];
  tools: ToolDefinition[];
  metadata: [string, string][];
}

export type FinishReason = 'stop' | 'length' | 'tool-calls' | 'content-filter' | 'error';

export interface Usage {
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
  cacheReadTokens?: number;
  cacheWriteTokens?: number;
}

export interface CompletionResponse {
  id: string;
  model: string;
  content: string;
  toolCalls: ToolCall[];
  finishReason: FinishReason;
  usage: Usage;
}

export interface ToolCallDelta {
  index: number;
  id?: string;
  name?: string;
  argumentsDelta: string;
}

export interface StreamChunk {
  id: string;
  model: string;
  delta: string;
  toolCallDeltas: ToolCallDelta[];
  finishReason?: FinishReason;
  usage?: Usage;
}

export interface ModelInfo {
  id: string;
  name: string;
  contextWindow: number;
  maxOutputTokens: number;
  supportsStreaming: boolean;
  supportsImages: boolean;
  supportsTools: boolean;
}

export interface Capabilities {
  supportsStreaming: boolean;
  supportsImages: boolean;
  supportsTools: boolean;
  maxContextTokens: number;
  maxOutputTokens: number;
  models: ModelInfo[];
  features: string[];
}

export type HealthStatus = 'healthy' | 'degraded' | 'unhealthy';

export interface Health {
  status: HealthStatus;
  message: string;
}

export type ErrorCode =
  | 'rate-limit-exceeded'
  | 'invalid-api-key'
  | 'model-not-found'
  | 'context-too-long'
  | 'network-error'
  | 'timeout'
  | 'invalid-request'
  | 'provider-error'
  | 'quota-exceeded'
  | 'service-unavailable';

/** The WIT record (what is thrown across the boundary). */
export interface WitProviderError {
  code: ErrorCode;
  message: string;
  retryable: boolean;
  retryAfterMs?: bigint;
}

// ---------------------------------------------------------------------------
// tamma:provider/host (import from 'tamma:provider/host@0.2.0')

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

// ---------------------------------------------------------------------------
// Helpers (tamma.js)

export declare const ERROR_CODES: readonly ErrorCode[];

export declare class ProviderError extends Error {
  constructor(code: ErrorCode, message: string, opts?: { retryable?: boolean; retryAfterMs?: number });
  code: ErrorCode;
  retryable: boolean;
  retryAfterMs?: number;
  static rateLimited(message: string, retryAfterMs?: number): ProviderError;
  static invalidApiKey(message: string): ProviderError;
  static modelNotFound(message: string): ProviderError;
  static contextTooLong(message: string): ProviderError;
  static network(message: string): ProviderError;
  static timeout(message: string): ProviderError;
  static invalidRequest(message: string): ProviderError;
  static provider(message: string): ProviderError;
  static quotaExceeded(message: string): ProviderError;
  static unavailable(message: string, retryAfterMs?: number): ProviderError;
  static fromHttpStatus(
    status: number,
    message: string,
    opts?: { upstreamCode?: string; retryAfterMs?: number },
  ): ProviderError;
  toWit(): WitProviderError;
}

export declare function toWitError(e: unknown): WitProviderError;

type LogFn = (message: string, fields?: Record<string, unknown>) => void;
export declare const log: Readonly<Record<LogLevel, LogFn>>;

export declare class Config {
  constructor(entries: [string, string][]);
  readonly entries: [string, string][];
  get(key: string): string | undefined;
  get(key: string, fallback: string): string;
  require(key: string): string;
  number(key: string, fallback: number): number;
  list(key: string): string[];
}

export declare function countWords(text: string): number;
export declare function lastUserMessage(request: CompletionRequest): string | undefined;
export declare function metadata(request: CompletionRequest, key: string): string | undefined;
export declare function usage(
  input: number,
  output: number,
  opts?: { cacheRead?: number; cacheWrite?: number },
): Usage;
export declare function model(
  id: string,
  opts?: Partial<Omit<ModelInfo, 'id'>>,
): ModelInfo;
export declare function capabilities(
  models: ModelInfo[],
  opts?: Partial<Omit<Capabilities, 'models'>>,
): Capabilities;
export declare function response(
  id: string,
  model: string,
  content: string,
  opts?: { toolCalls?: ToolCall[]; finishReason?: FinishReason; usage?: Usage },
): CompletionResponse;
export declare function chunk(
  id: string,
  model: string,
  delta: string,
  opts?: { toolCallDeltas?: ToolCallDelta[]; finishReason?: FinishReason; usage?: Usage },
): StreamChunk;
/** WIT `embedding-request` (contract 0.2.0). */
export interface EmbeddingRequest {
  model: string;
  inputs: string[];
  dimensions?: number;
  metadata: [string, string][];
}
/** WIT `embedding-usage`. */
export interface EmbeddingUsage {
  inputTokens: number;
  totalTokens: number;
}
/** WIT `embedding-response`: one vector per input, in order. */
export interface EmbeddingResponse {
  model: string;
  vectors: number[][];
  usage: EmbeddingUsage;
}
/** WIT `embedding-model-info`. */
export interface EmbeddingModelInfo {
  id: string;
  name: string;
  dimensions: number;
  maxInputTokens: number;
}
export declare function embeddingModel(
  id: string,
  dimensions: number,
  opts?: { name?: string; maxInputTokens?: number },
): EmbeddingModelInfo;
export declare function embeddingResponse(
  model: string,
  vectors: number[][],
  inputTokens: number,
): EmbeddingResponse;

export declare const health: Readonly<{
  healthy(message?: string): Health;
  degraded(message: string): Health;
  unhealthy(message: string): Health;
}>;

/** Server-sent events of a `fetch` body. */
export declare function sseEvents(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<{ event: string; data: string }>;

type MaybePromise<T> = T | Promise<T>;
type ChunkSource =
  | Iterable<StreamChunk>
  | AsyncIterable<StreamChunk>
  | Iterator<StreamChunk>
  | AsyncIterator<StreamChunk>;

/** What a provider class implements; `defineProvider` fills in the rest. */
export interface Provider {
  capabilities(): Capabilities;
  complete(request: CompletionRequest): MaybePromise<CompletionResponse>;
  /** Default: the capabilities' models. */
  listModels?(): MaybePromise<ModelInfo[]>;
  /** Default: one chunk made from `complete`. */
  stream?(request: CompletionRequest): MaybePromise<ChunkSource>;
  /** Default: healthy. A throw becomes `unhealthy`. */
  healthCheck?(): MaybePromise<Health>;
  dispose?(): void;
  /** Default: none. */
  embeddingModels?(): EmbeddingModelInfo[];
  /** Default: `invalid-request`, "embeddings are not supported by this provider". */
  embed?(request: EmbeddingRequest): MaybePromise<EmbeddingResponse>;
}

/** The `embeddings` export: `export const embeddings = providerApi.embeddings`. */
export interface EmbeddingsApi {
  models(): EmbeddingModelInfo[];
  embed(request: EmbeddingRequest): MaybePromise<EmbeddingResponse>;
}

export interface ProviderClass<P extends Provider = Provider> {
  initialize(config: Config): MaybePromise<P>;
}

/** The `provider-api` export: `export const providerApi = defineProvider(MyProvider)`. */
export interface ProviderApi {
  CompletionStream: new (...args: never[]) => { next(): MaybePromise<StreamChunk | undefined> };
  embeddings: EmbeddingsApi;
  initialize(config: [string, string][]): MaybePromise<void>;
  capabilities(): Capabilities;
  listModels(): MaybePromise<ModelInfo[]>;
  complete(request: CompletionRequest): MaybePromise<CompletionResponse>;
  stream(request: CompletionRequest): MaybePromise<{ next(): MaybePromise<StreamChunk | undefined> }>;
  healthCheck(): MaybePromise<Health>;
  dispose(): void;
}

export declare function defineProvider<P extends Provider>(provider: ProviderClass<P>): ProviderApi;
