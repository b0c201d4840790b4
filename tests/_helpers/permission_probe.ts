// Run under a permission set (`deno run -P=<set> tests/_helpers/permission_probe.ts <checks...>`):
// each check tries one operation and prints `<check> allowed` or `<check> denied`.
// Checks: read:<path> write:<path> net:<host:port> env:<NAME> run:<cmd> kv:<path> (Deno.openKv)
const results: Record<string, string> = {};
for (const check of Deno.args) {
  const i = check.indexOf(":");
  const kind = check.slice(0, i);
  const arg = check.slice(i + 1);
  try {
    if (kind === "read") {
      await Deno.readFile(arg).catch((e) => {
        if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.IsADirectory) return;
        throw e;
      });
    } else if (kind === "write") {
      await Deno.writeTextFile(arg, "probe");
      await Deno.remove(arg);
    } else if (kind === "net") {
      const [hostname, port] = arg.split(":");
      try {
        (await Deno.connect({ hostname, port: Number(port) })).close();
      } catch (e) {
        if (e instanceof Deno.errors.ConnectionRefused) {
          // reached the network layer: allowed
        } else throw e;
      }
    } else if (kind === "env") Deno.env.get(arg);
    else if (kind === "run") await new Deno.Command(arg, { args: ["--version"] }).output();
    else if (kind === "kv") (await Deno.openKv(arg)).close();
    else throw new Error(`Unknown check kind "${kind}"`);
    results[check] = "allowed";
  } catch (e) {
    results[check] = e instanceof Deno.errors.NotCapable || (e as Error).name === "NotCapable"
      ? "denied"
      : `error: ${(e as Error).message}`;
  }
}
console.log(JSON.stringify(results));
