// `stackwatch <command>`: the command table, global options and error reporting. Each command is one file.
import { ConfigError } from '../core/config.ts';
import { errorText, setLogLevel, type Level } from '../core/log.ts';
import { Aborted } from '../core/retry.ts';

export interface Command {
  name: string;
  /** Full help text, shown by `stackwatch <command> --help`. */
  help: string;
  main(args: string[]): Promise<number>;
}

/** The command table. A command's module is loaded only when it runs, so `stackwatch parse` does not pay for
 * the Kafka and Elasticsearch clients. */
const COMMANDS: { name: string; summary: string; load: () => Promise<Command> }[] = [
  { name: 'run', summary: 'run the pipeline (collectors and processors) until SIGTERM', load: async () => (await import('./run.ts')).runCommand },
  { name: 'parse', summary: 'parse log files (plain or .gz) offline and print the documents as NDJSON', load: async () => (await import('./parse.ts')).parseCommand },
  { name: 'replay', summary: 'backfill old log files (plain or .gz) through Kafka into Elasticsearch', load: async () => (await import('./replay.ts')).replayCommand },
  { name: 'detect', summary: 'run every rule over log files offline (a post-mortem) and print the alert transitions', load: async () => (await import('./detect.ts')).detectCommand },
  {
    name: 'templates',
    summary: 'mine the log templates of files offline: text with <*> for variables, count, first and last seen',
    load: async () => (await import('./templates.ts')).templatesCommand,
  },
  { name: 'trends', summary: 'capacity trends: usage, growth per day and days until full per resource', load: async () => (await import('./trends.ts')).trendsCommand },
  {
    name: 'setup',
    summary: 'create or update index templates, aliases and retention in Elasticsearch; import the Kibana dashboards',
    load: async () => (await import('./setup.ts')).setupCommand,
  },
  {
    name: 'rules',
    summary: "rules test: run the rules' own tests (rules/<id>.test.yaml); rules prove: prove their regexes linear",
    load: async () => (await import('./rules.ts')).rulesCommand,
  },
  {
    name: 'state',
    summary: "the processors' state checkpoints: open incidents and alerts, state size per rule (from Kafka)",
    load: async () => (await import('./state.ts')).stateCommand,
  },
  { name: 'demo', summary: 'replay bundled real OpenStack logs through the whole pipeline and show what it found', load: async () => (await import('./demo.ts')).demoCommand },
];

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

/** A reader that goes away (`stackwatch --help | head -1`) ends the output, not the command with a stack trace:
 * EPIPE on stdout is ignored, as `head` expects (the commands that stream their output also stop producing it:
 * cli/output.ts). Any other error on stdout stays an uncaught error. */
function ignoreClosedStdout(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
}

export async function main(argv: string[]): Promise<number> {
  ignoreClosedStdout();
  try {
    const args = takeLogLevel(argv);
    const [name, ...rest] = args;
    if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
      const topic = name === 'help' ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
      process.stdout.write((topic ? (await topic.load()).help : usage()) + '\n');
      return name === undefined ? 2 : 0;
    }
    const entry = COMMANDS.find((c) => c.name === name);
    if (!entry) {
      process.stderr.write(`stackwatch: unknown command ${JSON.stringify(name)}\n\n${usage()}\n`);
      return 2;
    }
    const cmd = await entry.load();
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
