// Browser tests of Herald's /device page: a real `herald serve`, Debian's Chromium driven
// headless by playwright-core, the notification permission granted through the browser's
// own API, a push sent through the Push Kit REST API with a PS256 JWT signed here, and a
// click that must reach the on-page ability with the push's data.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { HERALD, CHROMIUM, CHROMIUM_ARGS, freePort, waitHealthy, signJwt } from "./support.mjs";

let server, url, boot, key, context, page;
const temp = mkdtempSync(join(tmpdir(), "herald-browser-"));

async function send(token, notification) {
  const r = await fetch(`${url}/v3/${boot.project_id}/messages:send`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${signJwt(key)}`, "push-type": "0" },
    // Test messages: exempt from the MARKETING quota (2 a day) that these IM
    // notifications, downgraded without the IM right, would otherwise meet.
    body: JSON.stringify({ payload: { notification }, target: { token: [token] }, pushOptions: { testMessage: true } }),
  });
  const body = await r.json();
  assert.equal(r.status, 200, JSON.stringify(body));
  assert.equal(body.code, "80000000", JSON.stringify(body));
  return body;
}

/** `POST /v1/{clientId}/messages:revoke` for `notifyId` on `token`, as a backend withdraws it. */
async function revoke(token, notifyId) {
  const r = await fetch(`${url}/v1/${boot.client_id}/messages:revoke`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${signJwt(key)}`, "push-type": "0" },
    body: JSON.stringify({ notifyId, token: [token] }),
  });
  const body = await r.json();
  assert.equal(r.status, 200, JSON.stringify(body));
  assert.equal(body.code, "80000000", JSON.stringify(body));
  return body;
}

/** Opens the device page, records the frames on its WebSocket, and returns its token. */
async function openDevice() {
  const frames = { received: [], sent: [] };
  page.removeAllListeners("websocket");
  page.on("websocket", (ws) => {
    ws.on("framereceived", (f) => frames.received.push(JSON.parse(f.payload)));
    ws.on("framesent", (f) => frames.sent.push(JSON.parse(f.payload)));
  });
  await page.goto(`${url}/device?client_id=${boot.client_id}`);
  assert.equal(await page.evaluate(() => Notification.permission), "granted");
  await page.waitForFunction(() => document.getElementById("permission").textContent === "notifications on");
  await page.waitForFunction(() => document.getElementById("token").textContent.length >= 112);
  return { token: await page.textContent("#token"), frames };
}

/** Resolves once `predicate(frames)` holds, polling the recorded frames. */
async function until(what, predicate, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

before(async () => {
  assert.ok(existsSync(HERALD), `${HERALD} missing: run \`cargo build -p herald\` first`);
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install chromium`);
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  server = spawn(HERALD, ["serve", "--data-dir", join(temp, "data"), "--listen", `127.0.0.1:${port}`], {
    env: { ...process.env, HERALD_LOG: "warn" },
    stdio: ["ignore", "ignore", "ignore"],
  });
  await waitHealthy(url, 30000);
  boot = JSON.parse(readFileSync(join(temp, "data", "bootstrap.json"), "utf8"));
  key = JSON.parse(readFileSync(boot.service_account_file, "utf8"));
  context = await chromium.launchPersistentContext(join(temp, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  // The browser's own permission API, as a user clicking "Allow" would set it.
  await context.grantPermissions(["notifications"], { origin: url });
  page = await context.newPage();
});

after(async () => {
  if (context) await context.close();
  if (server) {
    server.kill("SIGTERM");
    await new Promise((r) => (server.exitCode !== null ? r() : server.once("exit", r)));
  }
  rmSync(temp, { recursive: true, force: true });
});

test("the page and its SDK are served by herald", async () => {
  const html = await fetch(`${url}/device`);
  assert.equal(html.status, 200);
  assert.match(html.headers.get("content-type"), /text\/html/);
  const sdk = await fetch(`${url}/device/sdk.js`);
  assert.equal(sdk.status, 200);
  assert.match(sdk.headers.get("content-type"), /javascript/);
  assert.match(await sdk.text(), /class HeraldDevice/);
});

test("a push sent through the REST API is listed and its click reaches the ability", async () => {
  const { token } = await openDevice();

  await send(token, {
    category: "IM", title: "Order shipped", body: "Your order 42 is on its way", notifyId: 77,
    clickAction: { actionType: 0, data: { orderId: "42", page: "orders" } },
  });
  const item = page.locator('#notifications li[data-notify-id="77"]');
  await item.waitFor({ timeout: 10000 });
  assert.match(await item.textContent(), /Order shipped/);

  await item.click();
  await page.waitForFunction(() => document.getElementById("ability-log").textContent.includes("onCreate"));
  const printed = await page.textContent("#ability-log");
  const [headline, ...json] = printed.split("\n");
  assert.equal(headline, "EntryAbility.onCreate(want)");
  const want = JSON.parse(json.join("\n"));
  assert.deepEqual(want, { parameters: { orderId: "42", page: "orders" }, action: null, uri: null });
  assert.equal(await item.count(), 0, "a clicked notification leaves the list");

  // The app is running now: the next tap is a warm start.
  await send(token, { category: "IM", title: "Again", body: "b", notifyId: 78, clickAction: { actionType: 0, data: { k: "v" } } });
  const again = page.locator('#notifications li[data-notify-id="78"]');
  await again.waitFor({ timeout: 10000 });
  await again.click();
  await page.waitForFunction(() => document.getElementById("ability-log").textContent.startsWith("EntryAbility.onNewWant"));

  // A profileId the page has not bound is not shown (receipt 144); bound, it is.
  await send(token, { category: "IM", title: "For 111***222", body: "b", notifyId: 79, profileId: "111***222", clickAction: { actionType: 0 } });
  await page.waitForFunction(() => document.getElementById("log").textContent.includes("receipt 144"));
  assert.equal(await page.locator('#notifications li[data-notify-id="79"]').count(), 0);
  await page.fill("#profile-id", "111***222");
  await page.click("#bind");
  await page.waitForFunction(() => document.getElementById("profiles").textContent.includes("111***222"));
  await send(token, { category: "IM", title: "For 111***222", body: "b", notifyId: 80, profileId: "111***222", clickAction: { actionType: 0 } });
  await page.locator('#notifications li[data-notify-id="80"]').waitFor({ timeout: 10000 });
});

test("a notification the sender revokes through the REST API leaves the page, and the revoke is acked", async () => {
  const { token, frames } = await openDevice();
  await send(token, { category: "IM", title: "Withdrawn soon", body: "b", notifyId: 91, clickAction: { actionType: 0 } });
  await send(token, { category: "IM", title: "Stays", body: "b", notifyId: 92, clickAction: { actionType: 0 } });
  const withdrawn = page.locator('#notifications li[data-notify-id="91"]');
  const stays = page.locator('#notifications li[data-notify-id="92"]');
  await withdrawn.waitFor({ timeout: 10000 });
  await stays.waitFor({ timeout: 10000 });

  await revoke(token, 91);
  await withdrawn.waitFor({ state: "detached", timeout: 10000 });
  assert.equal(await stays.count(), 1, "only the revoked notifyId leaves");
  assert.match(await page.textContent("#log"), /revoked by the sender: notifyId 91/);
  assert.deepEqual(await page.evaluate(() => window.heraldApp.notifications().map((n) => n.notifyId)).then((ids) => ids.filter((id) => id === 91 || id === 92)), [92]);

  // On the wire: the revoke frame came, and the page acked its id (else the server
  // redelivers it after every reconnect).
  const command = frames.received.find((f) => f.type === "revoke" && f.notify_id === 91);
  assert.ok(command, `no revoke frame among ${JSON.stringify(frames.received.map((f) => f.type))}`);
  assert.equal(command.client_id, boot.client_id);
  await until("the ack of the revoke command", () =>
    frames.sent.some((f) => f.type === "ack" && f.ids.includes(command.id)));
});
