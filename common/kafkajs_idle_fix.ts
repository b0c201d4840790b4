/**
 * A fix for kafkajs 2.2.4's idle busy loop (kafkajs issues #1556 and #1704, fix proposed in
 * PR #1667): every broker connection's request queue re-arms a timer with a negative delay
 * (`throttledUntil` is -1) whenever it has nothing pending, so each connection wakes the event
 * loop about every millisecond, forever. A kafkajs consumer in Deno burns about half a core that
 * way while idle, and the same wake-ups steal CPU from the work while busy.
 *
 * Importing this module replaces `RequestQueue.prototype.scheduleCheckPendingRequests` with one
 * that arms no timer when nothing is pending and the connection is not throttled (the timer has
 * nothing to do then: a new request either goes out at once or, pending, re-arms it). The patch
 * applies only to the exact code it fixes: another kafkajs version is left untouched.
 * @module
 */

// deno-lint-ignore no-explicit-any
type AnyQueue = any;

import RequestQueueModule from "kafkajs/src/network/requestQueue/index.js";

const RequestQueue = RequestQueueModule as unknown as { prototype: AnyQueue };

/** Whether the fix is in place (false: this kafkajs does not have the bug's code). */
export const kafkajsIdleFixApplied: boolean = (() => {
  const proto = RequestQueue?.prototype;
  const original = proto?.scheduleCheckPendingRequests as ((this: AnyQueue) => void) | undefined;
  if (typeof original !== "function") return false;
  if ((original as { fixed?: boolean }).fixed) return true;
  const source = Function.prototype.toString.call(original);
  if (!/this\.throttledUntil - Date\.now\(\)/.test(source)) return false;
  const fixed = function (this: AnyQueue): void {
    if (this.pending.length === 0 && this.throttledUntil - Date.now() <= 0) return;
    original.call(this);
  };
  (fixed as { fixed?: boolean }).fixed = true;
  proto.scheduleCheckPendingRequests = fixed;
  return true;
})();
