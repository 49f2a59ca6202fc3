// core/batch.ts: the one way stackwatch cuts items into requests (the collector's Kafka sends, replay, the
// Elasticsearch sink's _bulk requests).
import { describe, expect, it } from 'vitest';
import { batches } from '../../core/batch.ts';

const len = (s: string) => s.length;

describe('batches', () => {
  it('cuts at the count and at the bytes, and gives a larger item a batch of its own', () => {
    expect([...batches(['a', 'b', 'c', 'd', 'e'], 2, 100, len)]).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
    expect([...batches(['aaa', 'bbb', 'ccc'], 10, 6, len)]).toEqual([['aaa', 'bbb'], ['ccc']]);
    expect([...batches(['a', 'bbbbbbbbbb', 'c'], 10, 4, len)]).toEqual([['a'], ['bbbbbbbbbb'], ['c']]);
    expect([...batches([], 10, 4, len)]).toEqual([]);
  });

  it('reads a byte limit given as a function as each batch is cut, and takes items only as batches are consumed', () => {
    let limit = 8;
    let taken = 0;
    const items = (function* () {
      for (const s of ['aaaa', 'bbbb', 'cccc', 'dddd', 'eeee', 'ffff']) {
        taken++;
        yield s;
      }
    })();
    const it = batches(items, 10, () => limit, len);
    expect(it.next().value).toEqual(['aaaa', 'bbbb']);
    expect(taken).toBe(3); // the item that did not fit, not the rest
    limit = 4; // lowered while the first batch was written (a 413)
    expect(it.next().value).toEqual(['cccc']);
    expect(it.next().value).toEqual(['dddd']);
    limit = 100;
    expect(it.next().value).toEqual(['eeee', 'ffff']);
    expect(it.next().done).toBe(true);
  });
});
