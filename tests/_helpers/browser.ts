/**
 * Headless Chromium for the dashboard's browser test and screenshots: Debian's `chromium`
 * (`apt-get install chromium`; no browser is ever downloaded) driven by puppeteer-core, with a
 * fresh profile per launch. When the browser is missing or cannot start, {@linkcode launchBrowser}
 * says why instead of throwing, so the test can skip with that reason.
 * @module
 */

import type { Browser } from "puppeteer-core";

/** Where Chromium is looked for (CHROMIUM_PATH first). */
export const CHROMIUM_CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];

/** The flags of every launch: no network of its own, no first-run work, no sandbox (root). */
export const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** A launched browser and how to end it (removes its profile). */
export interface LaunchedBrowser {
  /** The browser. */
  browser: Browser;
  /** The executable used. */
  executable: string;
  /** Closes the browser and removes its profile. */
  close(): Promise<void>;
}

function chromiumPath(): string | null {
  let env: string | undefined;
  try {
    env = Deno.env.get("CHROMIUM_PATH");
  } catch { /* no env permission */ }
  for (const p of env ? [env, ...CHROMIUM_CANDIDATES] : CHROMIUM_CANDIDATES) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not there */ }
  }
  return null;
}

/** Launches headless Chromium, or returns why it cannot (`{ skip }`). */
export async function launchBrowser(): Promise<LaunchedBrowser | { skip: string }> {
  const executable = chromiumPath();
  if (executable === null) {
    return {
      skip: `no Chromium at ${CHROMIUM_CANDIDATES.join(" or ")} (CHROMIUM_PATH unset): ` +
        `install it with "apt-get install chromium"`,
    };
  }
  let puppeteer;
  try {
    puppeteer = (await import("puppeteer-core")).default;
  } catch (e) {
    return { skip: `puppeteer-core cannot be loaded: ${(e as Error).message}` };
  }
  const profile = await Deno.makeTempDir({ prefix: "tickpipe-chromium-" });
  try {
    const browser = await puppeteer.launch({
      executablePath: executable,
      headless: true,
      args: [...CHROMIUM_FLAGS, `--user-data-dir=${profile}`],
      timeout: 60_000,
    });
    return {
      browser,
      executable,
      async close() {
        await browser.close().catch(() => {});
        await Deno.remove(profile, { recursive: true }).catch(() => {});
      },
    };
  } catch (e) {
    await Deno.remove(profile, { recursive: true }).catch(() => {});
    return { skip: `Chromium at ${executable} did not start: ${(e as Error).message}` };
  }
}
