/**
 * The chain of errors an error wraps (kafkajs' `originalError`, the standard `cause`), walked the
 * same way by every classifier. Pure.
 * @module
 */

/** An error, or what a library threw, as the classifiers read it. */
export type ErrorLike = {
  name?: unknown;
  message?: unknown;
  code?: unknown;
  type?: unknown;
  cause?: unknown;
  originalError?: unknown;
};

/** `e` and the errors it wraps (`originalError`, else `cause`), outermost first, at most `depth`. */
export function* errorChain(e: unknown, depth = 5): Generator<ErrorLike> {
  let cur = e as ErrorLike | undefined;
  for (let i = 0; cur && typeof cur === "object" && i < depth; i++) {
    yield cur;
    cur = (cur.originalError ?? cur.cause) as ErrorLike | undefined;
  }
}
