// The Elasticsearch connection: the client (credentials, TLS, one clear line for a refused request), waiting for
// the cluster, daily index names, and what an error says. What stackwatch keeps in the cluster (templates,
// aliases, retention) is sinks/index-setup.ts.
import { Client, errors } from '@elastic/elasticsearch';
import type { Config } from './config.ts';
import { clarifyElasticsearchError } from './es-errors.ts';
import { errorText, logger } from './log.ts';
import { retry } from './retry.ts';

export type ElasticsearchConfig = Config['elasticsearch'];
export type { Client } from '@elastic/elasticsearch';

export function esClient(cfg: ElasticsearchConfig): Client {
  const auth = cfg.api_key ? { apiKey: cfg.api_key } : cfg.username ? { username: cfg.username, password: cfg.password ?? '' } : undefined;
  // elasticsearch.tls: the CA file was read when the config was loaded; without it the system CAs apply.
  const tls = cfg.tls ? { rejectUnauthorized: cfg.tls.reject_unauthorized, ...(cfg.tls.ca ? { ca: cfg.tls.ca } : {}) } : undefined;
  const client = new Client({ node: cfg.url, auth, tls, requestTimeout: cfg.request_timeout_ms, maxRetries: 0 });
  // Wrong credentials, missing privileges, an untrusted certificate: one clear line instead of the client's
  // multi-line message (the error is rewritten in place, before the caller gets it).
  client.diagnostic.on('response', (err) => void clarifyElasticsearchError(err));
  return client;
}

/** Waits until the cluster answers, with backoff; a clear line per failed attempt. */
export async function waitForElasticsearch(client: Client, cfg: ElasticsearchConfig, signal?: AbortSignal): Promise<void> {
  // cluster.health, not info(): the minimal distribution answers GET / with 405.
  await retry(() => client.cluster.health(), {
    what: `connect to Elasticsearch ${cfg.url}`,
    log: logger('elasticsearch'),
    hint: 'check elasticsearch.url (or STACKWATCH_ES_URL) and the credentials',
    signal,
  });
}

/** Daily index of an event: `<prefix>-YYYY.MM.DD` from its own timestamp, so a replay lands where it did. */
export function dailyIndex(prefix: string, isoTimestamp: string): string {
  return `${prefix}-${isoTimestamp.slice(0, 4)}.${isoTimestamp.slice(5, 7)}.${isoTimestamp.slice(8, 10)}`;
}

/** Status of a request that failed with an HTTP answer; undefined for a connection problem. */
export function statusOf(err: unknown): number | undefined {
  return err instanceof errors.ResponseError ? err.statusCode : undefined;
}

/** The reason of an Elasticsearch error, innermost cause first ("mapper_parsing_exception: …"). */
export function esReason(err: unknown): string {
  if (err instanceof errors.ResponseError) {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- an error body of any shape, read by key
    const e = (err.body as Record<string, any> | undefined)?.error;
    if (e && typeof e === 'object') {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the same body's nested causes
      let inner: Record<string, any> = e;
      while (inner.caused_by) inner = inner.caused_by;
      return `${inner.type}: ${inner.reason}`;
    }
    if (typeof e === 'string') return e;
  }
  return errorText(err);
}
