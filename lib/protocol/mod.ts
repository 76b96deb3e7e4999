/**
 * Celery's wire format: task messages (protocol v2, JSON), kombu's JSON dialect, result metas,
 * exception shapes and states.
 *
 * ```ts
 * import { decodeTask, encodeTask } from "@celeriac/celeriac/protocol";
 * const message = encodeTask({ id: "1", name: "tasks.add", args: [2, 2], kwargs: {} });
 * console.assert(decodeTask(message).name === "tasks.add");
 * ```
 *
 * @module
 */

export {
  decodeTask,
  type Embed,
  encodeTask,
  type Message,
  type MessageProperties,
  type SignatureDict,
  type TaskCall,
  type TaskRequest,
} from "./message.ts";
export type { ExceptionInfo } from "./exceptions.ts";
export { parseJson, stringifyJson } from "./json.ts";
export { EXCEPTION_STATES, PROPAGATE_STATES, READY_STATES, type State } from "./states.ts";
