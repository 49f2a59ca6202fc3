// Issue 3 acceptance: Loghub's OpenStack 2k sample (nova, 2017, CRLF), first field (the source file name)
// stripped, parsed by the pipeline's own code; every field equals the dataset's structured CSV, line by line.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EventAssembler, LineSplitter, type AssembledEvent } from '../../collectors/logs/assemble.ts';
import { toRawEvent } from '../../collectors/openstack-logs.ts';
import { parseLogEvent } from '../../processors/parse-log.ts';
import { parseCsv } from '../../processors/templates/accuracy.ts';

const FIX = new URL('../fixtures/', import.meta.url);

describe('Loghub OpenStack 2k', () => {
  const csv = parseCsv(readFileSync(new URL('loghub-OpenStack_2k.log_structured.csv', FIX), 'utf8'));
  // Strip the first field of every line, keep the CRLF line ends: the splitter has to deal with them.
  const raw = readFileSync(new URL('loghub-OpenStack_2k.log', FIX), 'utf8').replace(/^\S+ /gm, '');
  const events: AssembledEvent[] = [];
  const assembler = new EventAssembler({ maxEventBytes: 1 << 20 }, (e) => events.push(e));
  const splitter = new LineSplitter(
    0,
    1 << 20,
    (o, t, cut, plain) => assembler.push(o, t, cut, plain),
    (u) => events.push({ offset: u.offset, text: `UNUSABLE ${u.reason}` }),
  );
  splitter.write(Buffer.from(raw));
  splitter.end();
  assembler.flush();
  const docs = events.map((e) => parseLogEvent(toRawEvent(e, 'loghub', `/var/log/nova/${csv[0].Logrecord}`, 'f', '2030-01-01T00:00:00.000Z'), { timezone: 'UTC' }));

  it('gives 2,000 events', () => {
    expect(csv).toHaveLength(2000);
    expect(docs).toHaveLength(2000);
  });

  it('matches the structured CSV on every line: time, pid, level, logger, request/user/project, instance, message', () => {
    const mismatches: string[] = [];
    docs.forEach((d, i) => {
      const row = csv[i];
      const [requestId, userId, projectId] = row.ADDR.split(' ');
      const expected = {
        '@timestamp': `${row.Date}T${row.Time}Z`,
        pid: Number(row.Pid),
        level: row.Level,
        logger: row.Component,
        request_id: requestId === '-' ? undefined : requestId,
        user_id: userId === '-' ? undefined : userId,
        project_id: projectId === '-' ? undefined : projectId,
        instance_id: /^\[instance: ([0-9a-f-]{36})\]/.exec(row.Content)?.[1],
        message: row.Content,
      };
      const actual = {
        '@timestamp': d['@timestamp'],
        pid: d.process?.pid,
        level: d.log.level,
        logger: d.log.logger,
        request_id: d.openstack?.request_id,
        user_id: d.openstack?.user_id,
        project_id: d.openstack?.project_id,
        instance_id: d.openstack?.instance_id,
        message: d.message,
      };
      if (JSON.stringify(actual) !== JSON.stringify(expected)) mismatches.push(`line ${row.LineId}: ${JSON.stringify(actual)} != ${JSON.stringify(expected)}`);
    });
    expect(mismatches.slice(0, 5)).toEqual([]);
    expect(docs.filter((d) => d.openstack?.instance_id).length).toBeGreaterThan(500);
  });
});
