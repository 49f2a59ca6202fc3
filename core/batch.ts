/** Splits items into batches of at most `maxCount` items and about `maxBytes` (a single larger item gets a batch of its own). */
export function* batches<T>(items: Iterable<T>, maxCount: number, maxBytes: number, size: (item: T) => number): Generator<T[]> {
  let batch: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const n = size(item);
    if (batch.length > 0 && (batch.length >= maxCount || bytes + n > maxBytes)) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(item);
    bytes += n;
  }
  if (batch.length > 0) yield batch;
}
