/**
 * Kept for importers: URL redaction now lives in the leaf `lib/_url.ts`; creating brokers and
 * backends from URLs is the scheme registry's job (`lib/transport/registry.ts`).
 *
 * @module
 */

export { redact } from "./_url.ts";
