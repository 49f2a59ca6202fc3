// core/log-formats.ts: envelopes (CRI, Docker json-file, syslog, journald, supervisor prefixes), ANSI colours and
// doubled wsgi timestamps around real oslo.log lines; multi-line folding on real tracebacks and libvirt XML; the
// headers of RabbitMQ, MariaDB/Galera and other timestamped lines, across DST.
//
// The inner lines are real (samples/hotsos-2022, test/fixtures). The envelopes around them are built here in the
// exact format each runtime / daemon writes, because no real wrapped OpenStack log is in the repository; the
// MariaDB/Galera, ProxySQL and klog lines in test/fixtures/formats are real (see its README.md).
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { lineKind, parseLevelFirstHeader, parseOtherHeader, unwrap, type Envelope } from '../../core/log-formats.ts';

const read = (rel: string) => {
  const buf = readFileSync(new URL(rel, import.meta.url));
  return (rel.endsWith('.gz') ? gunzipSync(buf) : buf).toString('utf8');
};
const lines = (rel: string) => read(rel).split('\n');
const formats = (name: string) => lines(`../fixtures/formats/${name}`).filter(Boolean);

const NOVA = lines('../../samples/hotsos-2022/nova-compute.log.1.gz');
/** 1-based line numbers, as `zcat … | grep -n` prints them. */
const nova = (n: number) => NOVA[n - 1];

// A real 2022 nova-compute line (AMQP connection refused) and a long real DEBUG line.
const OSLO = lines('../fixtures/hotsos-2022/nova-compute-head.log')[1];
const LONG = NOVA.find((l) => l.length > 300 && l.includes(' DEBUG '))!;

afterEach(() => {
  vi.useRealTimers();
});

describe('unwrap: plain oslo.log lines (the fast path)', () => {
  it('returns a plain oslo line untouched and with no envelope', () => {
    expect(OSLO).toMatch(/^2022-02-04 09:37:50\.159 21562 ERROR oslo\.messaging/);
    const u = unwrap(OSLO);
    expect(u).toStrictEqual({ text: OSLO });
  });

  it('leaves every line of the real hotsos logs unchanged', () => {
    const all = [
      ...NOVA,
      ...lines('../../samples/hotsos-2022/neutron-dhcp-agent.log.1'),
      ...lines('../../samples/hotsos-2022/neutron-l3-agent.log.1'),
      ...lines('../../samples/hotsos-2022/neutron-metadata-agent.log.1'),
    ];
    expect(all.length).toBeGreaterThan(30_000);
    const changed = all.filter((l) => {
      const u = unwrap(l, 2022);
      return u.text !== l || u.envelope !== undefined;
    });
    expect(changed).toEqual([]);
  });
});

describe('unwrap: container runtimes', () => {
  it('CRI (containerd / CRI-O): stdout F with a nanosecond UTC time', () => {
    expect(unwrap(`2022-02-04T09:37:50.159123456Z stdout F ${OSLO}`)).toEqual({
      text: OSLO,
      envelope: { format: 'cri', time: '2022-02-04T09:37:50.159Z', stream: 'stdout' },
    });
  });

  it('CRI: "P" pieces of one long line are marked partial, and join back to the line', () => {
    const cut = [LONG.slice(0, 100), LONG.slice(100, 250), LONG.slice(250)];
    const pieces = [
      `2022-02-04T09:37:50.159123456+00:00 stderr P ${cut[0]}`,
      `2022-02-04T09:37:50.159187012+00:00 stderr P ${cut[1]}`,
      `2022-02-04T09:37:50.159201337+00:00 stderr F ${cut[2]}`,
    ].map((l) => unwrap(l));
    expect(pieces.map((p) => p.envelope)).toEqual([
      { format: 'cri', time: '2022-02-04T09:37:50.159Z', stream: 'stderr', partial: true },
      { format: 'cri', time: '2022-02-04T09:37:50.159Z', stream: 'stderr', partial: true },
      { format: 'cri', time: '2022-02-04T09:37:50.159Z', stream: 'stderr' },
    ]);
    expect(pieces.map((p) => p.text).join('')).toBe(LONG);
  });

  it('CRI: a non-UTC offset is converted to UTC', () => {
    expect(unwrap(`2022-02-04T10:37:50.159123456+01:00 stdout F ${OSLO}`).envelope?.time).toBe('2022-02-04T09:37:50.159Z');
    expect(unwrap(`2022-02-04T04:37:50.999999999-05:00 stdout F ${OSLO}`).envelope?.time).toBe('2022-02-04T09:37:50.999Z');
  });

  it('CRI: an empty F line is an empty text', () => {
    expect(unwrap('2022-02-04T09:37:50.159123456Z stdout F ')).toEqual({
      text: '',
      envelope: { format: 'cri', time: '2022-02-04T09:37:50.159Z', stream: 'stdout' },
    });
  });

  it('Docker json-file (Kolla): JSON-unescapes the log field and strips its newline', () => {
    const line = JSON.stringify({ log: LONG + '\n', stream: 'stderr', time: '2022-02-04T09:37:50.159123456Z' });
    expect(line).toContain('\\n"'); // the newline really is escaped in the file
    expect(unwrap(line)).toEqual({ text: LONG, envelope: { format: 'docker-json', time: '2022-02-04T09:37:50.159Z', stream: 'stderr' } });
  });

  it('Docker json-file: quotes and backslashes in the line survive; a piece without newline is partial', () => {
    const withQuotes = nova(1393); // Command: … and the like carry quotes in the real log
    const tricky = `${OSLO} "quoted" \\path\\ 'single' \t tab`;
    expect(unwrap(JSON.stringify({ log: tricky + '\n', stream: 'stdout', time: '2022-02-04T09:37:50.159Z' })).text).toBe(tricky);
    expect(unwrap(JSON.stringify({ log: withQuotes + '\n', stream: 'stdout', time: '2022-02-04T09:37:50.159Z' })).text).toBe(withQuotes);
    const piece = unwrap(JSON.stringify({ log: LONG.slice(0, 16384), stream: 'stdout', time: '2022-02-04T09:37:50.159Z' }));
    expect(piece.envelope).toEqual({ format: 'docker-json', time: '2022-02-04T09:37:50.159Z', stream: 'stdout', partial: true });
  });

  it('leaves JSON that is not an envelope (e.g. oslo.log JSONFormatter output) alone', () => {
    const json = '{"message": "Connection failed", "asctime": "2022-02-04 09:37:50,159", "levelname": "ERROR", "log": 1}';
    expect(unwrap(json)).toStrictEqual({ text: json });
  });
});

describe('unwrap: syslog', () => {
  it('RFC 3164 as rsyslog writes it to /var/log/syslog: space-padded day, tag with pid', () => {
    expect(unwrap(`Feb  4 09:37:50 compute-1 nova-compute[21562]: ${OSLO}`, 2022)).toEqual({
      text: OSLO,
      envelope: { format: 'syslog', time: '2022-02-04T09:37:50.000Z', host: 'compute-1', program: 'nova-compute', pid: 21562 },
    });
  });

  it('RFC 3164: a tag without pid; the year defaults to the current one', () => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2022-06-01T00:00:00Z'));
    expect(unwrap(`Feb 14 23:59:59 controller-0 nova-compute: ${OSLO}`)).toEqual({
      text: OSLO,
      envelope: { format: 'syslog', time: '2022-02-14T23:59:59.000Z', host: 'controller-0', program: 'nova-compute' },
    });
  });

  it('RFC 5424 / rsyslog high-precision (RSYSLOG_FileFormat) timestamps', () => {
    expect(unwrap(`2022-02-04T09:37:50.159123+00:00 compute-1 nova-compute[21562]: ${OSLO}`)).toEqual({
      text: OSLO,
      envelope: { format: 'syslog', time: '2022-02-04T09:37:50.159Z', host: 'compute-1', program: 'nova-compute', pid: 21562 },
    });
    expect(unwrap(`2022-02-04T10:37:50.159123+01:00 compute-1 nova-compute: ${OSLO}`).envelope).toEqual({
      format: 'syslog',
      time: '2022-02-04T09:37:50.159Z',
      host: 'compute-1',
      program: 'nova-compute',
    });
  });

  it('RFC 5424 on the wire format (PRI, version, structured data, BOM)', () => {
    const sd = `<11>1 2022-02-04T09:37:50.159123Z compute-1.example.org nova-compute 21562 - [origin software="rsyslogd" x="a]b"] \uFEFF${OSLO}`;
    expect(unwrap(sd)).toEqual({
      text: OSLO,
      envelope: { format: 'syslog', time: '2022-02-04T09:37:50.159Z', host: 'compute-1.example.org', program: 'nova-compute', pid: 21562 },
    });
    expect(unwrap(`<30>Feb  4 09:37:50 compute-1 nova-compute[21562]: ${OSLO}`, 2022).envelope?.program).toBe('nova-compute');
  });

  it('syslog around a devstack ANSI-coloured oslo line, with rsyslog escaping ESC as #033', () => {
    const line =
      'Feb  4 09:37:50 devstack nova-compute[21562]: 2022-02-04 09:37:50.159 #033[01;31mERROR nova.compute.manager [#033[01;36mNone req-97b163b2-ff4c-4c93-915a-6c990d19af26 #033[00;36madmin admin#033[01;31m] #033[01;35m#033[01;31mError updating resources for node compute4.mylab.home.#033[00m';
    expect(unwrap(line, 2022)).toEqual({
      text: '2022-02-04 09:37:50.159 ERROR nova.compute.manager [None req-97b163b2-ff4c-4c93-915a-6c990d19af26 admin admin] Error updating resources for node compute4.mylab.home.',
      envelope: { format: 'syslog', time: '2022-02-04T09:37:50.000Z', host: 'devstack', program: 'nova-compute', pid: 21562 },
    });
  });
});

describe('unwrap: journald', () => {
  const envelope: Envelope = { format: 'journald', time: '2022-02-04T09:37:50.000Z', host: 'compute-1', program: 'nova-compute', pid: 21562 };

  it('journalctl -o short-iso ("+0000", no fraction)', () => {
    expect(unwrap(`2022-02-04T09:37:50+0000 compute-1 nova-compute[21562]: ${OSLO}`)).toEqual({ text: OSLO, envelope });
    expect(unwrap(`2022-02-04T10:37:50+0100 compute-1 nova-compute[21562]: ${OSLO}`).envelope).toEqual(envelope);
  });

  it('journalctl -o short-precise and short (zero-padded day)', () => {
    expect(unwrap(`Feb 04 09:37:50.159123 compute-1 nova-compute[21562]: ${OSLO}`, 2022)).toEqual({
      text: OSLO,
      envelope: { ...envelope, time: '2022-02-04T09:37:50.159Z' },
    });
    expect(unwrap(`Feb 04 09:37:50 compute-1 nova-compute[21562]: ${OSLO}`, 2022)).toEqual({ text: OSLO, envelope });
  });

  it('journalctl -o json: MESSAGE, SYSLOG_IDENTIFIER, _PID, __REALTIME_TIMESTAMP (µs), _HOSTNAME', () => {
    const entry = {
      __CURSOR: 's=6a1a0b8bb0a54d7a9c5c2e0c1d1f5b3e;i=1b2c3;b=9f8e7d6c5b4a39281706f5e4d3c2b1a0;m=5f5e100;t=5d73e9a1b2c3d;x=1a2b3c4d5e6f7a8b',
      __REALTIME_TIMESTAMP: '1643967470159123',
      __MONOTONIC_TIMESTAMP: '100000000',
      _BOOT_ID: '9f8e7d6c5b4a39281706f5e4d3c2b1a0',
      PRIORITY: '6',
      _TRANSPORT: 'stdout',
      _UID: '64060',
      _GID: '64060',
      _COMM: 'nova-compute',
      _EXE: '/usr/bin/python3.8',
      _CMDLINE: '/usr/bin/python3 /usr/bin/nova-compute --config-file=/etc/nova/nova.conf',
      _SYSTEMD_CGROUP: '/system.slice/nova-compute.service',
      _SYSTEMD_UNIT: 'nova-compute.service',
      SYSLOG_FACILITY: '3',
      SYSLOG_IDENTIFIER: 'nova-compute',
      _PID: '21562',
      _HOSTNAME: 'compute-1',
      MESSAGE: OSLO,
    };
    expect(unwrap(JSON.stringify(entry))).toEqual({ text: OSLO, envelope: { ...envelope, time: '2022-02-04T09:37:50.159Z' } });
  });

  it('journalctl -o json: the unit without ".service" when there is no identifier; MESSAGE as a byte array', () => {
    const bytes = [...Buffer.from('\x1b[01;31mERROR nova.compute.manager [None req-1 admin admin] zone ünïcode\x1b[00m', 'utf8')];
    const entry = { __REALTIME_TIMESTAMP: '1643967470159123', _SYSTEMD_UNIT: 'devstack@n-cpu.service', _PID: '21562', _HOSTNAME: 'devstack', MESSAGE: bytes };
    expect(unwrap(JSON.stringify(entry))).toEqual({
      text: 'ERROR nova.compute.manager [None req-1 admin admin] zone ünïcode',
      envelope: { format: 'journald', time: '2022-02-04T09:37:50.159Z', host: 'devstack', program: 'devstack@n-cpu', pid: 21562 },
    });
  });
});

describe('unwrap: supervisor prefixes', () => {
  it('"<ts> [service] <line>" (Kolla / openstack-helm / devstack style)', () => {
    expect(unwrap(`2022-02-04 09:37:50.159 [nova-compute] ${OSLO}`)).toEqual({
      text: OSLO,
      envelope: { format: 'supervisor', time: '2022-02-04T09:37:50.159Z', program: 'nova-compute' },
    });
    expect(unwrap(`2022-02-04T09:37:50Z [nova_compute] ${OSLO}`).envelope).toEqual({
      format: 'supervisor',
      time: '2022-02-04T09:37:50.000Z',
      program: 'nova_compute',
    });
  });

  it('does not take an oslo context block, or a RabbitMQ level, for a supervisor name', () => {
    const devstack = '2022-02-04 09:37:50.159 ERROR nova.compute.manager [None req-97b163b2-ff4c-4c93-915a-6c990d19af26 admin admin] x';
    expect(unwrap(devstack)).toStrictEqual({ text: devstack });
    const rabbit = '2022-02-04 09:37:50.123 [info] <0.9742.0> accepting AMQP connection <0.9742.0> (10.5.0.12:45678 -> 10.5.0.5:5672)';
    expect(unwrap(rabbit)).toStrictEqual({ text: rabbit });
    const icehouse = lines('../fixtures/oslo-messaging-icehouse-2014.log').find((l) => l.includes('[-]'))!;
    expect(unwrap(icehouse)).toStrictEqual({ text: icehouse });
  });

  it("openstack-helm's mariadb start.py relaying mysqld through Python logging (real, 2020)", () => {
    const [first, second] = formats('openstack-helm-mariadb-bootstrap-2020.log');
    expect(unwrap(first)).toEqual({
      text: '2020-10-27 18:06:57 0 [Note] WSREP: Shifting CLOSED -> OPEN (TO: 0)',
      envelope: { format: 'supervisor', time: '2020-10-27T18:06:57.128Z', program: 'OpenStack-Helm Mariadb' },
    });
    expect(unwrap(second).text).toBe("2020-10-27 18:06:57 0 [Note] WSREP: Opened channel 'mariadb-server_openstack'"); // b"…'…"
  });
});

describe('unwrap: ANSI colours and doubled timestamps', () => {
  it("strips devstack's colours from an oslo line", () => {
    const line =
      '2022-02-04 09:37:50.159 \x1b[01;31mERROR nova.compute.manager [\x1b[01;36mNone req-97b163b2-ff4c-4c93-915a-6c990d19af26 \x1b[00;36madmin admin\x1b[01;31m] \x1b[01;35m[instance: 1c5e5e1a-2b8f-4a52-9d57-1f2f8d7f3c10] \x1b[01;31mFailed to build and run instance\x1b[00m';
    expect(unwrap(line)).toStrictEqual({
      text: '2022-02-04 09:37:50.159 ERROR nova.compute.manager [None req-97b163b2-ff4c-4c93-915a-6c990d19af26 admin admin] [instance: 1c5e5e1a-2b8f-4a52-9d57-1f2f8d7f3c10] Failed to build and run instance',
    });
    expect(unwrap(`${OSLO.slice(0, 31)}\x1b[01;31m${OSLO.slice(31)}\x1b[00m`)).toStrictEqual({ text: OSLO });
  });

  it('Apache mod_wsgi: strips "[date] [wsgi:error] [pid …] [remote …]" and keeps the oslo line', () => {
    expect(unwrap(`[Fri Feb 04 09:37:50.159123 2022] [wsgi:error] [pid 1234:tid 140234567890] [remote 10.0.0.1:0] ${OSLO}`)).toStrictEqual({ text: OSLO });
    expect(unwrap(`[Fri Feb 04 09:37:50.159123 2022] [:error] [pid 1234] ${OSLO}`)).toStrictEqual({ text: OSLO });
    // mod_wsgi's own message starts an event; the traceback lines it writes after it continue it.
    const own =
      "[Fri Feb 04 09:37:50.160001 2022] [wsgi:error] [pid 1234:tid 140234567890] [remote 10.0.0.1:0] mod_wsgi (pid=1234): Exception occurred processing WSGI script '/usr/bin/keystone-wsgi-public'.";
    expect(unwrap(own).text).toBe(own);
    expect(lineKind(unwrap(own).text)).toBe('start');
    const tb = unwrap('[Fri Feb 04 09:37:50.160123 2022] [wsgi:error] [pid 1234:tid 140234567890] [remote 10.0.0.1:0] Traceback (most recent call last):');
    expect(tb.text).toBe('Traceback (most recent call last):');
    expect(lineKind(tb.text)).toBe('continuation');
  });

  it('uwsgi log-date and devstack "<ts> | " prefixes', () => {
    expect(unwrap(`Fri Feb  4 09:37:50 2022 - ${OSLO}`)).toStrictEqual({ text: OSLO });
    expect(unwrap(`2022-02-04 09:37:50.160 | ${OSLO}`)).toStrictEqual({ text: OSLO });
    expect(unwrap(`2022-02-04 09:37:50.160 | \x1b[01;31m${OSLO}\x1b[00m`)).toStrictEqual({ text: OSLO });
  });

  it('one nested envelope: CRI around a supervisor prefix, Docker around a coloured line, journald around wsgi', () => {
    expect(unwrap(`2022-02-04T09:37:50.160123456Z stdout F 2022-02-04 09:37:50.159 [nova-compute] ${OSLO}`)).toEqual({
      text: OSLO,
      envelope: { format: 'cri', time: '2022-02-04T09:37:50.160Z', stream: 'stdout', program: 'nova-compute' },
    });
    const coloured = `${OSLO.slice(0, 30)}\x1b[01;31m${OSLO.slice(30)}\x1b[00m`;
    expect(unwrap(JSON.stringify({ log: coloured + '\n', stream: 'stdout', time: '2022-02-04T09:37:50.160Z' })).text).toBe(OSLO);
    expect(unwrap(`Feb 04 09:37:50.160123 ctl-1 apache2[1234]: [Fri Feb 04 09:37:50.159123 2022] [wsgi:error] [pid 1234:tid 5678] [remote 10.0.0.1:0] ${OSLO}`, 2022)).toEqual({
      text: OSLO,
      envelope: { format: 'journald', time: '2022-02-04T09:37:50.160Z', host: 'ctl-1', program: 'apache2', pid: 1234 },
    });
  });

  it('leaves unknown lines alone', () => {
    for (const l of ['', 'Command: ceph df --format=json', "      <domain type='kvm'/>", 'Feb is a month', '[not a date] x', '<domain type="kvm" id="1">']) {
      expect(unwrap(l)).toStrictEqual({ text: l });
    }
  });
});

describe('lineKind', () => {
  it('the 2022 nova-compute resource-update error: message lines, exception-prefixed traceback, next event', () => {
    const event = NOVA.slice(1391, 1416); // lines 1392-1416
    expect(event[0]).toContain('ERROR nova.compute.manager [req-97b163b2');
    expect(event[5]).toBe('2022-02-04 10:21:58.881 284971 ERROR nova.compute.manager Traceback (most recent call last):');
    expect(event[23]).toBe('2022-02-04 10:21:58.881 284971 ERROR nova.compute.manager '); // an empty exception-prefixed line
    expect(event.map((l) => lineKind(l))).toEqual(['start', ...Array<string>(23).fill('continuation'), 'start']);
  });

  it('libvirt XML dumps continue the line that logged them', () => {
    const caps = NOVA.slice(1099, 1370); // "Libvirt host capabilities <capabilities>" … "</capabilities>", then the next event
    expect(caps[0]).toMatch(/Libvirt host capabilities <capabilities>$/);
    expect(caps).toContain("      <domain type='kvm'/>");
    expect(caps.map((l) => lineKind(l))).toEqual(['start', ...Array<string>(269).fill('continuation'), 'start']);
    expect(nova(8595)).toBe('<domainCapabilities>');
    expect(lineKind(nova(8595))).toBe('continuation');
    expect(lineKind("<domain type='kvm' id='1'>")).toBe('continuation');
    expect(lineKind('  <name>instance-00000001</name>')).toBe('continuation');
    expect(lineKind('{"nova_object.name": "ComputeNode", "nova_object.version": "1.19"}')).toBe('continuation');
  });

  it('old releases: TRACE lines continue (Icehouse-era cinder, 2014)', () => {
    const cinder = lines('../fixtures/oslo-messaging-cinder-2014.log').filter(Boolean);
    expect(cinder.map((l) => lineKind(l))).toEqual(cinder.map((l) => (/ TRACE /.test(l) ? 'continuation' : 'start')));
    expect(cinder.filter((l) => / TRACE /.test(l)).length).toBeGreaterThanOrEqual(3);
  });

  it('every line of the real hotsos logs: start exactly when it has a full oslo header and a context block', () => {
    const START = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} \d+ [A-Z]+ \S+ \[/;
    for (const f of ['nova-compute.log.1.gz', 'neutron-dhcp-agent.log.1', 'neutron-l3-agent.log.1', 'neutron-metadata-agent.log.1']) {
      const all = lines(`../../samples/hotsos-2022/${f}`);
      const wrong = all.filter((l) => lineKind(l) !== (START.test(l) ? 'start' : 'continuation'));
      expect(wrong, f).toEqual([]);
      expect(all.filter((l) => lineKind(l) === 'continuation').length, f).toBeGreaterThan(900);
    }
  });

  it('every line of Loghub OpenStack 2k (file-name field taken off) starts an event', () => {
    const loghub = lines('../fixtures/loghub-OpenStack_2k.log')
      .filter(Boolean)
      .map((l) => l.replace(/^\S+ /, '').replace(/\r$/, ''));
    expect(loghub).toHaveLength(2000);
    expect(loghub.filter((l) => lineKind(l) !== 'start')).toEqual([]);
  });

  it('exception prefixes: "[instance: …]" and devstack\'s pid-less TRACE continue; a context block starts', () => {
    expect(lineKind('2022-02-04 10:21:58.881 284971 ERROR nova.compute.manager [instance: 1c5e5e1a-2b8f-4a52-9d57-1f2f8d7f3c10] Traceback (most recent call last):')).toBe('continuation');
    expect(lineKind('2022-02-04 09:37:50.159 TRACE nova.compute.manager   File "/opt/stack/nova/nova/compute/manager.py", line 2198, in _build_and_run_instance')).toBe('continuation');
    expect(lineKind('2022-02-04 09:37:50.159 ERROR nova.compute.manager [None req-97b163b2-ff4c-4c93-915a-6c990d19af26 admin admin] Error')).toBe('start');
    expect(
      lineKind('2022-02-04 10:21:58.881 284971 ERROR nova.compute.manager [req-97b163b2-ff4c-4c93-915a-6c990d19af26 - - - - -] [instance: 1c5e5e1a-2b8f-4a52-9d57-1f2f8d7f3c10] x'),
    ).toBe('start');
  });

  it('bare Python traceback lines continue', () => {
    for (const l of [
      'Traceback (most recent call last):',
      '  File "/usr/lib/python3/dist-packages/oslo_messaging/_drivers/amqpdriver.py", line 433, in get',
      '    return self._queues[msg_id].get(block=True, timeout=timeout)',
      '_queue.Empty',
      'During handling of the above exception, another exception occurred:',
      'oslo_messaging.exceptions.MessagingTimeout: Timed out waiting for a reply to message ID c9a9a7e2d4f14b2d8a6c2c9f1d2e3f40',
      "Stderr: '2022-02-04T10:21:58.861+0000 7f0f8db4e700 -1 auth: unable to find a keyring'",
      '\tat the end',
      '',
    ]) {
      expect(lineKind(l), l).toBe('continuation');
    }
  });

  it('RabbitMQ, MariaDB / Galera and other timestamped lines start', () => {
    const starts = [
      '2022-02-04 09:37:50.123 [info] <0.9742.0> accepting AMQP connection <0.9742.0> (10.5.0.12:45678 -> 10.5.0.5:5672)',
      "2022-02-04 09:37:50.123456+00:00 [warning] <0.9754.0> closing AMQP connection <0.9754.0> (10.5.0.12:45680 -> 10.5.0.5:5672, vhost: 'openstack', user: 'nova'):",
      '=ERROR REPORT==== 4-Feb-2022::09:37:50 ===',
      '2022-02-04  9:37:50 0 [Note] WSREP: Member 1.0 (controller-1) synced with group.',
      '220204  9:37:50 [Note] WSREP: Shifting JOINED -> SYNCED (TO: 1234567)',
      '2022-02-04T09:37:50.123456Z 0 [System] [MY-010116] [Server] /usr/sbin/mysqld (mysqld 8.0.28) starting as process 1',
      'Feb  4 09:37:50 compute-1 kernel: [1234567.890123] device tap1c5e5e1a-2b entered promiscuous mode',
      '2022/02/04 09:37:50 [error] 1234#1234: *5 connect() failed (111: Connection refused) while connecting to upstream',
      '[Fri Feb 04 09:37:50.159123 2022] [mpm_event:notice] [pid 1:tid 140234567890] AH00489: Apache/2.4.41 (Ubuntu) configured',
      '<30>1 2022-02-04T09:37:50.159123Z compute-1 nova-compute 21562 - - x',
      ...formats('proxysql-galera-1047-2018.log'),
      ...formats('trillian-klog-galera-1047-2017.log'),
      ...formats('openstack-helm-mariadb-bootstrap-2020.log').map((l) => unwrap(l).text),
    ];
    for (const l of starts) expect(lineKind(l), l).toBe('start');
    expect(lineKind('accepting AMQP connection <0.9742.0> (10.5.0.12:45678 -> 10.5.0.5:5672)')).toBe('continuation'); // inside an =INFO REPORT
  });
});

describe('parseOtherHeader', () => {
  it('RabbitMQ 3.7-3.8 (zone-less, in the given zone)', () => {
    expect(parseOtherHeader('2022-02-04 09:37:50.123 [error] <0.9754.0> closing AMQP connection <0.9754.0> (10.5.0.12:45680 -> 10.5.0.5:5672):', 'UTC')).toEqual({
      format: 'rabbitmq',
      timestamp: '2022-02-04T09:37:50.123Z',
      level: 'ERROR',
      process_name: '<0.9754.0>',
      message: 'closing AMQP connection <0.9754.0> (10.5.0.12:45680 -> 10.5.0.5:5672):',
    });
    expect(parseOtherHeader('2022-02-04 10:37:50.123 [warning] <0.9754.0> x', 'Europe/Paris')).toMatchObject({ timestamp: '2022-02-04T09:37:50.123Z', level: 'WARNING' });
  });

  it('RabbitMQ 3.9+: the zone in the line wins over the configured one; three-letter levels', () => {
    expect(parseOtherHeader('2022-02-04 10:37:50.123456+01:00 [info] <0.221.0>  Starting RabbitMQ 3.9.13 on Erlang 24.2.1', 'America/New_York')).toEqual({
      format: 'rabbitmq',
      timestamp: '2022-02-04T09:37:50.123Z',
      level: 'INFO',
      process_name: '<0.221.0>',
      message: ' Starting RabbitMQ 3.9.13 on Erlang 24.2.1',
    });
    expect(parseOtherHeader('2022-02-04 09:37:50.123456+00:00 [ntc] <0.44.0> Logging: configured log handlers are now ACTIVE', 'UTC')?.level).toBe('NOTICE');
    expect(parseOtherHeader('2022-02-04 09:37:50.123456+00:00 [crit] <0.44.0> x', 'UTC')?.level).toBe('CRITICAL');
  });

  it('RabbitMQ ≤ 3.6 report headers', () => {
    expect(parseOtherHeader('=INFO REPORT==== 4-Feb-2022::09:37:50 ===', 'UTC')).toEqual({ format: 'rabbitmq', timestamp: '2022-02-04T09:37:50.000Z', level: 'INFO', message: '' });
    expect(parseOtherHeader('=WARNING REPORT==== 14-Feb-2022::23:07:05 ===', 'Europe/Berlin')).toMatchObject({ timestamp: '2022-02-14T22:07:05.000Z', level: 'WARNING' });
  });

  it('MariaDB 10.x / Galera lines from openstack-helm (real, 2020): thread id, [Note], WSREP subsystem', () => {
    const texts = formats('openstack-helm-mariadb-bootstrap-2020.log').map((l) => unwrap(l).text);
    expect(parseOtherHeader(texts[0], 'UTC')).toEqual({
      format: 'mariadb',
      timestamp: '2020-10-27T18:06:57.000Z',
      level: 'INFO',
      thread_id: 0,
      subsystem: 'WSREP',
      message: 'Shifting CLOSED -> OPEN (TO: 0)',
    });
    expect(texts.map((t) => parseOtherHeader(t, 'UTC')?.subsystem)).toEqual(Array(8).fill('WSREP'));
    expect(parseOtherHeader(texts[7], 'UTC')?.message).toBe('Quorum results:');
  });

  it('MariaDB 10.x with an unpadded hour, old 6-digit dates, MySQL 8, mysqld_safe', () => {
    expect(
      parseOtherHeader("2022-02-04  9:37:50 140234567890 [Warning] Aborted connection 1234 to db: 'nova' user: 'nova' host: '10.5.0.12' (Got timeout reading communication packets)", 'UTC'),
    ).toEqual({
      format: 'mariadb',
      timestamp: '2022-02-04T09:37:50.000Z',
      level: 'WARNING',
      thread_id: 140234567890,
      message: "Aborted connection 1234 to db: 'nova' user: 'nova' host: '10.5.0.12' (Got timeout reading communication packets)",
    });
    expect(parseOtherHeader('220204  9:37:50 [ERROR] WSREP: Failed to read from: wsrep_sst_xtrabackup-v2', 'UTC')).toEqual({
      format: 'mariadb',
      timestamp: '2022-02-04T09:37:50.000Z',
      level: 'ERROR',
      subsystem: 'WSREP',
      message: 'Failed to read from: wsrep_sst_xtrabackup-v2',
    });
    expect(parseOtherHeader('2022-02-04T10:37:50.123456+01:00 0 [System] [MY-010116] [Server] /usr/sbin/mysqld (mysqld 8.0.28) starting as process 1', 'UTC')).toEqual({
      format: 'mariadb',
      timestamp: '2022-02-04T09:37:50.123Z',
      level: 'NOTICE',
      thread_id: 0,
      subsystem: 'Server',
      message: '[MY-010116] /usr/sbin/mysqld (mysqld 8.0.28) starting as process 1',
    });
    expect(parseOtherHeader("220204 09:37:50 mysqld_safe WSREP: Running position recovery with --log_error='/var/lib/mysql/wsrep_recovery.abc'", 'UTC')).toMatchObject({
      format: 'mariadb',
      process_name: 'mysqld_safe',
      subsystem: 'WSREP',
    });
  });

  it('any other line that starts with a timestamp (real ProxySQL and klog lines)', () => {
    expect(parseOtherHeader(formats('proxysql-galera-1047-2018.log')[2], 'UTC')).toEqual({
      format: 'timestamp-only',
      timestamp: '2018-07-05T22:56:07.000Z',
      message: 'MySQL_Session.cpp:2863:handler(): [WARNING] Error during query on (20,192.168.70.30,3306): 1047, WSREP has not yet prepared node for application use',
    });
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2017-05-26T12:00:00Z'));
    expect(parseOtherHeader(formats('trillian-klog-galera-1047-2017.log')[0], 'UTC')).toEqual({
      format: 'timestamp-only',
      timestamp: '2017-05-24T17:16:06.825Z',
      level: 'WARNING',
      pid: 20277,
      message: 'log_storage.go:569] Failed to update sequenced leaves: Error 1047: WSREP has not yet prepared node for application use',
    });
    expect(parseOtherHeader('2022-02-04 09:37:50,128 - OpenStack-Helm Mariadb - INFO - Cluster info loaded', 'UTC')).toMatchObject({
      timestamp: '2022-02-04T09:37:50.128Z',
      level: 'INFO',
      message: 'Cluster info loaded',
    });
    expect(parseOtherHeader('2022-02-04T10:21:58.861+0000 7f0f8db4e700 -1 auth: unable to find a keyring', 'Asia/Tokyo')).toMatchObject({ timestamp: '2022-02-04T10:21:58.861Z' });
  });

  it('syslog dates take this year, or last year when that would be in the future', () => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2022-01-01T00:10:00Z'));
    expect(parseOtherHeader('Dec 31 23:59:58 compute-1 x', 'UTC')?.timestamp).toBe('2021-12-31T23:59:58.000Z');
    expect(parseOtherHeader('Jan  1 00:05:00 compute-1 x', 'UTC')?.timestamp).toBe('2022-01-01T00:05:00.000Z');
  });

  it('zone-less timestamps convert correctly across DST', () => {
    // Europe/Berlin springs forward at 2022-03-27 01:00 UTC (02:00 CET → 03:00 CEST) and falls back at 2022-10-30 01:00 UTC.
    const berlin = (t: string) => parseOtherHeader(t, 'Europe/Berlin')?.timestamp;
    expect(berlin('2022-03-27 01:59:59.999 [info] <0.9742.0> x')).toBe('2022-03-27T00:59:59.999Z');
    expect(berlin('2022-03-27 03:00:00.000 [info] <0.9742.0> x')).toBe('2022-03-27T01:00:00.000Z');
    expect(berlin('2022-10-30  1:59:59 0 [Note] WSREP: x')).toBe('2022-10-29T23:59:59.000Z');
    expect(berlin('2022-10-30  3:00:00 0 [Note] WSREP: x')).toBe('2022-10-30T02:00:00.000Z');
    // New York, the other side: EST (-5) in winter, EDT (-4) after 2022-03-13.
    expect(parseOtherHeader('2022-03-12 12:00:00 0 [Note] x', 'America/New_York')?.timestamp).toBe('2022-03-12T17:00:00.000Z');
    expect(parseOtherHeader('2022-03-14 12:00:00 0 [Note] x', 'America/New_York')?.timestamp).toBe('2022-03-14T16:00:00.000Z');
  });

  it("web server access lines: Apache's bracketed time with its zone, the whole line as the message", () => {
    // Apache combined (keystone under mod_wsgi), Kolla's X-Forwarded-For format with no header sent ("-"), a
    // forwarded chain (the tuning cases of test/fixtures/evidence/client-ip-masked.yaml), an IPv6 client.
    const combined = '10.88.0.1 - - [14/Mar/2024:09:00:25 +0000] "POST /v3/auth/tokens HTTP/1.1" 201 6911 "-" "python-openstackclient keystoneauth1/5.5.0"';
    expect(parseOtherHeader(combined, 'Europe/Paris')).toEqual({ format: 'access', timestamp: '2024-03-14T09:00:25.000Z', message: combined });
    const kolla = '- - - [20/Feb/2024:10:00:00 +0100] "GET /dashboard/project/instances/ HTTP/1.1" 200 9121 180000 "-" "Mozilla/5.0"';
    expect(parseOtherHeader(kolla, 'UTC')).toMatchObject({ format: 'access', timestamp: '2024-02-20T09:00:00.000Z' });
    expect(parseOtherHeader('198.51.100.20, 172.17.0.1 - - [06/Oct/2021:10:00:00 -0500] "GET /v2/images HTTP/1.1" 200 2817', 'UTC')?.timestamp).toBe('2021-10-06T15:00:00.000Z');
    expect(parseOtherHeader('2001:db8::7 - - [02/Jan/2019:23:59:59 +0100] "GET /v3 HTTP/1.1" 200 512', 'UTC')?.timestamp).toBe('2019-01-02T22:59:59.000Z');
    // Not access lines: no quoted request after the time, an impossible date, a list item.
    expect(parseOtherHeader('10.0.0.1 - - [14/Mar/2024:09:00:25 +0000] connection closed', 'UTC')).toBeUndefined();
    expect(parseOtherHeader('10.0.0.1 - - [31/Feb/2024:09:00:25 +0000] "GET / HTTP/1.1" 200 1', 'UTC')).toBeUndefined();
    expect(parseOtherHeader('- item one', 'UTC')).toBeUndefined();
  });

  it('undefined for lines without a header, and for impossible dates', () => {
    expect(parseOtherHeader('Traceback (most recent call last):', 'UTC')).toBeUndefined();
    expect(parseOtherHeader("      <domain type='kvm'/>", 'UTC')).toBeUndefined();
    expect(parseOtherHeader('', 'UTC')).toBeUndefined();
    expect(parseOtherHeader('2022-02-30 09:37:50 0 [Note] x', 'UTC')).toBeUndefined();
    expect(parseOtherHeader('2022-13-04 09:37:50.123 [info] <0.1.0> x', 'UTC')).toBeUndefined();
  });
});

describe('parseLevelFirstHeader', () => {
  it("oslo.log without its date and pid (devstack's journald format): level, logger, context, message", () => {
    // kubernetes-sigs/cluster-api-provider-openstack PR 1408 (devstack neutron-server, journald), after unwrap.
    const { text, envelope } = unwrap(
      'Dec 05 23:46:59 capo-e2e-controller neutron-server[130890]: ERROR oslo.messaging._drivers.impl_rabbit [-] [49f9c7d8-e8d2-4193-92ff-59f9ee3faf4f] AMQP server on 10.0.3.15:5672 is unreachable: <RecoverableConnectionError: unknown error>. Trying again in 1 seconds.: amqp.exceptions.RecoverableConnectionError: <RecoverableConnectionError: unknown error>',
    );
    expect(envelope).toMatchObject({ format: 'journald', program: 'neutron-server', pid: 130890 });
    expect(parseLevelFirstHeader(text)).toEqual({
      format: 'oslo-untimed',
      level: 'ERROR',
      logger: 'oslo.messaging._drivers.impl_rabbit',
      context: '-',
      message:
        '[49f9c7d8-e8d2-4193-92ff-59f9ee3faf4f] AMQP server on 10.0.3.15:5672 is unreachable: <RecoverableConnectionError: unknown error>. Trying again in 1 seconds.: amqp.exceptions.RecoverableConnectionError: <RecoverableConnectionError: unknown error>',
    });
    // lxc/lxc issue 1786 (devstack nova-api): a request's context block.
    expect(
      parseLevelFirstHeader('INFO nova.api.openstack.requestlog [None req-7e465212-6160-4dab-9d38-6c06e8cafbcc admin admin] 85.10.193.66 "GET /compute/v2.1/" status: 200 len: 389'),
    ).toMatchObject({
      level: 'INFO',
      logger: 'nova.api.openstack.requestlog',
      context: 'None req-7e465212-6160-4dab-9d38-6c06e8cafbcc admin admin',
      message: '85.10.193.66 "GET /compute/v2.1/" status: 200 len: 389',
    });
  });

  it("Python logging's default format (LEVEL:logger:message)", () => {
    // Public notes on oslo.messaging 10.2.0 against RabbitMQ in Kubernetes (test/fixtures/evidence, amqp-poc-k8s-*).
    expect(parseLevelFirstHeader('ERROR:oslo.messaging._drivers.impl_rabbit:Connection failed: failed to resolve broker hostname (retrying in 2.0 seconds)')).toEqual({
      format: 'python',
      level: 'ERROR',
      logger: 'oslo.messaging._drivers.impl_rabbit',
      message: 'Connection failed: failed to resolve broker hostname (retrying in 2.0 seconds)',
    });
    expect(parseLevelFirstHeader('DEBUG:amqp:heartbeat_tick : for connection 6cff33739168443bb8e92f4d7949154f')).toMatchObject({
      logger: 'amqp',
      message: 'heartbeat_tick : for connection 6cff33739168443bb8e92f4d7949154f',
    });
    expect(parseLevelFirstHeader('ERROR:root:Unexpected exception occurred 1 time(s)... retrying.')).toMatchObject({ level: 'ERROR', logger: 'root' });
  });

  it('leaves alone traceback lines without a context block, words that are no level, and timestamped lines', () => {
    expect(
      parseLevelFirstHeader('ERROR oslo_messaging.rpc.server   File "/usr/local/lib/python2.7/dist-packages/oslo_db/sqlalchemy/enginefacade.py", line 633, in _session'),
    ).toBeUndefined();
    expect(parseLevelFirstHeader('ERROR: could not open file')).toBeUndefined();
    expect(parseLevelFirstHeader('NOTICE:x:y')).toBeUndefined();
    expect(parseLevelFirstHeader('Traceback (most recent call last):')).toBeUndefined();
    expect(parseLevelFirstHeader('2022-02-04 09:37:50.159 21562 ERROR nova.compute.manager [-] x')).toBeUndefined();
    expect(parseLevelFirstHeader('')).toBeUndefined();
  });
});
