// What the browser tests share: where the herald binary and Debian's Chromium are, how
// Chromium is started, a free port, waiting for /healthz, and a backend's PS256 JWT.
import { createSign, constants } from "node:crypto";
import { createServer } from "node:net";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const TARGET = resolve(here, "../..", process.env.CARGO_TARGET_DIR || "target");
export const HERALD = process.env.HERALD_BIN || join(TARGET, "debug/herald");
export const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const HUAWEI_AUD = "https://oauth-login.cloud.huawei.com/oauth2/v3/token";

export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

export async function waitHealthy(base, deadlineMs) {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.ok) return;
    } catch (_) { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error("herald serve did not become healthy");
    await new Promise((r) => setTimeout(r, 100));
  }
}

const b64url = (buf) => Buffer.from(buf).toString("base64url");

/** A PS256 JWT from a Huawei-layout service-account key file, as a backend signs it. */
export function signJwt(keyFile) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: "PS256", typ: "JWT", kid: keyFile.key_id }));
  const claims = b64url(JSON.stringify({ iss: keyFile.sub_account, aud: HUAWEI_AUD, iat: now, exp: now + 3600 }));
  const signer = createSign("sha256");
  signer.update(`${header}.${claims}`);
  const sig = signer.sign({ key: keyFile.private_key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
  return `${header}.${claims}.${b64url(sig)}`;
}
