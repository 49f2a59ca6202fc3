// Progress for long work: a bar redrawn in place on a terminal, a plain line every few seconds otherwise
// (logs of a CI job or a cron run stay readable).

export interface ProgressOptions {
  label: string;
  totalBytes: number;
  stream?: NodeJS.WriteStream;
}

function mib(n: number): string {
  return (n / 1024 / 1024).toFixed(1);
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

export class Progress {
  private readonly started = Date.now();
  private lastDraw = 0;
  private bytes = 0;
  private events = 0;
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;

  constructor(private readonly opts: ProgressOptions) {
    this.stream = opts.stream ?? process.stderr;
    this.tty = this.stream.isTTY === true;
  }

  update(bytes: number, events: number): void {
    this.bytes = bytes;
    this.events = events;
    const now = Date.now();
    if (now - this.lastDraw < (this.tty ? 100 : 5000)) return;
    this.lastDraw = now;
    this.draw(false);
  }

  done(): void {
    this.draw(true);
  }

  private draw(final: boolean): void {
    const elapsed = (Date.now() - this.started) / 1000;
    const total = Math.max(this.opts.totalBytes, 1);
    const fraction = Math.min(1, this.bytes / total);
    const rate = elapsed > 0 ? this.events / elapsed : 0;
    const eta = fraction > 0 ? (elapsed / fraction) * (1 - fraction) : Infinity;
    const figures = `${mib(this.bytes)}/${mib(total)} MiB  ${Math.round(rate).toLocaleString('en-US')} events/s  ${final ? `done in ${duration(elapsed)}` : `ETA ${duration(eta)}`}`;
    if (this.tty) {
      const width = 30;
      const filled = Math.round(fraction * width);
      const bar = '='.repeat(Math.max(0, filled - 1)) + (filled > 0 ? '>' : '') + ' '.repeat(width - filled);
      this.stream.write(`\r${this.opts.label} [${bar}] ${String(Math.round(fraction * 100)).padStart(3)}%  ${figures}\x1b[K${final ? '\n' : ''}`);
    } else {
      this.stream.write(`${this.opts.label}: ${Math.round(fraction * 100)}%  ${this.events} events  ${figures}\n`);
    }
  }
}
