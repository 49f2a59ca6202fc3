// amqp-connection-lost: a service lost its RabbitMQ connection, read from oslo.messaging's own log lines.
// One firing alert per outage and (host, service); the matching "Reconnected" line resolves it.
import { z } from 'zod';
import type { Alert, LogDocument } from '../core/events.ts';
import { alertTransition, fieldValue, ruleParams, type Detector, type Rule } from './detect.ts';

const Params = z.strictObject({ evidence_max: z.number().int().positive().default(20) });

/** Loss messages of oslo.messaging's rabbit driver across releases; group 1 is the broker when named. */
const LOSS = [
  /AMQP server on (\S+?) is unreachable/,
  /^Connection failed: /,
  /AMQP server (\S+?) closed the connection/,
  /A recoverable connection\/channel error occurred/,
  /Too many heartbeats missed/,
  /[Cc]onnection reset by peer/,
];
// "Reconnected … via [amqp] client" since Liberty; "Connected to AMQP server on" before it (a first connect
// logs the same words, and is ignored because no outage is open).
const RECONNECTED = /(?:Reconnected|Connected) to AMQP server on (\S+?)(?: via|\.? |$)/;

/** Only oslo.messaging's drivers log these lines (the logger was renamed from "oslo.messaging" in 2016). */
const LOGGERS = ['oslo.messaging._drivers', 'oslo_messaging._drivers'];

interface Outage {
  startedAt: string;
  broker?: string;
  firstMessage: string;
  evidence: string[];
}

export function createDetector(rule: Rule): Detector {
  const params = ruleParams(rule, Params);
  const open = new Map<string, Outage>();

  return {
    loggers: LOGGERS,
    onLog(doc: LogDocument): Alert[] {
      const host = doc.host.name;
      const service = doc.service.name;
      const group = Object.fromEntries(rule.match_by.map((k) => [k, fieldValue(doc, k) ?? '']));
      const key = JSON.stringify(group);
      const msg = doc.message;

      const reconnect = RECONNECTED.exec(msg);
      if (reconnect) {
        const outage = open.get(key);
        if (!outage) return [];
        open.delete(key);
        const seconds = (Date.parse(doc['@timestamp']) - Date.parse(outage.startedAt)) / 1000;
        return [
          alertTransition(rule, {
            status: 'resolved',
            group,
            at: doc['@timestamp'],
            startedAt: outage.startedAt,
            host,
            service,
            message: `${service} on ${host} reconnected to AMQP server ${reconnect[1]} after ${seconds.toFixed(0)}s`,
            evidence: [...outage.evidence, doc.event.id].slice(-params.evidence_max),
          }),
        ];
      }

      let loss: RegExpExecArray | null = null;
      for (const re of LOSS) if ((loss = re.exec(msg))) break;
      if (!loss) return [];
      const outage = open.get(key);
      if (outage) {
        if (outage.evidence.length < params.evidence_max) outage.evidence.push(doc.event.id);
        return [];
      }
      const broker = loss[1];
      open.set(key, { startedAt: doc['@timestamp'], broker, firstMessage: msg, evidence: [doc.event.id] });
      return [
        alertTransition(rule, {
          status: 'firing',
          group,
          at: doc['@timestamp'],
          startedAt: doc['@timestamp'],
          host,
          service,
          message: `${service} on ${host} lost its AMQP connection${broker ? ` to ${broker}` : ''}: ${msg.slice(0, 300)}`,
          evidence: [doc.event.id],
        }),
      ];
    },
  };
}
