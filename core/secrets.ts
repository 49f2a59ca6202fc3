// Secrets: read from files (the `*_file` options, e.g. Docker or Kubernetes secrets), and kept out of logs and
// error messages. Two kinds of masking apply to every log line and every error text (core/log.ts):
//   - credentials in URLs: `scheme://user:pass@host` becomes `scheme://user:***@host` (`scheme://token@host`
//     becomes `scheme://***@host`), whatever the URL and wherever it appears;
//   - the configured secret values themselves (passwords, API keys, tokens, routing keys, authorization headers),
//     registered when the configuration is loaded.
// This module imports nothing of stackwatch's: core/log.ts depends on it.
import { readFileSync } from 'node:fs';

export const SECRET_MASK = '***';

/** Secret values shorter than this are not masked in free text: masking "abc" would garble every log line. */
export const MIN_MASKED_SECRET_LENGTH = 6;

/** Why a file could not be read, in an operator's words. */
export function fileErrorReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    default:
      return code ?? (err instanceof Error ? err.message : String(err));
  }
}

/** The contents of a secret file, trimmed (a trailing newline is not part of the password). Throws an Error whose
 * message says why: "cannot read /run/secrets/es: permission denied", "/run/secrets/es is empty". */
export function readSecretFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${path}: ${fileErrorReason(err)}`);
  }
  const value = text.trim();
  if (value === '') throw new Error(`${path} is empty`);
  return value;
}

/** A PEM file (CA or client certificate, private key), trimmed; refuses a file without the expected block, so a
 * wrong path fails at start-up and not as an obscure TLS error later. */
export function readPemFile(path: string, kind: 'certificate' | 'private key'): string {
  const text = readSecretFile(path);
  const ok = kind === 'certificate' ? /-----BEGIN CERTIFICATE-----/.test(text) : /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text);
  if (!ok) throw new Error(`${path} is not a PEM ${kind} (expected a "-----BEGIN ${kind === 'certificate' ? 'CERTIFICATE' : 'PRIVATE KEY'}-----" block)`);
  return text;
}

// scheme://userinfo@ — userinfo runs to the last `@` before the host (a password may hold an unescaped `@`), and
// cannot contain `/`, `?`, `#`, blanks or quotes (so `http://host/path?mail=a@b` is not taken for credentials).
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#'"<>\\]+)@/gi;

/** Masks the credentials of every URL in `text`: the password (the user name stays, it helps to debug), or the
 * whole userinfo when it has no `:` (often a token). Text without URL credentials comes back unchanged. */
export function maskUrlCredentials(text: string): string {
  if (!text.includes('://')) return text;
  return text.replace(URL_USERINFO, (whole, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    if (colon < 0) return userinfo === SECRET_MASK ? whole : `${scheme}${SECRET_MASK}@`;
    return `${scheme}${userinfo.slice(0, colon)}:${SECRET_MASK}@`;
  });
}

/** A URL without its credentials, and those credentials (decoded). An unparsable URL comes back as it is. */
export function splitUrlCredentials(url: string): { url: string; username?: string; password?: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { url };
  }
  if (u.username === '' && u.password === '') return { url };
  const username = decodeURIComponent(u.username);
  const password = decodeURIComponent(u.password);
  u.username = '';
  u.password = '';
  // new URL() adds a "/" to a bare origin: keep the operator's spelling otherwise.
  const clean = u.href.endsWith('/') && !url.replace(/[?#].*$/, '').endsWith('/') ? u.href.slice(0, -1) : u.href;
  return { url: clean, ...(username ? { username } : {}), ...(password ? { password } : {}) };
}

// Longest first, so that a secret containing another one is masked whole.
let registered: string[] = [];

/** Registers a secret value: from now on it is masked in log lines and error texts (also as it appears inside
 * JSON). Values shorter than MIN_MASKED_SECRET_LENGTH are ignored. */
export function registerSecret(value: string | undefined | null): void {
  if (!value || value.length < MIN_MASKED_SECRET_LENGTH) return;
  const forms = new Set([value, JSON.stringify(value).slice(1, -1), encodeURIComponent(value)]);
  let added = false;
  for (const form of forms) {
    if (!registered.includes(form)) {
      registered.push(form);
      added = true;
    }
  }
  if (added) registered.sort((a, b) => b.length - a.length);
}

/** Tests only: forgets the registered secrets. */
export function clearRegisteredSecrets(): void {
  registered = [];
}

/** Masks URL credentials and every registered secret value in `text`. */
export function maskSecrets(text: string): string {
  let out = maskUrlCredentials(text);
  for (const secret of registered) {
    if (out.includes(secret)) out = out.split(secret).join(SECRET_MASK);
  }
  return out;
}
