// Security on the real stack.
//  1. A second Elasticsearch with security on (scripts/stack.sh start elasticsearch-secure: HTTPS with a CA of its
//     own, user elastic): `stackwatch replay` of a real log through Kafka indexes into it over HTTPS with basic
//     auth (the password read from a file), then with an API key made by POST /_security/api_key (from
//     STACKWATCH_ES_API_KEY, then from api_key_file). A wrong password is one clear error line that names the URL
//     without its credentials, and no secret is printed; without the CA the error says what to set.
//  2. A second Kafka with SASL (scripts/stack.sh start kafka-secure: PLAIN and SCRAM over TLS and over plain TCP):
//     the whole pipeline over SASL_SSL (SCRAM-SHA-512, CA file, password file) into the secure Elasticsearch;
//     produce and consume over SASL_PLAINTEXT with PLAIN; a wrong password and a missing CA are clear errors.
//  3. The seeded-secret corpus (test/fixtures/secrets/corpus.txt, 57 fake secrets) through the real collector →
//     Kafka → processor → Elasticsearch of the shared stack: every message of the test's topics and every document
//     of its indices is read back, and no seeded secret is anywhere, nor in the process's output or at the pager.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { validateConfig } from '../../core/config.ts';
import { esClient, type Client } from '../../core/elastic.ts';
import { ensureTopics, GroupConsumer, groupProgress, kafkaClient, TopicProducer } from '../../core/kafka.ts';
import { messageEvents } from '../../processors/decode.ts';
import { countDocs, pagedAlerts, REPO, stackwatch, testSetup, waitFor, type Cli, type TestSetup } from './harness.ts';

const FIXTURE = join(REPO, 'test/fixtures/hotsos-2022/nova-compute-head.log'); // 40 real nova-compute lines
const SECOND_FIXTURE = join(REPO, 'test/fixtures/oslo-messaging-icehouse-2014.log');
const STACK_SH = join(REPO, 'scripts/stack.sh');

/** The secure node's address, CA and password, as `scripts/stack.sh env` prints them. */
interface Secure {
  url: string;
  ca: string;
  user: string;
  password: string;
}

/** Starts secure services of scripts/stack.sh (idempotent) and returns `scripts/stack.sh env`. */
function startSecureServices(...services: string[]): Record<string, string> {
  const t0 = Date.now();
  execFileSync(STACK_SH, ['start', ...services], { stdio: ['ignore', 'inherit', 'inherit'] });
  const env: Record<string, string> = {};
  for (const line of execFileSync(STACK_SH, ['env'], { encoding: 'utf8' }).split('\n')) {
    const m = /^(\w+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]] = m[2];
  }
  process.stderr.write(`security test: ${services.join(', ')} up after ${((Date.now() - t0) / 1000).toFixed(1)}s\n`);
  return env;
}

function startSecure(): Secure {
  const env = startSecureServices('elasticsearch-secure');
  return { url: env.STACKWATCH_ES_SECURE_URL, ca: env.STACKWATCH_ES_SECURE_CA, user: env.STACKWATCH_ES_SECURE_USER, password: env.STACKWATCH_ES_SECURE_PASSWORD };
}

/** `replay: N events produced to …` of a finished replay. */
function producedEvents(stderr: string): number {
  const m = /^replay: (\d+) events produced to /m.exec(stderr);
  expect(m, stderr).not.toBeNull();
  return Number(m![1]);
}

async function replay(configFile: string, file: string, env: Record<string, string> = {}): Promise<string> {
  const cli = stackwatch(['replay', '--config', configFile, file], env);
  const { code } = await cli.exited;
  expect(code, cli.stderr()).toBe(0);
  expect(cli.stderr()).toContain('replay: everything is in Elasticsearch');
  return cli.stderr();
}

/** Runs until stderr matches `pattern` (a failing start keeps retrying), then stops the process with SIGTERM. */
async function stderrUntil(cli: Cli, pattern: RegExp, what: string): Promise<string> {
  try {
    await waitFor(what, async () => pattern.test(cli.stderr()), 60_000, 100);
  } finally {
    cli.child.kill('SIGTERM');
    await cli.exited;
  }
  return cli.stderr();
}

/** JSON log lines of a process's stderr (its other lines are progress and summaries). */
const jsonLines = (stderr: string) =>
  stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: string; component: string; msg: string; hint?: string });

describe('Elasticsearch with security on (HTTPS, basic auth, API keys)', () => {
  let secure: Secure;
  let admin: Client;
  let secretsDir: string;
  const setups: TestSetup[] = [];
  const apiKeys: string[] = [];

  beforeAll(() => {
    secure = startSecure();
    expect(secure.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(secure.password).toMatch(/^\S{16,}$/);
    const cfg = validateConfig(
      { kafka: { brokers: ['127.0.0.1:1'] }, elasticsearch: { url: secure.url, username: secure.user, password: secure.password, tls: { ca_file: secure.ca } } },
      'admin',
      {},
    );
    admin = esClient(cfg.elasticsearch);
    const t = testSetup('sec-files');
    setups.push(t);
    secretsDir = join(t.dir, 'secrets');
    mkdirSync(secretsDir, { mode: 0o700 });
  });

  afterAll(async () => {
    for (const t of setups) await t.cleanup().catch(() => {});
    if (apiKeys.length > 0) await admin.security.invalidateApiKey({ ids: apiKeys }).catch(() => {});
    await admin?.close();
  });

  /** A test setup whose Elasticsearch is the secure node, with `es` merged into its elasticsearch section. */
  function secureSetup(name: string, es: Record<string, unknown>): TestSetup {
    const t = testSetup(name, (raw) => {
      raw.elasticsearch = { ...raw.elasticsearch, url: secure.url, ...es };
    });
    setups.push(t);
    return t;
  }

  function secretFile(name: string, value: string): string {
    const p = join(secretsDir, name);
    writeFileSync(p, `${value}\n`, { mode: 0o600 });
    return p;
  }

  it('indexes over HTTPS with basic auth, the password read from password_file', async () => {
    const t = secureSetup('sec-basic', { username: secure.user, password_file: secretFile('es-password', secure.password), tls: { ca_file: secure.ca } });
    expect(readFileSync(t.configFile, 'utf8')).not.toContain(secure.password); // the config file holds the path only
    const out = await replay(t.configFile, FIXTURE);
    const events = producedEvents(out);
    expect(events).toBeGreaterThan(20);
    expect(await countDocs(t.es, `${t.cfg.elasticsearch.indices.logs}-*`)).toBe(events);
    expect(out).not.toContain(secure.password);
    // The documents are in the secure node, and only there.
    expect(await countDocs(admin, `${t.cfg.elasticsearch.indices.logs}-*`)).toBe(events);
  });

  it('indexes with an API key made by POST /_security/api_key: from STACKWATCH_ES_API_KEY, then from api_key_file', async () => {
    // Least privilege: its own indices and templates, and cluster health.
    const key = await admin.security.createApiKey({
      name: `stackwatch-security-test-${Date.now()}`,
      expiration: '1h',
      role_descriptors: {
        stackwatch: {
          cluster: ['monitor', 'manage_index_templates', 'manage_ilm'],
          indices: [{ names: ['swtest-sec-apikey-*'], privileges: ['all'] }],
        },
      },
    });
    apiKeys.push(key.id);
    const t = secureSetup('sec-apikey', { api_key_file: secretFile('es-api-key', key.encoded), tls: { ca_file: secure.ca } });
    const who = await t.es.security.authenticate();
    expect(who.authentication_type).toBe('api_key');
    expect(who.api_key?.id).toBe(key.id);

    // 1. The key from the environment, with a configuration that names no credentials at all.
    const envOnly = join(t.dir, 'env-only.yaml');
    const raw = structuredClone(t.raw);
    delete raw.elasticsearch.api_key_file;
    writeFileSync(envOnly, stringify(raw));
    const first = await replay(envOnly, FIXTURE, { STACKWATCH_ES_API_KEY: key.encoded });
    const index = `${t.cfg.elasticsearch.indices.logs}-*`;
    expect(await countDocs(t.es, index)).toBe(producedEvents(first));

    // 2. The key from api_key_file (the configuration testSetup wrote).
    const second = await replay(t.configFile, SECOND_FIXTURE);
    expect(await countDocs(t.es, index)).toBe(producedEvents(first) + producedEvents(second));
    for (const out of [first, second]) {
      expect(out).not.toContain(key.encoded);
      expect(out).not.toContain(key.api_key);
    }
  });

  it('a wrong password is one clear error line naming the URL without its credentials; no secret is printed', async () => {
    const wrong = 'Wr0ng-Passw0rd-42';
    const host = new URL(secure.url).host;
    // The credentials written into the URL, the way a hurried operator would.
    const t = secureSetup('sec-wrongpw', { url: `https://${secure.user}:${wrong}@${host}`, tls: { ca_file: secure.ca } });
    expect(t.cfg.elasticsearch.url).toBe(secure.url); // moved out of the URL when the config was loaded
    const out = await stderrUntil(stackwatch(['replay', '--config', t.configFile, FIXTURE]), /authentication failed/, 'the authentication error');
    const errors = jsonLines(out).filter((l) => l.level === 'error');
    expect(errors.length).toBeGreaterThanOrEqual(1);
    expect(errors[0].msg).toMatch(
      new RegExp(
        `^connect to Elasticsearch ${secure.url.replace(/[.]/g, '\\.')} failed: authentication failed \\(HTTP 401: unable to authenticate user \\[elastic\\] for REST request \\[/_cluster/health\\]\\): check elasticsearch\\.username and password`,
      ),
    );
    expect(errors[0].msg).not.toMatch(/\n/);
    expect(out).not.toContain(wrong);
    expect(out).not.toContain(secure.password);
    expect(out).not.toMatch(/elastic:[^*]/); // no user:password@ anywhere
  });

  it('without the CA the error says the certificate cannot be verified and what to set; reject_unauthorized: false works, with a loud warning', async () => {
    const t = secureSetup('sec-noca', { username: secure.user, password_file: secretFile('es-password-2', secure.password) });
    const out = await stderrUntil(stackwatch(['replay', '--config', t.configFile, FIXTURE]), /TLS: /, 'the TLS error');
    const error = jsonLines(out).find((l) => l.level === 'error')!;
    expect(error.msg.replace(/; retrying in [\d.]+s$/, '')).toBe(
      `connect to Elasticsearch ${secure.url} failed: TLS: the server's certificate cannot be verified (unable to verify the first certificate): set elasticsearch.tls.ca_file (or STACKWATCH_ES_CA_FILE) to the CA that signed it`,
    );
    expect(out).not.toContain(secure.password);

    const u = secureSetup('sec-noverify', { username: secure.user, password_file: secretFile('es-password-3', secure.password), tls: { reject_unauthorized: false } });
    const ok = await replay(u.configFile, FIXTURE);
    const warning = jsonLines(ok).find((l) => l.component === 'config');
    expect(warning).toMatchObject({ level: 'warn' });
    expect(warning!.msg).toMatch(/^elasticsearch\.tls\.reject_unauthorized is false: the certificate of https:\/\/127\.0\.0\.1:\d+ is NOT verified/);
    expect(await countDocs(admin, `${u.cfg.elasticsearch.indices.logs}-*`)).toBe(producedEvents(ok));
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Kafka with SASL, over TLS and over plain TCP.

describe('Kafka with SASL (SCRAM and PLAIN) over TLS and plain TCP', () => {
  let env: Record<string, string>;
  let dir: string;
  const setups: TestSetup[] = [];

  beforeAll(() => {
    env = startSecureServices('kafka-secure', 'elasticsearch-secure');
    expect(env.STACKWATCH_KAFKA_SECURE_PASSWORD).toMatch(/^\S{16,}$/);
    const t = testSetup('sec-kfiles');
    setups.push(t);
    dir = join(t.dir, 'secrets');
    mkdirSync(dir, { mode: 0o700 });
    writeFileSync(join(dir, 'kafka-password'), `${env.STACKWATCH_KAFKA_SECURE_PASSWORD}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'es-password'), `${env.STACKWATCH_ES_SECURE_PASSWORD}\n`, { mode: 0o600 });
  });
  afterAll(async () => {
    for (const t of setups) await t.cleanup().catch(() => {});
  });

  /** A test setup on kafka-secure; `kafka` is merged into its kafka section. `cleanup`: false for a setup whose
   * credentials do not work (it creates nothing, and its cleanup could not log in). */
  function kafkaSetup(name: string, kafka: Record<string, unknown>, secureEs = false, cleanup = true): TestSetup {
    const t = testSetup(name, (raw) => {
      raw.kafka = { ...raw.kafka, ...kafka };
      if (secureEs) {
        raw.elasticsearch = {
          ...raw.elasticsearch,
          url: env.STACKWATCH_ES_SECURE_URL,
          username: env.STACKWATCH_ES_SECURE_USER,
          password_file: join(dir, 'es-password'),
          tls: { ca_file: env.STACKWATCH_ES_SECURE_CA },
        };
      }
    });
    if (cleanup) setups.push(t);
    return t;
  }

  it('the whole pipeline over SASL_SSL (SCRAM-SHA-512, CA file, password file) into the secure Elasticsearch', async () => {
    const t = kafkaSetup(
      'sec-kscram',
      {
        brokers: [env.STACKWATCH_KAFKA_SECURE_BROKERS],
        ssl: { ca_file: env.STACKWATCH_KAFKA_SECURE_CA },
        sasl: { mechanism: 'scram-sha-512', username: env.STACKWATCH_KAFKA_SECURE_USER, password_file: join(dir, 'kafka-password') },
      },
      true,
    );
    const out = await replay(t.configFile, FIXTURE);
    expect(await countDocs(t.es, `${t.cfg.elasticsearch.indices.logs}-*`)).toBe(producedEvents(out));
    expect(out).not.toContain(env.STACKWATCH_KAFKA_SECURE_PASSWORD);
    expect(out).not.toContain(env.STACKWATCH_ES_SECURE_PASSWORD);
    // The events went through kafka-secure, not the shared broker.
    const p = await groupProgress(t.cfg.kafka, t.cfg.kafka.consumer_group, t.cfg.kafka.topics.logs);
    // (in records: a record holds a batch of a file's events)
    expect(p.reduce((n, x) => n + x.end, 0)).toBeGreaterThan(0);
  });

  it('produces and consumes over SASL_PLAINTEXT with PLAIN (the password from STACKWATCH_KAFKA_SASL_PASSWORD)', async () => {
    const sasl = { mechanism: 'plain', username: env.STACKWATCH_KAFKA_SECURE_USER };
    const t = kafkaSetup('sec-kplain', { brokers: [env.STACKWATCH_KAFKA_SASL_PLAINTEXT_BROKERS], sasl: { ...sasl, password_file: join(dir, 'kafka-password') } });
    const raw = structuredClone(t.raw);
    raw.kafka.sasl = { ...sasl, password: 'replaced-by-the-environment' };
    const cfg = validateConfig(raw, 'test', { STACKWATCH_KAFKA_SASL_PASSWORD: env.STACKWATCH_KAFKA_SECURE_PASSWORD });
    const topic = cfg.kafka.topics.logs;
    await ensureTopics(cfg.kafka, [topic]);
    const producer = await TopicProducer.connect(cfg.kafka, 'sasl-test');
    const sent = Array.from({ length: 20 }, (_, i) => ({ key: `k${i % 3}`, value: `message ${i}` }));
    await producer.send(topic, sent);
    await producer.disconnect();
    const got: string[] = [];
    const consumer = await GroupConsumer.start(cfg.kafka, {
      groupId: cfg.kafka.consumer_group,
      topics: [topic],
      component: 'sasl-test',
      onBatch: async (b) => void got.push(...b.messages.map((m) => m.value!)),
    });
    try {
      await waitFor('20 messages', async () => got.length >= 20, 60_000);
    } finally {
      await consumer.stop();
    }
    expect(got.sort()).toEqual(sent.map((m) => m.value).sort());
  });

  it('a wrong password and a missing CA are clear errors, and no secret is printed', async () => {
    const wrong = 'Wr0ng-Kafka-Passw0rd';
    const t = kafkaSetup(
      'sec-kwrong',
      {
        brokers: [env.STACKWATCH_KAFKA_SECURE_BROKERS],
        ssl: { ca_file: env.STACKWATCH_KAFKA_SECURE_CA },
        sasl: { mechanism: 'plain', username: env.STACKWATCH_KAFKA_SECURE_USER, password: wrong },
      },
      false,
      false,
    );
    const out = await stderrUntil(stackwatch(['replay', '--no-process', '--config', t.configFile, FIXTURE]), /authentication failed/i, 'the SASL error');
    const error = jsonLines(out).find((l) => l.level === 'error')!;
    expect(error.msg).toMatch(
      new RegExp(
        `^connect admin \\(Kafka ${env.STACKWATCH_KAFKA_SECURE_BROKERS}\\) failed: SASL PLAIN authentication failed: Authentication failed: Invalid username or password; retrying in`,
      ),
    );
    expect(out).not.toContain(wrong);
    expect(out).not.toContain(env.STACKWATCH_KAFKA_SECURE_PASSWORD);

    const u = kafkaSetup(
      'sec-knoca',
      {
        brokers: [env.STACKWATCH_KAFKA_SECURE_BROKERS],
        ssl: {},
        sasl: { mechanism: 'scram-sha-256', username: env.STACKWATCH_KAFKA_SECURE_USER, password_file: join(dir, 'kafka-password') },
      },
      false,
      false,
    );
    const noCa = await stderrUntil(stackwatch(['replay', '--no-process', '--config', u.configFile, FIXTURE]), /certificate/, 'the TLS error');
    expect(jsonLines(noCa).find((l) => l.level === 'error')!.msg).toMatch(
      new RegExp(`^connect admin \\(Kafka ${env.STACKWATCH_KAFKA_SECURE_BROKERS}\\) failed: .*(unable to verify the first certificate|self[- ]signed certificate)`),
    );
    expect(noCa).not.toContain(env.STACKWATCH_KAFKA_SECURE_PASSWORD);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The seeded-secret corpus end to end.

const secretsFixture = (name: string) => readFileSync(join(REPO, 'test/fixtures/secrets', name), 'utf8');

/** The seeded secret values themselves, found by aligning corpus.txt with corpus.expected.txt (where exactly the
 * secrets are `***`): 57 values, each with its marker S3CRET-<n>-x. */
function seededSecrets(): string[] {
  const input = secretsFixture('corpus.txt').split('\n');
  const expected = secretsFixture('corpus.expected.txt').split('\n');
  expect(input).toHaveLength(expected.length);
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const values: string[] = [];
  for (const [i, line] of input.entries()) {
    if (line === expected[i]) continue;
    const m = new RegExp(`^${expected[i].split('***').map(esc).join('(.+?)')}$`).exec(line);
    expect(m, `corpus line ${i + 1}`).not.toBeNull();
    values.push(...m!.slice(1).filter((v) => /S3CRET-\d+-x/.test(v))); // not oslo's own '****'
  }
  return values;
}

/** Events of the corpus: a line that starts with a date, with the lines after it that do not (a traceback). */
const corpusEvents = (text: string) =>
  text
    .split('\n')
    .filter(Boolean)
    .filter((l, i) => i === 0 || /^\d{4}-\d\d-\d\d /.test(l)).length;

/** Every message (key and value) of the test's topics that exist, read from the beginning with a group of its own
 * until it has everything up to the end of each partition. */
async function readTopics(t: TestSetup): Promise<string[]> {
  const admin = kafkaClient(t.cfg.kafka, '-secret-reader').admin();
  await admin.connect();
  const existing = new Set(await admin.listTopics());
  await admin.disconnect();
  const topics = Object.values(t.cfg.kafka.topics).filter((topic) => existing.has(topic));
  expect(topics).toContain(t.cfg.kafka.topics.logs);
  expect(topics).toContain(t.cfg.kafka.topics.dead_letter);
  const out: string[] = [];
  const groupId = `${t.cfg.kafka.consumer_group}-secret-reader`;
  const reader = await GroupConsumer.start(t.cfg.kafka, {
    groupId,
    topics,
    component: 'secret-reader',
    onBatch: async (b) => void out.push(...b.messages.map((m) => `${b.topic} ${m.offset} ${m.key ?? ''} ${m.value ?? ''}`)),
  });
  try {
    for (const topic of topics) {
      await waitFor(`every message of ${topic}`, async () => (await groupProgress(t.cfg.kafka, groupId, topic)).every((p) => p.committed === p.end), 60_000);
    }
  } finally {
    await reader.stop();
  }
  return out;
}

describe('seeded secrets never reach Kafka or Elasticsearch (collector → Kafka → processor → Elasticsearch)', () => {
  const t = testSetup('sec-corpus', (raw) => {
    raw.collectors.openstack_logs.keep_original = true; // event.original too must be masked
  });
  afterAll(() => t.cleanup());

  it('reads back every message and every document: none of the 57 seeded secrets is anywhere', async () => {
    const secrets = seededSecrets();
    expect(secrets).toHaveLength(57);
    expect(secrets.map((s) => /S3CRET-(\d+)-x/.exec(s)![1]).map(Number)).toEqual(Array.from({ length: 57 }, (_, i) => i + 1));
    const corpus = secretsFixture('corpus.txt');
    const events = corpusEvents(corpus);
    expect(events).toBe(49);

    mkdirSync(join(t.dir, 'logs'));
    copyFileSync(join(REPO, 'test/fixtures/secrets/corpus.txt'), join(t.dir, 'logs', 'nova-compute.log'));
    const cli = stackwatch(['run', '--config', t.configFile]);
    const index = `${t.cfg.elasticsearch.indices.logs}-*`;
    try {
      await waitFor(`${events} documents`, async () => (await countDocs(t.es, index)) === events, 90_000);
    } finally {
      cli.child.kill('SIGTERM');
    }
    const { code } = await cli.exited;
    expect(code, cli.stderr()).toBe(0);

    // Kafka: every message of the test's topics (logs, dead letters, notification retries, metrics, health).
    const messages = await readTopics(t);
    // (a record of the logs topic holds a batch of a file's events: the events in them, as the processor takes them out)
    const logRecords = messages.filter((m) => m.startsWith(`${t.cfg.kafka.topics.logs} `));
    expect(logRecords.map((m) => messageEvents('logs', JSON.parse(m.slice(m.indexOf('{')))).events.length).reduce((a, b) => a + b, 0)).toBe(events);
    // Elasticsearch: every document of every index of this test (logs, alerts, metrics, dead letters).
    await t.es.indices.refresh({ index: `swtest-${t.run}-*`, allow_no_indices: true, ignore_unavailable: true });
    const res = await t.es.search({ index: `swtest-${t.run}-*`, size: 10_000, query: { match_all: {} }, allow_no_indices: true, ignore_unavailable: true });
    const docs = res.hits.hits.map((h) => `${h._index} ${h._id} ${JSON.stringify(h._source)}`);
    expect(docs.filter((d) => d.startsWith(t.cfg.elasticsearch.indices.logs))).toHaveLength(events);
    // Not vacuous: the masks are there, and event.original was kept (and masked).
    expect(docs.filter((d) => d.includes('***')).length).toBeGreaterThanOrEqual(events - 1);
    expect(res.hits.hits.filter((h) => (h._source as any).event?.original).length).toBe(events);

    const paged = JSON.stringify(await pagedAlerts(t.host));
    const places: [string, string][] = [
      ['Kafka', messages.join('\n')],
      ['Elasticsearch', docs.join('\n')],
      ['the pager webhook', paged],
      ['the output of stackwatch run', cli.stderr()],
    ];
    for (const [where, text] of places) {
      expect(
        secrets.filter((s) => text.includes(s)),
        where,
      ).toEqual([]);
      expect(text.match(/S3CRET-\d+-x/g), where).toBeNull();
    }
  });
});
