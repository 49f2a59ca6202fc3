// Elasticsearch connection and the index templates stackwatch writes through.
import { readFileSync } from 'node:fs';
import { Client } from '@elastic/elasticsearch';
import type { Config } from './config.ts';
import { logger } from './log.ts';
import { retry } from './retry.ts';

export type ElasticsearchConfig = Config['elasticsearch'];
export type { Client } from '@elastic/elasticsearch';

export function esClient(cfg: ElasticsearchConfig): Client {
  const auth = cfg.api_key
    ? { apiKey: cfg.api_key }
    : cfg.username
      ? { username: cfg.username, password: cfg.password ?? '' }
      : undefined;
  return new Client({ node: cfg.url, auth, requestTimeout: cfg.request_timeout_ms, maxRetries: 0 });
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

const TEMPLATE_DIR = new URL('../dashboards/index-templates/', import.meta.url);

/** Installs (or updates) the composable index templates for the configured index prefixes. Idempotent. */
export async function installIndexTemplates(client: Client, cfg: ElasticsearchConfig): Promise<void> {
  for (const [kind, prefix] of Object.entries(cfg.indices)) {
    const body = JSON.parse(readFileSync(new URL(`stackwatch-${kind}.json`, TEMPLATE_DIR), 'utf8'));
    await client.indices.putIndexTemplate({ name: prefix, ...body, index_patterns: [`${prefix}-*`] });
  }
}
