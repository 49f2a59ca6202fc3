// Structured logs: one JSON object per line on stderr. Normal operation logs nothing at the default
// level; a problem logs one line that says what happened and what to do.
// Secrets never reach the log: every line and every error text goes through maskSecrets (core/secrets.ts): URL
// credentials and the configured passwords, keys and tokens become ***.
import { maskSecrets } from './secrets.ts';

export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

let threshold: number = ORDER[(process.env.STACKWATCH_LOG_LEVEL as Level) ?? 'warn'] ?? ORDER.warn;
let sink: (line: string) => void = (line) => process.stderr.write(line + '\n');

export function setLogLevel(level: Level): void {
  threshold = ORDER[level];
}

/** Tests and the demo redirect the log stream; returns a function that restores the previous one. */
export function setLogSink(fn: (line: string) => void): () => void {
  const previous = sink;
  sink = fn;
  return () => {
    sink = previous;
  };
}

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function logger(component: string): Logger {
  const emit =
    (level: Level) =>
    (msg: string, fields: Record<string, unknown> = {}) => {
      if (ORDER[level] < threshold) return;
      sink(maskSecrets(JSON.stringify({ ts: new Date().toISOString(), level, component, msg, ...fields })));
    };
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
}

/** The message of anything thrown, without a stack trace, and without secrets. */
export function errorText(err: unknown): string {
  return maskSecrets(rawErrorText(err));
}

function rawErrorText(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return rawErrorText(err.errors[0]);
  // kafkajs's own aggregate (not an AggregateError): one error per topic, e.g. "Topic creation errors".
  const several = (err as { errors?: unknown }).errors;
  if (err instanceof Error && Array.isArray(several) && several.length > 0) {
    return `${err.message}: ${several.map((e) => ((e as { topic?: string }).topic ? `${(e as { topic: string }).topic}: ` : '') + rawErrorText(e)).join('; ')}`;
  }
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}
