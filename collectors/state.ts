// Where a collector remembers how far it got, saved by an emission's commit once Kafka has acknowledged it: per
// file identity, the byte offset up to which Kafka has acknowledged every event; or a poller's own state (the
// Zabbix item clocks). Written atomically (temp file + rename), so a crash leaves the old or the new checkpoint,
// never half of one.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { issueText } from '../core/schema.ts';

const CheckpointFile = z.object({
  v: z.literal(1),
  files: z.record(z.string(), z.object({ path: z.string(), offset: z.number().int().nonnegative(), done: z.boolean().optional() })),
});
export type Checkpoint = z.infer<typeof CheckpointFile>['files'][string];

export class CheckpointStore {
  private readonly path: string;
  private files: Record<string, Checkpoint> = {};

  constructor(dir: string, name: string) {
    mkdirSync(dir, { recursive: true });
    this.path = join(dir, `${name}.checkpoints.json`);
    try {
      this.files = CheckpointFile.parse(JSON.parse(readFileSync(this.path, 'utf8'))).files;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${this.path}: unreadable checkpoint file (${(err as Error).message}); move it away to start over`);
    }
  }

  get(fileId: string): Checkpoint | undefined {
    return this.files[fileId];
  }

  set(fileId: string, cp: Checkpoint): void {
    this.files[fileId] = cp;
  }

  save(): void {
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, JSON.stringify({ v: 1, files: this.files }));
    renameSync(tmp, this.path);
  }
}

/** A collector's state other than file offsets (the Zabbix collector's per-item clocks), in one JSON file
 * validated by its schema and written atomically. */
export class StateFile<S extends z.ZodType> {
  readonly path: string;

  constructor(
    dir: string,
    name: string,
    private readonly schema: S,
  ) {
    mkdirSync(dir, { recursive: true });
    this.path = join(dir, `${name}.state.json`);
  }

  /** The saved state, or undefined when there is none yet. */
  load(): z.infer<S> | undefined {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const parsed = this.schema.safeParse(JSON.parse(text));
    if (!parsed.success) throw new Error(`${this.path}: unreadable state file (${issueText(parsed.error)}); move it away to start over`);
    return parsed.data;
  }

  save(state: z.infer<S>): void {
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, JSON.stringify(state));
    renameSync(tmp, this.path);
  }
}

/** What a collector remembers, as its context hands it: files named after the component and an instance of it
 * (a host, a Zabbix server) in a directory of its configuration (checkpoint_dir). Nothing here decides when they
 * are saved: an emission's commit does, once Kafka has acknowledged the emission (collectors/emitter.ts). */
export class CollectorState {
  constructor(readonly component: string) {}

  /** File offsets by file identity: `<dir>/<component>-<instance>.checkpoints.json`. */
  checkpoints(dir: string, instance: string): CheckpointStore {
    return new CheckpointStore(dir, this.fileName(instance));
  }

  /** A poller's own state, validated by `schema`: `<dir>/<component>-<instance>.state.json`. */
  file<S extends z.ZodType>(dir: string, instance: string, schema: S): StateFile<S> {
    return new StateFile(dir, this.fileName(instance), schema);
  }

  private fileName(instance: string): string {
    // A slash would leave the directory; anything else is kept, so a checkpoint keeps its name across versions.
    return `${this.component}-${instance.replace(/[/\0]/g, '_')}`;
  }
}
