// `stackwatch <command>`: the command table, global options and error reporting. Each command is one file.
import { ConfigError } from '../core/config.ts';
import { errorText, setLogLevel, type Level } from '../core/log.ts';
import { Aborted } from '../core/retry.ts';
import { demoCommand } from './demo.ts';
import { parseCommand } from './parse.ts';
import { replayCommand } from './replay.ts';
import { runCommand } from './run.ts';

export interface Command {
  name: string;
  summary: string;
  /** Full help text, shown by `stackwatch <command> --help`. */
  help: string;
  main(args: string[]): Promise<number>;
}

const COMMANDS: Command[] = [runCommand, parseCommand, replayCommand, demoCommand];

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'Usage: stackwatch <command> [options]',
    '',
    'Monitoring and log analysis for OpenStack clouds: collectors feed Kafka, processors parse, detect known',
    'failures and write logs and alerts to Elasticsearch, alerts go to Alertmanager.',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Options:',
    '  -h, --help           show help (also: stackwatch <command> --help)',
    '  --log-level LEVEL    debug | info | warn | error (default warn; or STACKWATCH_LOG_LEVEL)',
    '',
    'Configuration: --config FILE, else $STACKWATCH_CONFIG, else /etc/stackwatch/stackwatch.yaml',
    '(example: config/stackwatch.example.yaml).',
  ].join('\n');
}

/** Takes `--log-level X` out of the arguments (it applies to every command). */
function takeLogLevel(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = a === '--log-level' ? args[++i] : a.startsWith('--log-level=') ? a.slice(12) : undefined;
    if (value === undefined) out.push(a);
    else if (['debug', 'info', 'warn', 'error'].includes(value)) setLogLevel(value as Level);
    else throw new ConfigError(`--log-level: expected debug, info, warn or error, got ${JSON.stringify(value)}`);
  }
  return out;
}

export async function main(argv: string[]): Promise<number> {
  try {
    const args = takeLogLevel(argv);
    const [name, ...rest] = args;
    if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
      const topic = name === 'help' ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
      process.stdout.write((topic ? topic.help : usage()) + '\n');
      return name === undefined ? 2 : 0;
    }
    const cmd = COMMANDS.find((c) => c.name === name);
    if (!cmd) {
      process.stderr.write(`stackwatch: unknown command ${JSON.stringify(name)}\n\n${usage()}\n`);
      return 2;
    }
    if (rest.includes('-h') || rest.includes('--help')) {
      process.stdout.write(cmd.help + '\n');
      return 0;
    }
    return await cmd.main(rest);
  } catch (err) {
    if (err instanceof Aborted) return 130;
    if (err instanceof ConfigError) {
      process.stderr.write(`stackwatch: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`stackwatch: ${errorText(err)}\n`);
    if (process.env.STACKWATCH_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    return 1;
  }
}
