/**
 * Listeners that cannot crash the process. An exception thrown by an `EventTarget` listener
 * is reported as an uncaught error, which ends a Deno process; a signal handler of the user's
 * (or the worker's own event sender, building a repr of hostile arguments) must not take the
 * worker down with it. As Celery's `Signal.send`, the error is handed to `onError` (logged).
 *
 * @module
 */

type Listener = EventListenerOrEventListenerObject;

/** Wraps listeners so that what they throw, or reject with, goes to `onError`. */
export class GuardedListeners {
  #wrappers = new WeakMap<Listener, Map<string, EventListener>>();
  #onError: (error: unknown, type: string) => void;

  /**
   * Creates the guard.
   *
   * @param onError Receives what a listener threw; must not throw itself.
   */
  constructor(onError: (error: unknown, type: string) => void) {
    this.#onError = onError;
  }

  /**
   * The guarded stand-in for a listener (the same one each time for the same type and phase,
   * so that `removeEventListener` finds it).
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options The listener's options (only `capture` matters).
   * @returns The stand-in.
   */
  wrap(type: string, listener: Listener, options?: boolean | EventListenerOptions): EventListener {
    const key = `${type}\0${capture(options)}`;
    let byKey = this.#wrappers.get(listener);
    if (!byKey) this.#wrappers.set(listener, byKey = new Map());
    const wrapper = byKey.get(key);
    if (!wrapper) {
      const fail = (error: unknown) => {
        try {
          this.#onError(error, type);
        } catch {
          // The error handler itself failed: nothing more can be done without crashing.
        }
      };
      // deno-lint-ignore no-explicit-any
      const guarded = function (this: unknown, event: any) {
        try {
          const r: unknown = typeof listener === "function"
            ? listener.call(this, event)
            : listener.handleEvent(event);
          if (r instanceof Promise) r.catch(fail);
        } catch (error) {
          fail(error);
        }
      };
      byKey.set(key, guarded);
      return guarded;
    }
    return wrapper;
  }

  /**
   * The stand-in made earlier for a listener, if any.
   *
   * @param type The event type.
   * @param listener The listener.
   * @param options The listener's options (only `capture` matters).
   * @returns The stand-in, or the listener itself.
   */
  find(type: string, listener: Listener, options?: boolean | EventListenerOptions): Listener {
    return this.#wrappers.get(listener)?.get(`${type}\0${capture(options)}`) ?? listener;
  }
}

const capture = (options?: boolean | EventListenerOptions) =>
  typeof options === "boolean" ? options : options?.capture === true;
