// A generic webhook: one POST per batch of transitions, `{"version": 1, "alerts": [<alert document>…]}`. A webhook
// keeps no state, so it declares re-sending: the alerts still firing are posted again every
// notify.renotify_interval_s.
import { z } from 'zod';
import type { Alert } from '../core/events.ts';
import { httpUrl } from '../core/config-fields.ts';
import { defineNotifier, postJson, type Notifier } from './notifier.ts';

/** HTTP header names are tokens (RFC 9110); values hold no line breaks or NUL (undici refuses them at the first send). */
const HTTP_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const httpHeaderValue = z.string().regex(/^[^\r\n\0]*$/, { error: 'expected an HTTP header value without line breaks' });

export const WebhooksConfig = z
  .array(
    z.strictObject({
      /** Unique: what was sent is remembered per webhook name. */
      name: z.string().regex(/^[a-z0-9-]+$/, { error: 'expected a short name like chatops' }),
      url: httpUrl,
      headers: z
        .record(z.string(), httpHeaderValue)
        .superRefine((headers, ctx) => {
          for (const name of Object.keys(headers)) {
            if (!HTTP_TOKEN.test(name)) ctx.addIssue({ code: 'custom', message: "expected an HTTP header name (letters, digits and !#$%&'*+.^_`|~-)", path: [name], input: name });
          }
        })
        .default({}),
    }),
  )
  .superRefine((list, ctx) => {
    for (const [i, w] of list.entries()) {
      const first = list.findIndex((o) => o.name === w.name);
      if (first < i) ctx.addIssue({ code: 'custom', message: `the name ${JSON.stringify(w.name)} is already webhooks[${first}]'s`, path: [i, 'name'], input: w.name });
    }
  });
export type WebhooksConfig = z.output<typeof WebhooksConfig>;

export class WebhookNotifier implements Notifier {
  readonly resend?: { interval_s: number };

  /** `resendIntervalS`: post the firing alerts again this often (absent: never). */
  constructor(
    readonly name: string,
    private readonly url: string,
    private readonly headers: Record<string, string> = {},
    resendIntervalS?: number,
  ) {
    if (resendIntervalS !== undefined) this.resend = { interval_s: resendIntervalS };
  }

  send(alerts: Alert[]): Promise<void> {
    return postJson(this.url, { version: 1, alerts }, this.headers);
  }
}

export const webhooks = defineNotifier({
  name: 'webhooks',
  config: WebhooksConfig.default([]),
  example: (url) => [{ name: 'example', url }],
  // Header values that carry credentials (Authorization: Bearer …, X-Api-Key), with and without their scheme.
  secrets: (config) =>
    config.flatMap((w) =>
      Object.entries(w.headers)
        .filter(([name]) => /auth|token|key|secret|pass|cookie|signature/i.test(name))
        .flatMap(([, value]) => [value, value.replace(/^(Bearer|Basic|Token|ApiKey)\s+/i, '')]),
    ),
  create: (config, ctx) => config.map((w) => new WebhookNotifier(`webhook-${w.name}`, w.url, w.headers, ctx.renotifyIntervalS)),
});
