// core/memory.ts: the collector's scavenge after a Kafka send, when ArrayBuffers pile up (issue 16).
import { describe, expect, it } from 'vitest';
import { EXTERNAL_SLACK_BYTES, releaseDeadBuffers } from '../../core/memory.ts';
import { run as runCommand } from './run.ts';

describe('releaseDeadBuffers', () => {
  it('asks for a young-generation collection only above the slack, and only where node exposes gc', () => {
    const calls: unknown[] = [];
    const collect = (o: { type: 'minor' }) => void calls.push(o);
    expect(releaseDeadBuffers(EXTERNAL_SLACK_BYTES, collect, () => EXTERNAL_SLACK_BYTES)).toBe(false);
    expect(calls).toEqual([]);
    expect(releaseDeadBuffers(EXTERNAL_SLACK_BYTES, collect, () => EXTERNAL_SLACK_BYTES + 1)).toBe(true);
    expect(calls).toEqual([{ type: 'minor' }]);
    expect(releaseDeadBuffers(EXTERNAL_SLACK_BYTES, undefined, () => 1e9)).toBe(false);
  });

  it('frees dead ArrayBuffers in a real node started as stackwatch-collector starts it (--expose-gc, a 1 MiB semi-space)', async () => {
    // 40 buffers of 1 MiB, each dropped at once: V8 frees most as it goes, and holds the last ones (8 MiB here) until
    // its next scavenge; their memory is given back by a sweeper thread shortly after it. The same child without the
    // call still holds them 100 ms later.
    const script = (release: boolean) => `
      import { releaseDeadBuffers } from './core/memory.ts';
      const churn = () => { let n = 0; for (let i = 0; i < 40; i++) n += Buffer.alloc(1024 * 1024, i)[0]; return n; };
      churn();
      const before = process.memoryUsage().arrayBuffers;
      const ran = ${release} && releaseDeadBuffers();
      await new Promise((r) => setTimeout(r, 100));
      console.log(JSON.stringify({ before, ran, after: process.memoryUsage().arrayBuffers }));`;
    const root = new URL('../../', import.meta.url).pathname;
    const run = async (release: boolean) => {
      const r = await runCommand(process.execPath, ['--expose-gc', '--max-semi-space-size=1', '--import', 'tsx', '--input-type=module', '-e', script(release)], { cwd: root });
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { before: number; ran: boolean; after: number };
    };
    const released = await run(true);
    expect(released.before).toBeGreaterThan(EXTERNAL_SLACK_BYTES);
    expect(released.ran).toBe(true);
    expect(released.after).toBeLessThan(EXTERNAL_SLACK_BYTES);
    const held = await run(false);
    expect(held.after).toBeGreaterThan(EXTERNAL_SLACK_BYTES);
  });
});
