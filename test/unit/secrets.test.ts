// Secrets: the *_file options (read at start-up, trimmed; an unreadable file is a ConfigError naming the field and
// the file), environment overrides, Kafka TLS/SASL options for kafkajs, and the masking of URL credentials and
// configured secrets in log lines and error texts.
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { validateConfig } from '../../core/config.ts';
import { errors } from '@elastic/elasticsearch';
import { esClient } from '../../core/elastic.ts';
import { clarifyElasticsearchError } from '../../core/es-errors.ts';
import { kafkaSecurityOptions } from '../../core/kafka.ts';
import { errorText, logger, setLogSink } from '../../core/log.ts';
import { clearRegisteredSecrets, maskSecrets, maskUrlCredentials, readSecretFile, registerSecret, splitUrlCredentials } from '../../core/secrets.ts';
import { errorOf } from './config-error.ts';

const dir = mkdtempSync(join(tmpdir(), 'stackwatch-secrets-'));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

// A certificate and a key in PEM form (content is not parsed at load time, only the block is checked).
const CA_PEM = '-----BEGIN CERTIFICATE-----\nMIIBdummyCAcertificateBody\n-----END CERTIFICATE-----\n';
const CERT_PEM = '-----BEGIN CERTIFICATE-----\nMIIBdummyClientCertificate\n-----END CERTIFICATE-----\n';
const KEY_PEM = '-----BEGIN PRIVATE KEY-----\nMIIEdummyPrivateKeyBody\n-----END PRIVATE KEY-----\n';

const base = () => ({
  kafka: { brokers: ['127.0.0.1:9092'] },
  elasticsearch: { url: 'https://es.internal:9200' },
});

/** Log lines written while fn runs. */
function logsOf(fn: () => void): string[] {
  const lines: string[] = [];
  const restore = setLogSink((l) => lines.push(l));
  try {
    fn();
  } finally {
    restore();
  }
  return lines;
}

describe('readSecretFile', () => {
  it('returns the contents trimmed (a trailing newline is not part of the secret)', () => {
    expect(readSecretFile(file('pw', '  s3cret-Pa55 \n\n'))).toBe('s3cret-Pa55');
  });
  it('says why a file cannot be used', () => {
    expect(() => readSecretFile(join(dir, 'missing'))).toThrow(`cannot read ${join(dir, 'missing')}: no such file`);
    mkdirSync(join(dir, 'a-dir'), { recursive: true });
    expect(() => readSecretFile(join(dir, 'a-dir'))).toThrow(`cannot read ${join(dir, 'a-dir')}: is a directory`);
    expect(() => readSecretFile(file('empty', ' \n'))).toThrow(`${join(dir, 'empty')} is empty`);
  });
  it.skipIf(process.getuid?.() === 0)('permission denied', () => {
    const p = file('locked', 'x');
    chmodSync(p, 0o000);
    expect(() => readSecretFile(p)).toThrow(`cannot read ${p}: permission denied`);
  });
});

describe('config: secrets from files', () => {
  beforeEach(() => clearRegisteredSecrets());

  it('reads every *_file option: Elasticsearch, Kafka TLS and SASL, Zabbix, PagerDuty', () => {
    const raw = {
      ...base(),
      elasticsearch: {
        url: 'https://es.internal:9200',
        username: 'stackwatch',
        password_file: file('es-pw', 'es-Pa55word\n'),
        tls: { ca_file: file('es-ca.pem', CA_PEM) },
      },
      kafka: {
        brokers: ['kafka-1:9093'],
        ssl: { ca_file: file('k-ca.pem', CA_PEM), cert_file: file('k-cert.pem', CERT_PEM), key_file: file('k-key.pem', KEY_PEM) },
        sasl: { mechanism: 'scram-sha-512', username: 'sw', password_file: file('k-pw', 'kafka-Pa55word\n') },
      },
      notify: { pagerduty: { routing_key_file: file('pd', 'R0UTINGKEY0123456789\n') } },
      collectors: { zabbix: { url: 'https://zbx/api_jsonrpc.php', token_file: file('zbx-token', 'zabbix-T0ken-abcdef\n') } },
    };
    const cfg = validateConfig(raw, 'x.yaml', {});
    expect(cfg.elasticsearch).toMatchObject({ username: 'stackwatch', password: 'es-Pa55word', tls: { ca: CA_PEM.trim(), reject_unauthorized: true } });
    expect(cfg.kafka.ssl).toMatchObject({ ca: CA_PEM.trim(), cert: CERT_PEM.trim(), key: KEY_PEM.trim(), reject_unauthorized: true });
    expect(cfg.kafka.sasl).toMatchObject({ mechanism: 'scram-sha-512', username: 'sw', password: 'kafka-Pa55word' });
    expect(cfg.notify.pagerduty?.routing_key).toBe('R0UTINGKEY0123456789');
    expect(cfg.collectors.zabbix?.token).toBe('zabbix-T0ken-abcdef');
    const zbx = validateConfig({ ...base(), collectors: { zabbix: { url: 'https://zbx/api_jsonrpc.php', username: 'mon', password_file: file('zbx-pw', 'zbx-Pa55\n') } } }, 'x.yaml', {});
    expect(zbx.collectors.zabbix).toMatchObject({ username: 'mon', password: 'zbx-Pa55' });
    const key = validateConfig({ ...base(), elasticsearch: { url: 'https://es:9200', api_key_file: file('es-key', 'ZW5jb2RlZDprZXk=\n') } }, 'x.yaml', {});
    expect(key.elasticsearch.api_key).toBe('ZW5jb2RlZDprZXk=');
  });

  it('an unreadable file is one ConfigError line naming the field and the file', () => {
    const missing = join(dir, 'no-such-secret');
    const cases: [Record<string, any>, string][] = [
      [{ ...base(), elasticsearch: { url: 'https://es:9200', username: 'u', password_file: missing } }, 'elasticsearch.password_file'],
      [{ ...base(), elasticsearch: { url: 'https://es:9200', api_key_file: missing } }, 'elasticsearch.api_key_file'],
      [{ ...base(), elasticsearch: { url: 'https://es:9200', tls: { ca_file: missing } } }, 'elasticsearch.tls.ca_file'],
      [{ ...base(), kafka: { brokers: ['k:1'], ssl: { ca_file: missing } } }, 'kafka.ssl.ca_file'],
      [{ ...base(), kafka: { brokers: ['k:1'], sasl: { mechanism: 'plain', username: 'u', password_file: missing } } }, 'kafka.sasl.password_file'],
      [{ ...base(), notify: { pagerduty: { routing_key_file: missing } } }, 'notify.pagerduty.routing_key_file'],
      [{ ...base(), collectors: { zabbix: { url: 'https://z/api_jsonrpc.php', token_file: missing } } }, 'collectors.zabbix.token_file'],
      [{ ...base(), collectors: { zabbix: { url: 'https://z/api_jsonrpc.php', username: 'u', password_file: missing } } }, 'collectors.zabbix.password_file'],
    ];
    for (const [raw, field] of cases) {
      const msg = errorOf(() => validateConfig(raw, 'x.yaml', {}));
      expect(msg).toBe(`x.yaml: ${field}: cannot read ${missing}: no such file`);
    }
  });

  it('refuses a CA, certificate or key file that is not PEM, and cert_file without key_file', () => {
    const notPem = file('not-pem', 'hello\n');
    expect(errorOf(() => validateConfig({ ...base(), elasticsearch: { url: 'https://es:9200', tls: { ca_file: notPem } } }, 'x.yaml', {}))).toBe(
      `x.yaml: elasticsearch.tls.ca_file: ${notPem} is not a PEM certificate (expected a "-----BEGIN CERTIFICATE-----" block)`,
    );
    expect(errorOf(() => validateConfig({ ...base(), kafka: { brokers: ['k:1'], ssl: { cert_file: file('c.pem', CERT_PEM), key_file: file('k.pem', CERT_PEM) } } }, 'x.yaml', {}))).toMatch(
      /^x\.yaml: kafka\.ssl\.key_file: .* is not a PEM private key/,
    );
    expect(errorOf(() => validateConfig({ ...base(), kafka: { brokers: ['k:1'], ssl: { cert_file: file('c.pem', CERT_PEM) } } }, 'x.yaml', {}))).toBe(
      'x.yaml: kafka.ssl.key_file: cert_file and key_file go together',
    );
  });

  it('a value and its _file twin exclude each other; a missing SASL password or routing key is named', () => {
    const pw = file('pw2', 'abcdefgh');
    expect(errorOf(() => validateConfig({ ...base(), elasticsearch: { url: 'https://es:9200', username: 'u', password: 'x', password_file: pw } }, 'x.yaml', {}))).toBe(
      'x.yaml: elasticsearch.password_file: set password or password_file, not both',
    );
    expect(errorOf(() => validateConfig({ ...base(), kafka: { brokers: ['k:1'], sasl: { mechanism: 'plain', username: 'u' } } }, 'x.yaml', {}))).toBe(
      'x.yaml: kafka.sasl.password: required (or password_file)',
    );
    expect(errorOf(() => validateConfig({ ...base(), kafka: { brokers: ['k:1'], sasl: { mechanism: 'gssapi', username: 'u', password: 'p' } } }, 'x.yaml', {}))).toBe(
      'x.yaml: kafka.sasl.mechanism: expected plain, scram-sha-256 or scram-sha-512',
    );
    expect(errorOf(() => validateConfig({ ...base(), notify: { pagerduty: {} } }, 'x.yaml', {}))).toBe('x.yaml: notify.pagerduty.routing_key: required (or routing_key_file)');
    expect(errorOf(() => validateConfig({ ...base(), elasticsearch: { url: 'https://es:9200', password: 'p' } }, 'x.yaml', {}))).toBe(
      'x.yaml: elasticsearch.username: required with a password (or use api_key)',
    );
  });

  it('environment variables override the file and its _file twin; a variable and its _FILE twin exclude each other', () => {
    const raw = () => ({ ...base(), elasticsearch: { url: 'https://es:9200', username: 'u', password_file: join(dir, 'gone') } });
    // The variable wins, and the (unreadable) file of the config is not even read.
    expect(validateConfig(raw(), 'x.yaml', { STACKWATCH_ES_PASSWORD: 'from-env-pw' }).elasticsearch.password).toBe('from-env-pw');
    const fromFile = validateConfig({ ...base(), elasticsearch: { url: 'https://es:9200', username: 'u', password: 'in-the-file' } }, 'x.yaml', {
      STACKWATCH_ES_PASSWORD_FILE: file('env-pw', 'env-file-pw\n'),
      STACKWATCH_ES_API_KEY_FILE: file('env-key', 'ZW52OmtleQ==\n'),
      STACKWATCH_ES_CA_FILE: file('env-ca.pem', CA_PEM),
    });
    expect(fromFile.elasticsearch).toMatchObject({ password: 'env-file-pw', api_key: 'ZW52OmtleQ==', tls: { ca: CA_PEM.trim() } });
    expect(errorOf(() => validateConfig(raw(), 'x.yaml', { STACKWATCH_ES_PASSWORD: 'a', STACKWATCH_ES_PASSWORD_FILE: '/x' }))).toBe(
      'x.yaml: elasticsearch.password: set STACKWATCH_ES_PASSWORD or STACKWATCH_ES_PASSWORD_FILE, not both',
    );
    const sasl = validateConfig(base(), 'x.yaml', {
      STACKWATCH_KAFKA_SASL_MECHANISM: 'scram-sha-256',
      STACKWATCH_KAFKA_SASL_USERNAME: 'sw',
      STACKWATCH_KAFKA_SASL_PASSWORD_FILE: file('env-kpw', 'kafka-env-pw\n'),
      STACKWATCH_KAFKA_CA_FILE: file('env-kca.pem', CA_PEM),
    });
    expect(sasl.kafka.sasl).toMatchObject({ mechanism: 'scram-sha-256', username: 'sw', password: 'kafka-env-pw' });
    expect(sasl.kafka.ssl).toMatchObject({ ca: CA_PEM.trim(), reject_unauthorized: true });
    // Collector variables still only fill a configured collector.
    expect(validateConfig(base(), 'x.yaml', { STACKWATCH_ZABBIX_TOKEN_FILE: '/nope' }).collectors.zabbix).toBeUndefined();
    const zbx = validateConfig({ ...base(), collectors: { zabbix: { url: 'https://z/api_jsonrpc.php', token: 'in-file' } } }, 'x.yaml', {
      STACKWATCH_ZABBIX_TOKEN_FILE: file('env-zt', 'zbx-env-token\n'),
    });
    expect(zbx.collectors.zabbix?.token).toBe('zbx-env-token');
    const pd = validateConfig(base(), 'x.yaml', { STACKWATCH_PAGERDUTY_ROUTING_KEY_FILE: file('env-pd', 'pd-env-key\n') });
    expect(pd.notify.pagerduty?.routing_key).toBe('pd-env-key');
  });

  it('credentials written into elasticsearch.url move to username/password: the URL that gets logged has none', () => {
    const cfg = validateConfig({ ...base(), elasticsearch: { url: 'https://elastic:p%40ss-w0rd@es.internal:9200' } }, 'x.yaml', {});
    expect(cfg.elasticsearch).toMatchObject({ url: 'https://es.internal:9200', username: 'elastic', password: 'p@ss-w0rd' });
    expect(errorOf(() => validateConfig({ ...base(), elasticsearch: { url: 'https://a:b@es:9200', username: 'c', password: 'd' } }, 'x.yaml', {}))).toBe(
      'x.yaml: elasticsearch.url: credentials both in the URL and in username/password: keep one (better: username and password_file)',
    );
  });

  it('a ConfigError never echoes a value: a wrong-typed or malformed secret is named by its field only', () => {
    const secret = 'Sup3r-S3cret-Value';
    const bad: Record<string, any>[] = [
      { ...base(), elasticsearch: { url: 'https://es:9200', username: 'u', password: { nested: secret } } },
      { ...base(), elasticsearch: { url: `ftp://u:${secret}@es:9200/` } },
      { ...base(), kafka: { brokers: ['k:1'], sasl: { mechanism: secret, username: 'u', password: secret } } },
      { ...base(), notify: { pagerduty: { routing_key: secret, routing_key_file: file('pd2', secret) } } },
    ];
    for (const raw of bad) expect(errorOf(() => validateConfig(raw, 'x.yaml', {}))).not.toContain(secret);
  });

  it('warns loudly when TLS verification is off, and when credentials would cross the network in clear text', () => {
    const lines = logsOf(() => {
      validateConfig({ ...base(), elasticsearch: { url: 'https://es.internal:9200', tls: { reject_unauthorized: false } } }, 'x.yaml', {});
      validateConfig({ ...base(), kafka: { brokers: ['kafka-1:9093'], ssl: { reject_unauthorized: false } } }, 'x.yaml', {});
      validateConfig({ ...base(), elasticsearch: { url: 'http://es.internal:9200', username: 'u', password: 'p-in-clear' } }, 'x.yaml', {});
      validateConfig({ ...base(), kafka: { brokers: ['kafka-1:9092'], sasl: { mechanism: 'plain', username: 'u', password: 'p-in-clear' } } }, 'x.yaml', {});
    }).map((l) => JSON.parse(l));
    expect(lines.map((l) => l.level)).toEqual(['warn', 'warn', 'warn', 'warn']);
    expect(lines[0].msg).toMatch(/^elasticsearch\.tls\.reject_unauthorized is false: the certificate of https:\/\/es\.internal:9200 is NOT verified/);
    expect(lines[1].msg).toMatch(/^kafka\.ssl\.reject_unauthorized is false/);
    expect(lines[2].msg).toMatch(/sent to http:\/\/es\.internal:9200 in clear text/);
    expect(lines[3].msg).toMatch(/PLAIN password is sent to the brokers kafka-1:9092 in clear text/);
    // The safe setups, and loopback (the local test stack), say nothing.
    expect(
      logsOf(() => {
        validateConfig({ ...base(), elasticsearch: { url: 'https://es.internal:9200', tls: { ca_file: file('ca3.pem', CA_PEM) } } }, 'x.yaml', {});
        validateConfig({ ...base(), elasticsearch: { url: 'http://127.0.0.1:9200', username: 'u', password: 'p' } }, 'x.yaml', {});
        validateConfig({ ...base(), kafka: { brokers: ['127.0.0.1:9092'], sasl: { mechanism: 'plain', username: 'u', password: 'p' } } }, 'x.yaml', {});
      }),
    ).toEqual([]);
  });
});

describe('kafkajs options from kafka.ssl and kafka.sasl', () => {
  it('TLS with a CA, a client certificate and SASL', () => {
    const cfg = validateConfig(
      {
        ...base(),
        kafka: {
          brokers: ['kafka-1:9093'],
          ssl: { ca_file: file('kca.pem', CA_PEM), cert_file: file('kcert.pem', CERT_PEM), key_file: file('kkey.pem', KEY_PEM) },
          sasl: { mechanism: 'scram-sha-256', username: 'stackwatch', password: 'kafka-pw' },
        },
      },
      'x.yaml',
      {},
    );
    expect(kafkaSecurityOptions(cfg.kafka)).toEqual({
      ssl: { rejectUnauthorized: true, ca: [CA_PEM.trim()], cert: CERT_PEM.trim(), key: KEY_PEM.trim() },
      sasl: { mechanism: 'scram-sha-256', username: 'stackwatch', password: 'kafka-pw' },
    });
  });
  it('ssl: {} is TLS with the system CAs; no ssl and no sasl adds nothing', () => {
    expect(kafkaSecurityOptions(validateConfig({ ...base(), kafka: { brokers: ['k:9093'], ssl: {} } }, 'x.yaml', {}).kafka)).toEqual({ ssl: { rejectUnauthorized: true } });
    expect(
      kafkaSecurityOptions(validateConfig({ ...base(), kafka: { brokers: ['127.0.0.1:9093'], sasl: { mechanism: 'plain', username: 'u', password: 'p' } } }, 'x.yaml', {}).kafka),
    ).toEqual({
      sasl: { mechanism: 'plain', username: 'u', password: 'p' },
    });
    expect(kafkaSecurityOptions(validateConfig(base(), 'x.yaml', {}).kafka)).toEqual({});
  });
});

describe('esClient', () => {
  it('takes the CA and the credentials from the config (no credentials in its URL)', async () => {
    const cfg = validateConfig({ ...base(), elasticsearch: { url: 'https://elastic:url-pw-123@es.internal:9200', tls: { ca_file: file('esca.pem', CA_PEM) } } }, 'x.yaml', {});
    const client = esClient(cfg.elasticsearch);
    const conn = (client.connectionPool as unknown as { connections: { url: URL; tls: { ca?: string; rejectUnauthorized?: boolean }; headers: Record<string, string> }[] }).connections[0];
    expect(conn.url.href).toBe('https://es.internal:9200/');
    expect(conn.tls).toMatchObject({ ca: CA_PEM.trim(), rejectUnauthorized: true });
    expect(conn.headers.authorization).toBe(`Basic ${Buffer.from('elastic:url-pw-123').toString('base64')}`);
    await client.close();
  });
});

describe('masking', () => {
  afterEach(() => clearRegisteredSecrets());

  it('masks the password of every URL in a text, keeps the user name, and leaves other text alone', () => {
    const cases: [string, string][] = [
      ['connect to Elasticsearch https://elastic:hunter2@es:9200 failed', 'connect to Elasticsearch https://elastic:***@es:9200 failed'],
      ['amqp://guest:p@ss@w0rd@rabbit:5672/ and http://u:v@h/x', 'amqp://guest:***@rabbit:5672/ and http://u:***@h/x'],
      ['{"url":"mysql+pymysql://nova:S3cr3t@db/nova"}', '{"url":"mysql+pymysql://nova:***@db/nova"}'],
      ['https://ghp_tokenvalue@github.com/org/repo', 'https://***@github.com/org/repo'],
      ['redis://:only-a-password@cache:6379', 'redis://:***@cache:6379'],
      ['already masked: rabbit://nova:***@h and https://***@h', 'already masked: rabbit://nova:***@h and https://***@h'],
    ];
    for (const [text, want] of cases) expect(maskUrlCredentials(text)).toBe(want);
    for (const text of ['http://es:9200/_bulk?mail=a@b.example', 'mail me: ops@example.org', 'GET /path HTTP/1.1', 'https://es:9200/x?q=user:pass@host']) {
      expect(maskUrlCredentials(text)).toBe(text);
    }
  });

  it('splits credentials out of a URL', () => {
    expect(splitUrlCredentials('https://u:p%3Aw@es:9200')).toEqual({ url: 'https://es:9200', username: 'u', password: 'p:w' });
    expect(splitUrlCredentials('https://es:9200/prefix/')).toEqual({ url: 'https://es:9200/prefix/' });
    expect(splitUrlCredentials('https://u:p@es:9200/prefix')).toEqual({ url: 'https://es:9200/prefix', username: 'u', password: 'p' });
  });

  it('masks registered secrets (also JSON-escaped), longest first, and ignores short ones', () => {
    registerSecret('abc'); // too short to mask in free text
    registerSecret('pa"ss\\word-1');
    registerSecret('token-1234567890');
    registerSecret('token-1234567890-long');
    expect(maskSecrets('abc token-1234567890-long token-1234567890')).toBe('abc *** ***');
    expect(maskSecrets(JSON.stringify({ msg: 'pw is pa"ss\\word-1' }))).toBe('{"msg":"pw is ***"}');
  });

  it('every log line and every error text goes through the masking', () => {
    validateConfig(
      { ...base(), elasticsearch: { url: 'https://es:9200', username: 'elastic', password: 'Es-Pa55word-xyz' }, notify: { pagerduty: { routing_key: 'PD-routing-key-123' } } },
      'x.yaml',
      {},
    );
    const lines = logsOf(() => {
      const log = logger('test');
      log.error('connect to Elasticsearch https://elastic:Es-Pa55word-xyz@es:9200 failed', { url: 'http://u:other-pw@h/', key: 'PD-routing-key-123' });
      log.error(`failed: ${errorText(new Error('401 for user elastic with password Es-Pa55word-xyz at https://elastic:Es-Pa55word-xyz@es:9200'))}`);
    });
    const all = lines.join('\n');
    expect(all).not.toMatch(/Es-Pa55word-xyz|other-pw|PD-routing-key-123/);
    expect(JSON.parse(lines[0])).toMatchObject({ msg: 'connect to Elasticsearch https://elastic:***@es:9200 failed', url: 'http://u:***@h/', key: '***' });
    expect(errorText(new AggregateError([new Error('at https://a:zzz-secret@h')]))).toBe('at https://a:***@h');
  });
});

describe('Elasticsearch errors an operator meets when setting up security', () => {
  const responseError = (statusCode: number, error: unknown) => new errors.ResponseError({ body: { error, status: statusCode }, statusCode, headers: {}, warnings: null, meta: {} as any });

  it('401 and 403: one line with the reason and what to check (status and body stay for the callers)', () => {
    const e401 = responseError(401, {
      type: 'security_exception',
      reason: 'unable to authenticate user [elastic] for REST request [/_cluster/health]',
      root_cause: [{ type: 'security_exception', reason: 'unable to authenticate user [elastic] for REST request [/_cluster/health]' }],
    });
    expect(e401.message).toContain('\n'); // the client's own message: multi-line
    expect(clarifyElasticsearchError(e401)).toBe(true);
    expect(e401.message).toBe(
      'authentication failed (HTTP 401: unable to authenticate user [elastic] for REST request [/_cluster/health]): check elasticsearch.username and password (or password_file), or api_key (or api_key_file)',
    );
    expect(e401).toBeInstanceOf(errors.ResponseError);
    expect(e401.statusCode).toBe(401);
    expect(clarifyElasticsearchError(e401)).toBe(false); // once only
    const e403 = responseError(403, { type: 'security_exception', reason: 'action [indices:data/write/bulk[s]] is unauthorized for API key id [abc]' });
    clarifyElasticsearchError(e403);
    expect(e403.message).toBe('not authorized (HTTP 403: action [indices:data/write/bulk[s]] is unauthorized for API key id [abc]): the user or API key lacks a privilege for this request');
  });

  it('certificate and handshake failures say what to set; anything else is left alone', () => {
    const cert = new errors.ConnectionError('unable to verify the first certificate');
    clarifyElasticsearchError(cert);
    expect(cert.message).toBe(
      "TLS: the server's certificate cannot be verified (unable to verify the first certificate): set elasticsearch.tls.ca_file (or STACKWATCH_ES_CA_FILE) to the CA that signed it",
    );
    const proto = new errors.ConnectionError('write EPROTO 4087:error:0A00010B:SSL routines:ssl3_get_record:wrong version number');
    clarifyElasticsearchError(proto);
    expect(proto.message).toMatch(/^TLS handshake failed \(.*\): is the scheme of elasticsearch\.url/);
    const other = new errors.ConnectionError('connect ECONNREFUSED 127.0.0.1:9200');
    const notFound = responseError(404, { type: 'index_not_found_exception', reason: 'no such index [x]' });
    const before = [other.message, notFound.message];
    expect([clarifyElasticsearchError(other), clarifyElasticsearchError(notFound), clarifyElasticsearchError(undefined)]).toEqual([false, false, false]);
    expect([other.message, notFound.message]).toEqual(before);
  });
});
