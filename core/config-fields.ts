// The field types every configuration section is made of — sections live next to their components (collectors,
// notifiers) and core/config.ts — so that a duration, a URL or a secret file is validated, and its error worded,
// the same way everywhere.
import { z } from 'zod';
import { readSecretFile } from './secrets.ts';

/** `host:port`, the port in [minPort, 65535]. */
export const hostPortOf = (minPort: number, error: string) =>
  z
    .string()
    .regex(/^[A-Za-z0-9._\-[\]:]+:\d{1,5}$/, { error })
    .refine((v) => Number(v.slice(v.lastIndexOf(':') + 1)) >= minPort && Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, {
      error: `${error}, the port from ${minPort} to 65535`,
    });
export const hostPort = hostPortOf(1, 'expected host:port');
export const httpUrl = z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' });
export const positiveInt = z.number().int({ error: 'expected a whole number' }).positive({ error: 'expected a number above 0' });
/** Node's timers take at most 2^31-1 ms (about 24.8 days): a longer delay silently becomes 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
export const durationMs = positiveInt.max(MAX_TIMER_MS, { error: `expected at most ${MAX_TIMER_MS} ms (about 24.8 days)` });
/** Seconds that become a timer's milliseconds. */
export const durationS = positiveInt.max(Math.floor(MAX_TIMER_MS / 1000), { error: `expected at most ${Math.floor(MAX_TIMER_MS / 1000)} s (about 24.8 days)` });
/** An event is held several times over (its lines, the text, event.original, the JSON) in a heap of 512 MiB
 * (bin/stackwatch.mjs), per open stream: a bigger cap is no cap. */
export const MAX_EVENT_BYTES_LIMIT = 16 * 1024 * 1024;
export const nonEmpty = z.string().min(1, { error: 'expected a non-empty string' });

/** Whether timestamps can be read in `zone`: an IANA name (or link) the runtime's time-zone data knows. */
export function isTimeZone(zone: string): boolean {
  if (zone === '') return false;
  if (zone === 'UTC') return true; // the default: no need to load the time zone data (30 ms of a start)
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}
/** An IANA time zone name (the config's fields and the rule test files). */
export const timeZone = z.string().refine(isTimeZone, { error: 'expected an IANA time zone like UTC or Europe/Berlin' });

// ---- Secrets and TLS files. A `<name>_file` option names a file read once at start-up (contents trimmed), e.g. a
// Docker or Kubernetes secret; an unreadable file fails like any bad field, naming the field and the file. The
// value fields and their `_file` twins exclude each other; an environment variable overrides both.
export type Ctx = z.core.$RefinementCtx;
export const filePath = z.string().min(1, { error: 'expected a file path' });

/** Reads `path` for `field` (a path under the section), or adds an issue naming the field and the file. */
export function readFor(ctx: Ctx, field: PropertyKey[], path: string, read: (p: string) => string): string | undefined {
  try {
    return read(path);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message, path: field, input: path });
    return undefined;
  }
}

/** `value` or the contents of `file` (not both); undefined when neither is set. */
export function secretOf(ctx: Ctx, name: string, value: string | undefined, file: string | undefined, at: PropertyKey[] = []): string | undefined {
  if (value !== undefined && file !== undefined) {
    ctx.addIssue({ code: 'custom', message: `set ${name} or ${name}_file, not both`, path: [...at, `${name}_file`], input: file });
    return undefined;
  }
  return file !== undefined ? readFor(ctx, [...at, `${name}_file`], file, readSecretFile) : value;
}
