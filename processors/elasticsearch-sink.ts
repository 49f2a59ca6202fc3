// Bulk-indexes documents with deterministic ids (a replay overwrites, never adds). Returns only when every
// document is either indexed or rejected for a reason that retrying cannot fix (those go to the caller's
// dead-letter topic). While Elasticsearch is unreachable or pushing back (429), it waits with backoff and keeps
// the Kafka group membership alive, so the consumer stops fetching instead of buffering.
import { batches } from '../core/batch.ts';
import type { Client } from '../core/elastic.ts';
import { errorText, logger } from '../core/log.ts';
import { bulkDuration, bulkRejections, componentMetrics } from '../core/metrics.ts';
import { backoffDelay, sleep } from '../core/retry.ts';

export interface IndexRequest {
  index: string;
  id: string;
  doc: unknown;
}

export interface Rejected {
  request: IndexRequest;
  reason: string;
}

export interface WriteOptions {
  signal?: AbortSignal;
  /** Called between retries (the Kafka heartbeat). */
  onWait?: () => Promise<void>;
}

const MAX_BATCH_BYTES = 8 * 1024 * 1024;

function retryable(status: number): boolean {
  return status === 429 || status >= 500;
}

export class ElasticsearchSink {
  private readonly log;
  private readonly metrics;

  /** Why the last bulk request failed, while Elasticsearch has not taken one since (for /readyz). */
  lastError?: string;

  constructor(
    private readonly client: Client,
    private readonly component: string,
    private readonly maxDocs = 2000,
  ) {
    this.log = logger(component);
    this.metrics = componentMetrics(component);
  }

  async write(requests: IndexRequest[], opts: WriteOptions = {}): Promise<Rejected[]> {
    const rejected: Rejected[] = [];
    for (const chunk of this.chunks(requests)) rejected.push(...(await this.writeChunk(chunk, opts)));
    return rejected;
  }

  private chunks(requests: IndexRequest[]): Generator<{ req: IndexRequest; body: string }[]> {
    return batches(
      requests.map((req) => ({ req, body: JSON.stringify(req.doc) })),
      this.maxDocs,
      MAX_BATCH_BYTES,
      (r) => r.body.length,
    );
  }

  private async writeChunk(chunk: { req: IndexRequest; body: string }[], opts: WriteOptions): Promise<Rejected[]> {
    this.metrics.received(chunk.length);
    const rejected: Rejected[] = [];
    let pending = chunk;
    for (let attempt = 1; pending.length > 0; attempt++) {
      const retry: typeof pending = [];
      try {
        // Pre-serialised lines: the client passes strings through as they are, so each document is
        // serialised once (it was measured for the batch-size limit already).
        const operations = pending.flatMap(({ req, body }) => [JSON.stringify({ index: { _index: req.index, _id: req.id } }), body]);
        const endTimer = bulkDuration.startTimer({ component: this.component });
        const res = await this.client.bulk<string>({ operations }, { signal: opts.signal });
        endTimer();
        this.lastError = undefined;
        res.items.forEach((item, i) => {
          const r = item.index!;
          if (!r.error) return;
          bulkRejections.inc({ component: this.component, status: String(r.status) });
          if (retryable(r.status)) retry.push(pending[i]);
          else rejected.push({ request: pending[i].req, reason: `elasticsearch rejected the document (${r.status} ${r.error.type}): ${r.error.reason ?? ''}` });
        });
        this.metrics.sent(pending.length - retry.length - rejected.length);
        if (retry.length > 0) this.metrics.error('bulk_item_retry', retry.length);
      } catch (err) {
        if (opts.signal?.aborted) throw err;
        this.lastError = errorText(err);
        this.metrics.error('bulk_request');
        this.log.error(`bulk request to Elasticsearch failed: ${errorText(err)}; retrying, the consumer waits`, {
          attempt,
          docs: pending.length,
          hint: 'check that Elasticsearch is up; nothing is committed until it accepts the batch',
        });
        retry.push(...pending);
      }
      pending = retry;
      if (pending.length > 0) {
        await sleep(backoffDelay(attempt, 250, 10_000), opts.signal);
        await opts.onWait?.();
      }
    }
    if (rejected.length > 0) this.metrics.error('bulk_item_rejected', rejected.length);
    return rejected;
  }
}
