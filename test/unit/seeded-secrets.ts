// The secrets seeded in test/fixtures/hostile/secrets/: each file holds events, a line `=== masked ===`, and the
// same events as they must come out of the masking; what `***` replaces in an event is a seeded secret. For the
// tests that check no secret survives a whole pipeline (test/integration/hostile-corpus.test.ts).
import { readdirSync } from 'node:fs';

const DIR = new URL('../fixtures/hostile/secrets/', import.meta.url);
const SEPARATOR = '\n=== masked ===\n';

/** Every seeded secret of at least 4 characters (shorter ones could be found by chance). `read` is readFileSync. */
export function seededSecrets(read: (path: URL, enc: 'utf8') => string): string[] {
  const secrets = new Set<string>();
  for (const file of readdirSync(DIR).filter((f) => f.endsWith('.log'))) {
    const [events, masked] = read(new URL(file, DIR), 'utf8')
      .replace(/\n$/, '')
      .split(SEPARATOR)
      .map((p) => p.split('\n\n'));
    events.forEach((event, i) => {
      const pieces = masked[i].split('***');
      // The pieces of the masked event stand in the event in order; what lies between two of them is a secret.
      let at = pieces[0].length;
      for (let k = 1; k < pieces.length; k++) {
        const next = k === pieces.length - 1 && pieces[k] === '' ? event.length : event.indexOf(pieces[k], at + 1);
        if (next < 0) throw new Error(`${file}: masked event ${i + 1} does not fit its event`);
        const secret = event.slice(at, next);
        if (secret.length >= 4) secrets.add(secret);
        at = next + pieces[k].length;
      }
    });
  }
  return [...secrets];
}
