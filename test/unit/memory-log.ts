// A state log in memory (state/store.ts's StateLog) for the unit tests of checkpoints: what a compacted topic holds,
// every message in order, read from the start each time.
import type { InMessage, KeyedMessage } from '../../core/kafka.ts';
import type { StateLog } from '../../state/store.ts';

export class MemoryLog implements StateLog {
  readonly messages: KeyedMessage[] = [];
  async send(messages: KeyedMessage[]): Promise<void> {
    this.messages.push(...messages);
  }
  async read<A>(start: () => A, add: (acc: A, m: InMessage) => void): Promise<A> {
    const acc = start();
    this.messages.forEach((m, i) => add(acc, { offset: String(i), ...m }));
    return acc;
  }
  async close(): Promise<void> {}
}
