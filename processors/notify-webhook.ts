// A generic webhook: one POST per batch of transitions, `{"version": 1, "alerts": [<alert document>…]}`.
import type { Alert } from '../core/events.ts';
import { postJson, type Notifier } from './notify.ts';

export class WebhookNotifier implements Notifier {
  constructor(
    readonly name: string,
    private readonly url: string,
    private readonly headers: Record<string, string> = {},
  ) {}

  send(alerts: Alert[]): Promise<void> {
    return postJson(this.url, { version: 1, alerts }, this.headers);
  }
}
