// Argument parsing shared by the commands: node's parseArgs, with errors that name the option.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, DEFAULT_CONFIG_PATH, isTimeZone, loadConfig, type Config } from '../core/config.ts';

export function parseOptions<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (err) {
    throw new ConfigError((err as Error).message.replace(/^.*?: /, '').split('\n')[0]);
  }
}

/** A time-zone option's value, refused (naming the option) unless it is a zone the timestamps can be read in. */
export function timeZoneOption(value: string, flag: string): string {
  if (!isTimeZone(value)) throw new ConfigError(`${flag}: unknown time zone ${JSON.stringify(value)} (expected an IANA name like UTC or Europe/Berlin)`);
  return value;
}

export function configPath(flag: string | undefined): string {
  return flag ?? process.env.STACKWATCH_CONFIG ?? DEFAULT_CONFIG_PATH;
}

export function readConfig(flag: string | undefined): Config {
  return loadConfig(configPath(flag));
}

/** Resolves when SIGINT or SIGTERM arrives, and aborts the returned signal then. */
export function shutdownSignal(): { signal: AbortSignal; stopped: Promise<string>; abort(): void } {
  const ctl = new AbortController();
  const stopped = new Promise<string>((resolve) => {
    const on = (sig: string) => () => {
      ctl.abort();
      resolve(sig);
    };
    process.once('SIGINT', on('SIGINT'));
    process.once('SIGTERM', on('SIGTERM'));
  });
  return { signal: ctl.signal, stopped, abort: () => ctl.abort() };
}
