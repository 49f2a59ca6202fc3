/** Splits items into batches of at most `maxCount` items and about `maxBytes` (a single larger item gets a batch of its own).
 * Items are taken from `items` one at a time, as the batches are consumed; `maxBytes` may be a function, read as each
 * batch is cut (a limit that shrinks while the batches are written). */
export function* batches<T>(items: Iterable<T>, maxCount: number, maxBytes: number | (() => number), size: (item: T) => number): Generator<T[]> {
  const limit = typeof maxBytes === 'function' ? maxBytes : () => maxBytes;
  let batch: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const n = size(item);
    if (batch.length > 0 && (batch.length >= maxCount || bytes + n > limit())) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(item);
    bytes += n;
  }
  if (batch.length > 0) yield batch;
}
