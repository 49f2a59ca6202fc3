// The collector's partitioner: the partition of every key as kafkajs's default (Java-compatible murmur2)
// partitioner gives it — so that a file's events stay in order on one partition, and other Kafka clients agree —
// computed once per key.
import { Partitioners, type PartitionerArgs } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { cachingPartitioner } from '../../core/kafka.ts';

const metadata = (n: number) => Array.from({ length: n }, (_, i) => ({ partitionErrorCode: 0, partitionId: i, leader: 0, replicas: [0], isr: [0] }));
const args = (topic: string, partitions: number, key: string | null): PartitionerArgs => ({ topic, partitionMetadata: metadata(partitions), message: { key, value: 'x' } });

describe('cachingPartitioner', () => {
  it('gives every key the partition of the default partitioner, on every call and for every partition count', () => {
    const reference = Partitioners.DefaultPartitioner();
    const cached = cachingPartitioner();
    const keys = Array.from({ length: 500 }, (_, i) => `compute-${i % 37}:/var/log/kolla/nova/nova-compute.log.${i}`);
    for (const partitions of [1, 3, 12]) {
      for (const topic of ['stackwatch.logs', 'other']) {
        const want = keys.map((k) => reference(args(topic, partitions, k)));
        expect(new Set(want).size).toBe(partitions); // the keys do spread
        for (let round = 0; round < 3; round++) expect(keys.map((k) => cached(args(topic, partitions, k)))).toEqual(want);
      }
    }
  });

  it('keeps a topic whose partitions grew apart from what it remembered, and spreads keyless messages', () => {
    const cached = cachingPartitioner();
    const reference = Partitioners.DefaultPartitioner();
    const key = 'controller-1:/var/log/kolla/neutron/neutron-server.log';
    expect(reference(args('t', 3, key))).not.toBe(reference(args('t', 7, key))); // the count matters for this key
    expect(cached(args('t', 3, key))).toBe(reference(args('t', 3, key)));
    expect(cached(args('t', 7, key))).toBe(reference(args('t', 7, key)));
    const keyless = new Set(Array.from({ length: 60 }, () => cached(args('t', 3, null))));
    expect(keyless.size).toBeGreaterThan(1);
  });
});
