// Reads a whole log file (plain or gzip) into events, streaming, for the offline tools (`parse`, `replay`):
// the same splitting, folding and masking as the collector, without checkpoints.
import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { EventAssembler, LineSplitter, type AssembledEvent, type UnusableLine } from './assemble.ts';
import { fingerprint } from './openstack-logs.ts';

export interface ReadOptions {
  maxEventBytes: number;
  keepOriginal?: boolean;
  /** Called with the compressed bytes read so far, for progress bars. */
  onBytes?: (n: number) => void;
}

export interface FileEvents {
  fileId: string;
  events: AssembledEvent[];
  unusable: UnusableLine[];
}

/** Yields the file's events in batches (at most about `batchSize` each, in file order). */
export async function* readLogFile(path: string, opts: ReadOptions, batchSize = 5000): AsyncGenerator<FileEvents> {
  const file = createReadStream(path, { highWaterMark: 1024 * 1024 });
  const source = path.endsWith('.gz') ? file.pipe(createGunzip({ chunkSize: 1024 * 1024 })) : file;
  let events: AssembledEvent[] = [];
  let unusable: UnusableLine[] = [];
  const assembler = new EventAssembler({ maxEventBytes: opts.maxEventBytes, keepOriginal: opts.keepOriginal }, (e) => events.push(e));
  const splitter = new LineSplitter(0, opts.maxEventBytes, (o, t, cut) => assembler.push(o, t, cut), (u) => unusable.push(u));
  let fileId: string | undefined;
  let lastBytes = 0;
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      fileId ??= fingerprint(chunk.subarray(0, 1024), true)!;
      splitter.write(chunk);
      if (opts.onBytes && file.bytesRead !== lastBytes) opts.onBytes((lastBytes = file.bytesRead));
      if (events.length + unusable.length >= batchSize) {
        yield { fileId, events, unusable };
        events = [];
        unusable = [];
      }
    }
  } finally {
    file.destroy();
  }
  splitter.end();
  assembler.flush();
  if (fileId !== undefined && (events.length > 0 || unusable.length > 0)) yield { fileId, events, unusable };
}
