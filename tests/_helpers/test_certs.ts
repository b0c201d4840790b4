/**
 * Certificates for the tests of TLS clients, made with openssl: a CA, a server certificate it
 * signed for 127.0.0.1 and localhost, and an unrelated CA (one a client must refuse).
 * @module
 */

/** Runs `cmd` in `cwd`; throws with its stderr when it fails. */
export async function run(cwd: string, cmd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(
      `${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
}

/** Why one of `commands` (each run once with its argument) cannot run here, or null. */
export async function toolsUnavailable(...commands: [string, string][]): Promise<string | null> {
  for (const [cmd, arg] of commands) {
    try {
      const ok = (await new Deno.Command(cmd, { args: [arg], stdout: "null", stderr: "null" })
        .output()).success;
      if (!ok) return `${cmd} ${arg} failed`;
    } catch (e) {
      return `${cmd} is not installed (${(e as Error).message})`;
    }
  }
  return null;
}

/** The files {@linkcode makeTestCertificates} writes. */
export interface TestCertificates {
  /** PEM of the CA that signed the server's certificate. */
  caFile: string;
  /** PEM of an unrelated CA. */
  otherCaFile: string;
  /** The server's certificate (PEM). */
  certFile: string;
  /** The server's unencrypted PKCS#8 key (PEM). */
  keyFile: string;
}

/** Makes the CAs and the server certificate in `dir` (which must exist). */
export async function makeTestCertificates(dir: string): Promise<TestCertificates> {
  const days = ["-days", "30"];
  for (const ca of ["ca", "other-ca"]) {
    await run(dir, "openssl", [
      ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", `${ca}.key`],
      ...["-out", `${ca}.pem`, ...days, "-subj", `/CN=tickpipe test ${ca}`],
    ]);
  }
  await run(dir, "openssl", [
    ...["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr"],
    ...["-subj", "/CN=localhost"],
  ]);
  await Deno.writeTextFile(`${dir}/san.ext`, "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  await run(dir, "openssl", [
    ...["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key"],
    ...["-CAcreateserial", "-out", "server.crt", ...days, "-extfile", "san.ext"],
  ]);
  return {
    caFile: `${dir}/ca.pem`,
    otherCaFile: `${dir}/other-ca.pem`,
    certFile: `${dir}/server.crt`,
    keyFile: `${dir}/server.key`,
  };
}

/** A client certificate's files ({@linkcode makeClientCertificate}). */
export interface ClientCertificate {
  /** The certificate (PEM). */
  certFile: string;
  /** Its private key (PEM; PKCS#8, encrypted when a password was given). */
  keyFile: string;
}

/**
 * Makes a client certificate `<name>.crt` for `cn`, signed by `signer` ("ca" or "other-ca", made
 * by {@linkcode makeTestCertificates} in the same `dir`), and its key `<name>.key` (encrypted
 * with `keyPassword` when given).
 */
export async function makeClientCertificate(
  dir: string,
  name: string,
  options: { signer: "ca" | "other-ca"; cn: string; keyPassword?: string },
): Promise<ClientCertificate> {
  await run(dir, "openssl", [
    ...["req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.plain.key`],
    ...["-out", `${name}.csr`, "-subj", `/CN=${options.cn}`],
  ]);
  await Deno.writeTextFile(`${dir}/client.ext`, "extendedKeyUsage=clientAuth\n");
  await run(dir, "openssl", [
    ...["x509", "-req", "-in", `${name}.csr`, "-CA", `${options.signer}.pem`],
    ...["-CAkey", `${options.signer}.key`, "-CAcreateserial", "-out", `${name}.crt`],
    ...["-days", "30", "-extfile", "client.ext"],
  ]);
  if (options.keyPassword === undefined) {
    await Deno.rename(`${dir}/${name}.plain.key`, `${dir}/${name}.key`);
  } else {
    await run(dir, "openssl", [
      ...["pkcs8", "-topk8", "-in", `${name}.plain.key`, "-out", `${name}.key`],
      ...["-passout", `pass:${options.keyPassword}`],
    ]);
    await Deno.remove(`${dir}/${name}.plain.key`);
  }
  return { certFile: `${dir}/${name}.crt`, keyFile: `${dir}/${name}.key` };
}
