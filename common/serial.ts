/**
 * A serial queue: tasks run one at a time, in the order they were given; a task that fails
 * rejects its own promise and does not stop the next.
 * @module
 */

/** Runs `fn` after every task given before it has settled; resolves or rejects with its result. */
export type Serial = <T>(fn: () => T | Promise<T>) => Promise<T>;

/** Creates an empty serial queue. */
export function serialQueue(): Serial {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(fn: () => T | Promise<T>): Promise<T> => {
    const p = tail.then(fn);
    tail = p.catch(() => {});
    return p;
  };
}
