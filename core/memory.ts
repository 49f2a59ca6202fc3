// Memory the collector gives back early (issue 16). kafkajs encodes each request into buffers that it grows by
// doubling, and copies it three times on the way (records, batch, request): every send of 512 KiB of events leaves
// several MiB of ArrayBuffers behind. V8 counts their memory as external and frees them with the objects that hold
// them, at a scavenge; it asks for one on external memory only once the sum crosses its own limit (64 MiB), so a
// collector that allocates little on its heap holds tens of MiB of dead buffers (RSS 145 MiB at peak reading the
// peer benchmark's corpus, 9-43 MiB of it external). bin/stackwatch-collector.mjs starts node with --expose-gc; a
// scavenge after a send while more than EXTERNAL_SLACK_BYTES of ArrayBuffers are held frees them. Without
// --expose-gc (`stackwatch run`, tests) this does nothing.

/** ArrayBuffers held before a send is followed by a scavenge. */
export const EXTERNAL_SLACK_BYTES = 2 * 1024 * 1024;

type Collect = (options: { type: 'minor' }) => void;

/** A young-generation collection if more than `slack` bytes of ArrayBuffers are held and node was started with
 * --expose-gc; whether it ran. */
export function releaseDeadBuffers(
  slack = EXTERNAL_SLACK_BYTES,
  collect: Collect | undefined = (globalThis as { gc?: Collect }).gc,
  arrayBuffers: () => number = () => process.memoryUsage().arrayBuffers,
): boolean {
  if (collect === undefined || arrayBuffers() <= slack) return false;
  collect({ type: 'minor' });
  return true;
}
