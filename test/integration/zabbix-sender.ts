// The Zabbix sender protocol (what zabbix_sender speaks to a trapper): "ZBXD\x01", the payload length as uint32
// little-endian, 4 reserved bytes, then {"request":"sender data","data":[…]}. Values may carry their own clock,
// so a test can give Zabbix a history of days in one request. Used by the tests and the benchmarks.
import { createConnection } from 'node:net';

export interface SenderValue {
  host: string;
  key: string;
  value: string;
  clock?: number;
  ns?: number;
}

/** Sends the values; resolves with the trapper's answer ("processed: N; failed: M; …"). */
export function zabbixSend(server: string, port: number, data: SenderValue[]): Promise<{ processed: number; failed: number; info: string }> {
  const payload = Buffer.from(JSON.stringify({ request: 'sender data', data }));
  const header = Buffer.alloc(13);
  header.write('ZBXD\x01', 0, 'latin1');
  header.writeUInt32LE(payload.length, 5);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = createConnection({ host: server, port }, () => s.end(Buffer.concat([header, payload])));
    s.setTimeout(30_000, () => s.destroy(new Error(`no answer from the Zabbix trapper at ${server}:${port}`)));
    s.on('data', (c) => chunks.push(c));
    s.on('error', reject);
    s.on('close', () => {
      const buf = Buffer.concat(chunks);
      if (buf.length < 13 || buf.subarray(0, 4).toString('latin1') !== 'ZBXD') return reject(new Error(`not a Zabbix answer: ${buf.subarray(0, 40).toString('latin1')}`));
      const info = String((JSON.parse(buf.subarray(13).toString('utf8')) as { info?: string }).info ?? '');
      const n = (k: string) => Number(new RegExp(`${k}: (\\d+)`).exec(info)?.[1] ?? NaN);
      resolve({ processed: n('processed'), failed: n('failed'), info });
    });
  });
}
