// The sqs:// URL, kombu's SQS transport options, queue names and the SQS body format, without
// a server.
import assert from "node:assert/strict";
import { decodeSqsBody, encodeSqsBody } from "../lib/brokers/_sqs_format.ts";
import {
  resolveSqsSettings,
  sqsOptionsFromTransport,
  sqsQueueName,
} from "../lib/brokers/_sqs_options.ts";
import { encodeTask } from "../lib/protocol/message.ts";

Deno.test("sqs options: kombu's broker_transport_options map to the broker's settings", () => {
  const options = sqsOptionsFromTransport({
    region: "eu-west-1",
    queue_name_prefix: "prod-",
    visibility_timeout: 3600,
    wait_time_seconds: 5,
    predefined_queues: {
      celery: {
        url: "https://sqs.eu-west-1.amazonaws.com/1/celery",
        access_key_id: "a",
        secret_access_key: "b",
      },
    },
    "sqs-creation-attributes": { KmsMasterKeyId: "alias/aws/sqs", MessageRetentionPeriod: 86400 },
  });
  const s = resolveSqsSettings("sqs://K:S@", options);
  assert.equal(s.region, "eu-west-1");
  assert.equal(s.endpoint, "https://sqs.eu-west-1.amazonaws.com");
  assert.equal(s.queueNamePrefix, "prod-");
  assert.equal(s.visibilitySeconds, 3600);
  assert.equal(s.waitTimeSeconds, 5);
  assert.equal(s.predefinedQueues.celery?.accessKeyId, "a");
  assert.deepEqual(s.creationAttributes, {
    KmsMasterKeyId: "alias/aws/sqs",
    MessageRetentionPeriod: "86400",
  });
  assert.deepEqual(s.credentials, { accessKeyId: "K", secretAccessKey: "S" });
  // kombu: a host in the URL is the endpoint (http unless is_secure).
  assert.equal(resolveSqsSettings("sqs://K:S@localhost:9324").endpoint, "http://localhost:9324");
  assert.equal(
    resolveSqsSettings("sqs://K:S@sqs.local", sqsOptionsFromTransport({ is_secure: true }))
      .endpoint,
    "https://sqs.local",
  );
  assert.equal(
    resolveSqsSettings("sqs://", sqsOptionsFromTransport({ sqs_base64_encoding: false }))
      .base64Encoding,
    false,
  );
  // camelCase names, ms for the visibility timeout.
  assert.equal(
    resolveSqsSettings("sqs://", sqsOptionsFromTransport({ visibilityTimeout: 1500 }))
      .visibilitySeconds,
    2,
  );
  assert.throws(() => sqsOptionsFromTransport({ visibility_timeout: "60" }), TypeError);
  assert.throws(() => resolveSqsSettings("sqs://", { waitTimeSeconds: 21 }), RangeError);
  assert.throws(() => resolveSqsSettings("sqs://", { maxDelaySeconds: 901 }), RangeError);
  assert.throws(() => resolveSqsSettings("redis://"), TypeError);
});

Deno.test("sqs options: queue names are renamed as kombu's entity_name does", () => {
  assert.equal(sqsQueueName("celery"), "celery");
  assert.equal(sqsQueueName("celery.pidbox"), "celery-pidbox");
  assert.equal(sqsQueueName("a:b/c@d"), "a_b_c_d");
  assert.equal(sqsQueueName("jobs.high.fifo"), "jobs-high.fifo");
  assert.equal(sqsQueueName("under_score-dash"), "under_score-dash");
});

Deno.test("sqs format: bodies are read base64 or plain, kombu's or not, as kombu reads them", () => {
  const m = encodeTask({ id: "f1", name: "tasks.add", args: [1, "é"], kwargs: {} });
  const body = encodeSqsBody(m, "celery");
  const envelope = JSON.parse(new TextDecoder().decode(Uint8Array.fromBase64(body)));
  assert.equal(envelope.properties.delivery_info.routing_key, "celery");
  assert.equal(decodeSqsBody(body).body, m.body);
  // sqs_base64_encoding = False: the JSON envelope as it is.
  const plain = encodeSqsBody(m, "celery", false);
  assert.equal(JSON.parse(plain).body, envelope.body);
  assert.deepEqual(decodeSqsBody(plain).headers, m.headers);
  // JSON that no kombu sent: the whole text is the body.
  const foreign = decodeSqsBody('{"hello": "world"}');
  assert.equal(foreign.body, '{"hello": "world"}');
  assert.deepEqual(foreign.headers, {});
  assert.throws(() => decodeSqsBody("not json"));
});
