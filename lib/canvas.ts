/**
 * Canvas: signatures and the workflows built from them (chain, group, chord, chunks, map,
 * starmap), in Celery's wire form. One concept per file under `canvas/`.
 *
 * @module
 */

export {
  type CanvasApplyOptions,
  type CanvasSendOptions,
  fromDict,
  isSignatureLike,
  Signature,
  signature,
  type SignatureLike,
  type TaskLike,
  toDict,
} from "./canvas/signature.ts";
export {
  Chain,
  chain,
  Chord,
  chord,
  Chunks,
  chunks,
  Group,
  group,
  type HandleOf,
  type LastOf,
  pipe,
  type ResultOf,
  type ResultsOf,
  XMap,
  xmap,
  XStarmap,
  xstarmap,
} from "./canvas/types.ts";
export {
  applySignature,
  type ApplySignatureOptions,
  leafTasks,
  type ResultNode,
} from "./canvas/apply.ts";
export { registerBuiltins } from "./canvas/builtins.ts";
