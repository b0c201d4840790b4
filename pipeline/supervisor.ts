/**
 * A small process supervisor: runs `deno run -P=<set> --allow-net=... main.ts <command>`
 * children (hosts and paths derived from each child's configuration, as the launcher derives
 * them: common/permissions.ts), relays their output (`[name] line`, or JSON with a `child`
 * field under LOG_FORMAT=json), restarts them with backoff when they
 * exit unexpectedly, and stops them all cleanly (SIGTERM, then SIGKILL
 * after a grace period) on request.
 *
 * Children are stopped upstream first, in the order they were added.
 * Each child runs in its own session (`detached`), so a Ctrl-C in the
 * terminal or a group kill reaches only the supervisor, which then stops
 * the children with one SIGTERM each.
 * @module
 */

import { backoffDelay } from "../common/backoff.ts";
import { denoRunArgs, projectFiles, relayOutput } from "../common/child.ts";
import { ConfigError, readEnv } from "../common/config.ts";
import type { LogFormat, Logger } from "../common/log.ts";
import { launchFlags } from "../common/permissions.ts";

/** A child to supervise. */
export interface ChildSpec {
  /** Name used as output prefix and in logs. */
  name: string;
  /** The main.ts command (also the permission set name unless `permissionSet` is given). */
  command: string;
  /** Arguments after the command. */
  args: string[];
  /** Permission set (defaults to `command`). */
  permissionSet?: string;
  /** Extra environment (e.g. DATABASE_URL, kept out of argv). */
  env?: Record<string, string>;
  /** Restart when it exits (default true). */
  restart?: boolean;
  /** "piped": the child's stdin is kept open for {@linkcode Supervisor.send} (default "null"). */
  stdin?: "piped" | "null";
}

/** Restart policy: consecutive failures back off; a run longer than `healthyAfterMs` resets it. */
export interface RestartPolicy {
  /** First restart delay (ms). */
  initialMs: number;
  /** Max restart delay (ms). */
  maxMs: number;
  /** A run this long counts as healthy and resets the failure count (ms). */
  healthyAfterMs: number;
}

/** Default restart policy. */
export const DEFAULT_RESTART_POLICY: RestartPolicy = {
  initialMs: 500,
  maxMs: 30_000,
  healthyAfterMs: 60_000,
};

/** Exit code of a child that rejected its flags: restarting it cannot help. */
export const EXIT_USAGE = 2;

/** Next restart delay for a child that has failed `failures` times in a row (pure). */
export function restartDelay(
  failures: number,
  policy: RestartPolicy = DEFAULT_RESTART_POLICY,
): number {
  return backoffDelay(Math.max(0, failures - 1), {
    initialMs: policy.initialMs,
    maxMs: policy.maxMs,
  });
}

/** Consecutive failures after a run of `runMs` that followed `failures` failures (pure). */
export function nextFailures(
  failures: number,
  runMs: number,
  policy: RestartPolicy = DEFAULT_RESTART_POLICY,
): number {
  return runMs >= policy.healthyAfterMs ? 1 : failures + 1;
}

/** State of one supervised child. */
export interface ChildState {
  /** Spec. */
  spec: ChildSpec;
  /** Running process, if any. */
  process?: Deno.ChildProcess;
  /** Starts so far. */
  starts: number;
  /** Consecutive failures. */
  failures: number;
  /** Last exit code. */
  lastExit?: number;
  /** Why the child's loop ended for good, if it did on its own (e.g. a usage error). */
  fatal?: string;
  /** Writer of the running child's stdin (specs with `stdin: "piped"`). */
  stdin?: WritableStreamDefaultWriter<Uint8Array>;
}

/** Something that happened to a child (for dashboards and tests). */
export type SupervisorEvent =
  | { kind: "started"; child: string; pid: number; start: number }
  | { kind: "exited"; child: string; pid: number; code: number; signal: string | null }
  | { kind: "fatal"; child: string; reason: string };

/** Options for {@linkcode Supervisor}. */
export interface SupervisorOptions {
  /** Logger. */
  logger: Logger;
  /** Restart policy. */
  policy?: RestartPolicy;
  /** Grace period before SIGKILL on stop (ms, default 60 s: ingest may wait 30 s for Kafka). */
  graceMs?: number;
  /** Where child stdout lines go (default stdout). */
  write?: (line: string) => void;
  /** Where child stderr lines go (default `write` when given, else stderr). */
  writeErr?: (line: string) => void;
  /** The deno executable to run children with (default "deno" from PATH). */
  deno?: string;
  /** Absolute path of deno.json (default: this project's). */
  configPath?: string;
  /** Absolute path of main.ts (default: this project's). */
  mainPath?: string;
  /**
   * "sequential" (default): stop() stops the children one after the other in the order they
   * were added, upstream first (the simulator, then ingest, which flushes into Kafka, then the
   * sensor, whose aggregator then checkpoints what ingest flushed); "parallel": all at once.
   */
  stopOrder?: "sequential" | "parallel";
  /** Called on every child event. */
  onEvent?: (event: SupervisorEvent) => void;
  /** Format of relayed child lines (default: LOG_FORMAT). */
  format?: LogFormat;
  /**
   * The permission flags of a child (default: derived from its command, arguments and
   * environment, as the launcher derives them; TICKPIPE_KAFKA_HOSTS and PGPORT come from this
   * process's environment).
   */
  permissions?: (spec: ChildSpec) => string[];
}

/** The permission flags the launcher would give `spec` (its env over this process's). */
export function childPermissions(
  spec: ChildSpec,
  options: { env?: (name: string) => string | undefined } = {},
): string[] {
  const env = options.env ?? readEnv;
  return launchFlags(spec.command, spec.args, { env: (n) => spec.env?.[n] ?? env(n) });
}

/** Runs and supervises children. */
export class Supervisor {
  #children: ChildState[] = [];
  #stopping = false;
  #opts: SupervisorOptions;
  #done: Promise<void>[] = [];
  #wake = new Set<() => void>();
  #stopped?: Promise<void>;

  /** Creates a supervisor. */
  constructor(options: SupervisorOptions) {
    this.#opts = options;
  }

  /** Children and their state. */
  get children(): readonly ChildState[] {
    return this.#children;
  }

  /** True once stop() was called. */
  get stopping(): boolean {
    return this.#stopping;
  }

  /** Starts supervising `spec`. */
  add(spec: ChildSpec): void {
    const state: ChildState = { spec, starts: 0, failures: 0 };
    this.#children.push(state);
    this.#done.push(this.#loop(state));
  }

  #emit(event: SupervisorEvent): void {
    try {
      this.#opts.onEvent?.(event);
    } catch { /* a listener's problem is not the child's */ }
  }

  async #loop(state: ChildState): Promise<void> {
    const log = this.#opts.logger;
    const policy = this.#opts.policy ?? DEFAULT_RESTART_POLICY;
    while (!this.#stopping) {
      const started = Date.now();
      let code: number;
      let signal: string | null = null;
      let pid = 0;
      let denoFlags: string[];
      try {
        denoFlags = (this.#opts.permissions ?? childPermissions)(state.spec);
      } catch (e) {
        // A configuration the child would reject (exit 2): restarting cannot help.
        if (!(e instanceof ConfigError)) throw e;
        state.fatal = `${state.spec.name}: ${e.message}`;
        log.error("child cannot run: not starting it", { child: state.spec.name, error: e });
        this.#emit({ kind: "fatal", child: state.spec.name, reason: state.fatal });
        return;
      }
      try {
        const child = this.#spawn(state.spec, denoFlags);
        pid = child.pid;
        state.process = child;
        if (state.spec.stdin === "piped") state.stdin = child.stdin.getWriter();
        state.starts++;
        log.info("child started", { child: state.spec.name, pid, start: state.starts });
        this.#emit({ kind: "started", child: state.spec.name, pid, start: state.starts });
        const name = state.spec.name;
        const format = this.#opts.format;
        const [status] = await Promise.all([
          child.status,
          relayOutput(child.stdout, name, { write: this.#opts.write ?? defaultWrite, format }),
          relayOutput(child.stderr, name, {
            write: this.#opts.writeErr ?? this.#opts.write ?? errWrite,
            format,
            stream: "stderr",
          }),
        ]);
        code = status.code;
        signal = status.signal ?? null;
      } catch (e) {
        // Spawning failed (e.g. deno not on PATH): a failure like any other, retried with backoff.
        log.error("cannot start child", { child: state.spec.name, error: e });
        code = 1;
      }
      state.process = undefined;
      state.stdin?.close().catch(() => {});
      state.stdin = undefined;
      state.lastExit = code;
      if (pid) this.#emit({ kind: "exited", child: state.spec.name, pid, code, signal });
      if (this.#stopping) {
        log.info("child stopped", { child: state.spec.name, code, signal: signal ?? undefined });
        return;
      }
      if (state.spec.restart === false) {
        log.info("child exited", { child: state.spec.name, code });
        return;
      }
      if (code === EXIT_USAGE && state.starts <= 1) {
        state.fatal = `${state.spec.name} rejected its flags (exit ${EXIT_USAGE})`;
        log.error("child rejected its flags: not restarting", { child: state.spec.name });
        this.#emit({ kind: "fatal", child: state.spec.name, reason: state.fatal });
        return;
      }
      state.failures = nextFailures(state.failures, Date.now() - started, policy);
      const delay = restartDelay(state.failures, policy);
      log.warn("child exited unexpectedly: restarting after backoff", {
        child: state.spec.name,
        code,
        signal: signal ?? undefined,
        failures: state.failures,
        delayMs: delay,
      });
      await this.#sleep(delay);
    }
  }

  /** Sleeps `ms`, waking early when stop() is called. */
  #sleep(ms: number): Promise<void> {
    if (this.#stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake.add(done);
    });
  }

  #spawn(spec: ChildSpec, denoFlags: string[]): Deno.ChildProcess {
    const files = projectFiles();
    return new Deno.Command(this.#opts.deno ?? "deno", {
      args: denoRunArgs(spec.command, spec.args, {
        permissionSet: spec.permissionSet,
        denoFlags,
        configPath: this.#opts.configPath ?? files.configPath,
        mainPath: this.#opts.mainPath ?? files.mainPath,
      }),
      cwd: files.root,
      env: spec.env,
      stdin: spec.stdin ?? "null",
      stdout: "piped",
      stderr: "piped",
      // Own session: terminal signals and group kills go to the supervisor only, which sends
      // each child exactly one SIGTERM.
      detached: true,
    }).spawn();
  }

  /**
   * Writes `line` and a newline to the stdin of the running child `name` (a spec with
   * `stdin: "piped"`); nothing when it is not running. Write errors (it just exited) are ignored.
   */
  send(name: string, line: string): void {
    const w = this.#children.find((c) => c.spec.name === name)?.stdin;
    w?.write(enc.encode(line + "\n")).catch(() => {});
  }

  /** Stops every child (SIGTERM, SIGKILL after the grace period) and waits for them. Idempotent. */
  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    this.#stopping = true;
    for (const wake of [...this.#wake]) wake();
    const grace = this.#opts.graceMs ?? 60_000;
    const stopOne = async (c: ChildState) => {
      const p = c.process;
      if (!p) return;
      try {
        p.kill("SIGTERM");
      } catch { /* already gone */ }
      const timer = setTimeout(() => {
        this.#opts.logger.warn("child did not stop in time: killing its process group", {
          child: c.spec.name,
          pid: p.pid,
        });
        killGroup(p).catch(() => {});
      }, grace);
      try {
        await p.status;
      } finally {
        clearTimeout(timer);
      }
    };
    if (this.#opts.stopOrder === "parallel") await Promise.all(this.#children.map(stopOne));
    else for (const c of this.#children) await stopOne(c);
    await Promise.all(this.#done);
  }

  /**
   * SIGKILLs every running child's process group at once (a stop request that cuts the stop:
   * see common/signals.ts). No restart follows.
   */
  kill(): Promise<void> {
    this.#stopping = true;
    for (const wake of [...this.#wake]) wake();
    return Promise.all(
      this.#children.map((c) => c.process ? killGroup(c.process) : Promise.resolve()),
    ).then(() => {});
  }

  /** Resolves when every child loop has ended (after stop, or when no child restarts). */
  async wait(): Promise<void> {
    await Promise.all(this.#done);
  }
}

/**
 * SIGKILLs the child's whole process group (its session: the child and e.g. its aggregator).
 * Deno.kill of a group needs full run permission and `kill` needs run permission for "kill";
 * without either only the child itself is killed.
 */
async function killGroup(p: Deno.ChildProcess): Promise<void> {
  try {
    Deno.kill(-p.pid, "SIGKILL");
    return;
  } catch { /* not permitted: try kill(1) */ }
  try {
    const r = await new Deno.Command("kill", {
      args: ["-KILL", "--", `-${p.pid}`],
      stdout: "null",
      stderr: "null",
    }).output();
    if (r.success) return;
  } catch { /* not permitted either */ }
  try {
    p.kill("SIGKILL");
  } catch { /* already gone */ }
}

const enc = new TextEncoder();

/**
 * Writes a line to `file`, ignoring errors: when our stdout/stderr is a closed pipe (`| head`,
 * a pager quit, `| tee` killed by Ctrl-C) the supervisor must still stop its children cleanly.
 */
export function safeWriter(file: { writeSync(p: Uint8Array): number }): (line: string) => void {
  return (line) => {
    try {
      const bytes = enc.encode(line + "\n");
      let off = 0;
      while (off < bytes.length) off += file.writeSync(bytes.subarray(off));
    } catch { /* broken pipe: nobody reads us any more */ }
  };
}

const defaultWrite = safeWriter(Deno.stdout);
const errWrite = safeWriter(Deno.stderr);
