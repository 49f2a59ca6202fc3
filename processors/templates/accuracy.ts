// How well the miner finds templates, measured as the log-parsing literature measures it against Loghub's
// published ground truth (the unit tests and `npm run bench -- templates` share this):
//
//   - grouping accuracy (GA, Zhu et al. 2019): the fraction of lines whose predicted group holds exactly the lines
//     of their true group — a line counts only if the set of lines of its template equals the set of its label;
//   - parsing accuracy (PA, Khan et al. 2022; Loghub-2.0): the fraction of lines whose template text equals the
//     true template.
//
// Both label sets are compared after one normalisation, the same for the truth and for the miner's text
// (normaliseTemplate): blanks trimmed and runs of blanks made one (Loghub-2.0's "DS" rule), and a run of variables
// joined by nothing, a blank or one of `.:-/@#` written as one `<*>` (Loghub-2.0's "DV"/"CV" rules merge `<*><*>`,
// `<*>.<*>`, `<*>:<*>`, `<*>/<*>`, `<*>@<*>`, `<*>#<*>`; `-` and a blank are added here). The miner writes its
// templates so already (mask.ts): the normalisation never changes them, it reconciles the two label sets — the
// original writes a float `<*>.<*>` where Loghub-2.0's corrected labels write `<*>`, and both write a timestamp
// `<*>-<*>-<*> <*>:<*>:<*>`. `strictPA` compares with the blank rule alone.
//
// The lines go through the pipeline's own code: the file as collected (file-name prefix and CRLF included),
// assembled, parsed into documents (processors/parse-log.ts), and each document's message mined with its logger
// as the first split — what the processor does.
import { EventAssembler, LineSplitter, type AssembledEvent } from '../../collectors/logs/assemble.ts';
import { toRawEvent } from '../../collectors/openstack-logs.ts';
import type { LogDocument } from '../../core/events.ts';
import { parseLogEvent } from '../parse-log.ts';
import { mergeVariables } from './mask.ts';
import { Miner, templateGroup, type MinerOptions, type Template } from './miner.ts';

/** RFC 4180 CSV (quoted fields, doubled quotes, CRLF), as Loghub's structured files are written. */
export function parseCsv(text: string): Record<string, string>[] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') ((field += '"'), i++);
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') (row.push(field), (field = ''));
    else if (c === '\n') (row.push(field.replace(/\r$/, '')), rows.push(row), (row = []), (field = ''));
    else field += c;
  }
  if (field || row.length) (row.push(field), rows.push(row));
  const [head, ...body] = rows;
  return body.map((r) => Object.fromEntries(head.map((h, i) => [h, r[i]])));
}

/** Blanks only: trimmed, each run one space. */
export function normaliseBlanks(template: string): string {
  return template.trim().split(/\s+/).join(' ');
}

/** The normalisation both sides of PA go through (see the top of this file). */
export function normaliseTemplate(template: string): string {
  return mergeVariables(normaliseBlanks(template));
}

/** GA: lines whose predicted group is exactly their true group, over all lines. */
export function groupingAccuracy(truth: readonly string[], predicted: readonly string[]): number {
  if (truth.length !== predicted.length) throw new Error(`${truth.length} labels, ${predicted.length} predictions`);
  const trueSize = new Map<string, number>();
  for (const t of truth) trueSize.set(t, (trueSize.get(t) ?? 0) + 1);
  const groups = new Map<string, number[]>();
  predicted.forEach((p, i) => (groups.get(p) ?? groups.set(p, []).get(p)!).push(i));
  let correct = 0;
  for (const lines of groups.values()) {
    const label = truth[lines[0]];
    if (lines.every((i) => truth[i] === label) && trueSize.get(label) === lines.length) correct += lines.length;
  }
  return correct / truth.length;
}

/** PA: lines whose template equals the truth's after `normalise`. */
export function parsingAccuracy(truth: readonly string[], predicted: readonly string[], normalise = normaliseTemplate): number {
  if (truth.length !== predicted.length) throw new Error(`${truth.length} labels, ${predicted.length} predictions`);
  return truth.filter((t, i) => normalise(t) === normalise(predicted[i])).length / truth.length;
}

/** The documents of a log file's bytes, as `stackwatch parse` makes them (one per event, in file order). */
export function documentsOf(data: Buffer, path: string): LogDocument[] {
  const events: AssembledEvent[] = [];
  const assembler = new EventAssembler({ maxEventBytes: 1 << 20 }, (e) => events.push(e));
  const splitter = new LineSplitter(
    0,
    1 << 20,
    (o, t, cut, plain) => assembler.push(o, t, cut, plain),
    (u) => {
      throw new Error(`${path}: unusable line at byte ${u.offset}: ${u.reason}`);
    },
  );
  splitter.write(data);
  splitter.end();
  assembler.flush();
  events.sort((a, b) => a.offset - b.offset);
  return events.map((e) => parseLogEvent(toRawEvent(e, 'loghub', path, 'f', '1970-01-01T00:00:00.000Z'), { timezone: 'UTC' }));
}

export interface Mined {
  /** Each line's template when it was mined (what its document carries). */
  online: Template[];
  /** Each line's template once every line was mined (how Loghub evaluates offline parsers). */
  final: Template[];
  miner: Miner;
}

/** Mines the documents' messages in order. */
export function mine(docs: readonly LogDocument[], options?: MinerOptions): Mined {
  const miner = new Miner(options);
  const online = docs.map((d) => miner.add(d.message, { group: templateGroup(d), time: d['@timestamp'] }));
  const final = docs.map((d, i) => miner.match(d.message, templateGroup(d)) ?? online[i]);
  return { online, final, miner };
}

export interface Score {
  GA: number;
  PA: number;
  /** PA with blanks normalised only. */
  strictPA: number;
}

export function score(truth: readonly string[], predicted: readonly Template[]): Score {
  const texts = predicted.map((p) => p.text);
  return {
    GA: groupingAccuracy(
      truth,
      predicted.map((p) => p.id),
    ),
    PA: parsingAccuracy(truth, texts),
    strictPA: parsingAccuracy(truth, texts, normaliseBlanks),
  };
}

/** The templates where the prediction and the truth part, with how many lines each: for a report. */
export function misses(truth: readonly string[], predicted: readonly Template[]): { truth: string; predicted: string; lines: number }[] {
  const count = new Map<string, { truth: string; predicted: string; lines: number }>();
  truth.forEach((t, i) => {
    const p = predicted[i].text;
    if (normaliseTemplate(t) === normaliseTemplate(p)) return;
    const key = `${t}\u0000${p}`;
    const m = count.get(key) ?? count.set(key, { truth: t, predicted: p, lines: 0 }).get(key)!;
    m.lines++;
  });
  return [...count.values()].sort((a, b) => b.lines - a.lines);
}
