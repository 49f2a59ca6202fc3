// Bulk-indexes documents with deterministic ids (a replay overwrites, never adds). Returns only when every
// document is either indexed or rejected for a reason that retrying cannot fix (those go to the caller's
// dead-letter topic). While Elasticsearch is unreachable or pushing back (429), it waits with backoff and keeps
// the Kafka group membership alive, so the consumer stops fetching instead of buffering. A request Elasticsearch
// finds too large (413, http.max_content_length) is split in halves until it fits; later batches are cut to fit.
// Shutdown does not abort the batch in hand: it is finished (drained) so its offsets can be committed, within the
// caller's deadline.
import { batches } from '../core/batch.ts';
import { statusOf, type Client } from '../core/elastic.ts';
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
  /** Shutdown has begun. Requests are not aborted (the batch in hand is drained, the caller's deadline bounds
   * that); retries then follow each other quickly instead of backing off. */
  signal?: AbortSignal;
  /** Called between requests and, at least once a second, while waiting to retry (the Kafka heartbeat: a batch
   * that takes longer than the session timeout must not cost the consumer its group membership). */
  onWait?: () => Promise<void>;
}

const MAX_BATCH_BYTES = 8 * 1024 * 1024;
/** The longest wait without calling onWait. */
const WAIT_SLICE_MS = 1000;

type Item = { req: IndexRequest; body: string };

/** About the bytes an item takes in a _bulk body (its action line and its source line). */
function itemBytes({ req, body }: Item): number {
  return body.length + req.index.length + req.id.length + 36;
}

function bodyBytes(items: Item[]): number {
  let n = 0;
  for (const item of items) n += itemBytes(item);
  return n;
}

function retryable(status: number): boolean {
  return status === 429 || status >= 500;
}

export class ElasticsearchSink {
  private readonly log;
  private readonly metrics;

  /** Why the last bulk request failed, while Elasticsearch has not taken one since (for /readyz). */
  lastError?: string;
  /** Largest _bulk body to send: lowered when Elasticsearch answers 413 (its http.max_content_length). */
  private maxBytes = MAX_BATCH_BYTES;

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
    let first = true;
    for (const chunk of this.chunks(requests)) {
      if (!first) await opts.onWait?.();
      first = false;
      this.metrics.received(chunk.length);
      rejected.push(...(await this.writeChunk(chunk, opts)));
    }
    return rejected;
  }

  /** Chunks of at most maxDocs documents and about maxBytes, the byte limit read for each chunk as it is cut (a
   * 413 lowers it for the rest of the batch too). Each document is serialised once, when its chunk is cut. */
  private chunks(requests: IndexRequest[]): Generator<Item[]> {
    const items = (function* () {
      for (const req of requests) yield { req, body: JSON.stringify(req.doc) };
    })();
    return batches(items, this.maxDocs, () => this.maxBytes, itemBytes);
  }

  private async writeChunk(chunk: Item[], opts: WriteOptions): Promise<Rejected[]> {
    const rejected: Rejected[] = [];
    let pending = chunk;
    for (let attempt = 1; pending.length > 0; attempt++) {
      const retry: typeof pending = [];
      try {
        // Pre-serialised lines: the client passes strings through as they are, so each document is
        // serialised once (it was measured for the batch-size limit already).
        const operations = pending.flatMap(({ req, body }) => [JSON.stringify({ index: { _index: req.index, _id: req.id } }), body]);
        const endTimer = bulkDuration.startTimer({ component: this.component });
        // Only what is read back: the answer shrinks to a status per document (and the errors), which spares
        // Elasticsearch building and this process parsing the full per-item results.
        const res = await this.client.bulk<string>({ operations, filter_path: 'errors,items.*.status,items.*.error' });
        endTimer();
        this.lastError = undefined;
        let refused = 0;
        res.items.forEach((item, i) => {
          const r = item.index!;
          if (!r.error) return;
          bulkRejections.inc({ component: this.component, status: String(r.status) });
          if (retryable(r.status)) retry.push(pending[i]);
          else {
            refused++;
            rejected.push({ request: pending[i].req, reason: `elasticsearch rejected the document (${r.status} ${r.error.type}): ${r.error.reason ?? ''}` });
          }
        });
        this.metrics.sent(pending.length - retry.length - refused);
        if (retry.length > 0) this.metrics.error('bulk_item_retry', retry.length);
        if (refused > 0) this.metrics.error('bulk_item_rejected', refused);
      } catch (err) {
        if (statusOf(err) === 413) {
          // Larger than Elasticsearch's http.max_content_length: halves, each written on its own (and later
          // batches cut to fit). A single document that does not fit can never be taken: the caller dead-letters it.
          if (pending.length === 1) {
            this.metrics.error('bulk_item_rejected');
            rejected.push({
              request: pending[0].req,
              reason: `elasticsearch refused the request as too large (413, http.max_content_length) for a single document of ${bodyBytes(pending)} bytes`,
            });
            break;
          }
          const half = Math.ceil(pending.length / 2);
          this.maxBytes = Math.max(64 * 1024, Math.min(this.maxBytes, Math.floor(bodyBytes(pending) / 2)));
          this.metrics.error('bulk_request_too_large');
          this.log.warn(`bulk request of ${pending.length} documents (${bodyBytes(pending)} bytes) too large for Elasticsearch (413); splitting it`, {
            hint: "raise Elasticsearch's http.max_content_length, or leave it: batches are cut to fit",
          });
          rejected.push(...(await this.writeChunk(pending.slice(0, half), opts)));
          await opts.onWait?.();
          rejected.push(...(await this.writeChunk(pending.slice(half), opts)));
          break;
        }
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
      if (pending.length > 0) await this.pause(backoffDelay(attempt, 250, opts.signal?.aborted ? 1000 : 10_000), opts);
    }
    return rejected;
  }

  /** Waits before a retry, calling onWait at least once a second (a backoff may be longer than the session timeout). */
  private async pause(ms: number, opts: WriteOptions): Promise<void> {
    for (let left = ms; left > 0; left -= WAIT_SLICE_MS) {
      await sleep(Math.min(left, WAIT_SLICE_MS));
      await opts.onWait?.();
    }
  }
}
