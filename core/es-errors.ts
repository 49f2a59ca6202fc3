// Clear messages for the Elasticsearch errors an operator meets when setting up security: wrong credentials
// (HTTP 401), missing privileges (403) and a certificate that cannot be verified. The client's own messages are
// multi-line ("security_exception\n\tRoot causes:…") or say nothing about what to change. esClient rewrites the
// message of such errors in place (same class, statusCode, body and meta), before they reach the caller.
import type { errors } from '@elastic/elasticsearch';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON from Elasticsearch or our own files, read by key and checked where it matters
type Json = Record<string, any>;

/** The innermost reason of an Elasticsearch error body, on one line. */
function bodyReason(body: unknown): string | undefined {
  let e = (body as Json | undefined)?.error;
  if (typeof e === 'string') return e;
  if (!e || typeof e !== 'object') return undefined;
  while (e.caused_by) e = e.caused_by;
  return typeof e.reason === 'string' ? e.reason.replace(/\s+/g, ' ').trim() : undefined;
}

// Node's TLS verification failures (the client keeps the message, not the code).
const CERT_FAILURE =
  /unable to verify the first certificate|self[- ]signed certificate|unable to get (local )?issuer certificate|certificate has expired|certificate is not yet valid|does not match certificate's altnames|certificate signature failure|unsuitable certificate purpose|CERT_/i;
const TLS_PROTOCOL = /wrong version number|packet length too long|EPROTO|ssl3_get_record|tlsv1 alert|handshake failure/i;

/** Rewrites the message of an authentication, authorization or TLS error; returns whether it did. Idempotent. */
export function clarifyElasticsearchError(err: unknown): boolean {
  const e = err as (errors.ElasticsearchClientError & { statusCode?: number; body?: unknown; stackwatchClarified?: boolean }) | undefined;
  if (!e || typeof e !== 'object' || e.stackwatchClarified || typeof e.message !== 'string') return false;
  let message: string | undefined;
  if (e.name === 'ResponseError' && e.statusCode === 401) {
    const why = bodyReason(e.body) ?? 'the credentials were refused';
    message = `authentication failed (HTTP 401: ${why}): check elasticsearch.username and password (or password_file), or api_key (or api_key_file)`;
  } else if (e.name === 'ResponseError' && e.statusCode === 403) {
    const why = bodyReason(e.body) ?? 'forbidden';
    message = `not authorized (HTTP 403: ${why}): the user or API key lacks a privilege for this request`;
  } else if (e.name === 'ConnectionError' && CERT_FAILURE.test(e.message)) {
    message = `TLS: the server's certificate cannot be verified (${e.message}): set elasticsearch.tls.ca_file (or STACKWATCH_ES_CA_FILE) to the CA that signed it`;
  } else if (e.name === 'ConnectionError' && TLS_PROTOCOL.test(e.message)) {
    message = `TLS handshake failed (${e.message}): is the scheme of elasticsearch.url (http:// or https://) the one the cluster serves?`;
  }
  if (message === undefined) return false;
  e.message = message;
  Object.defineProperty(e, 'stackwatchClarified', { value: true, enumerable: false });
  return true;
}
