// Browser test of Herald's console, per role: a real `herald serve`, Debian's Chromium
// driven headless by playwright-core, one browser context (one cookie session) per
// person. The instance admin creates an owner through the API; the owner invites three
// colleagues in the console; operations requests IM with its scenario and a sample
// message, product confirms it, the instance admin grants it; the app developer opens a
// browser device, registers it as a test device and sends it a test message from the
// form, alone; the device shows it and the report counts it; each person sees only their
// own tasks. Screenshots of every step go to target/browser-artifacts/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { TARGET, HERALD, CHROMIUM, CHROMIUM_ARGS, freePort, waitHealthy, signJwt } from "./support.mjs";

const ARTIFACTS = join(TARGET, "browser-artifacts");
let server, url, boot, browser;
const temp = mkdtempSync(join(tmpdir(), "herald-console-"));

/** The admin API as the instance admin, with the bootstrap bearer token. */
async function asAdmin(method, path, body) {
  const r = await fetch(`${url}${path}`, {
    method,
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${boot.admin_token}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = r.status === 204 ? {} : await r.json();
  assert.ok(r.ok, `${method} ${path}: ${r.status} ${JSON.stringify(data)}`);
  return data;
}

let shot = 0;
async function screenshot(page, name) {
  shot += 1;
  await page.screenshot({ path: join(ARTIFACTS, `console-${String(shot).padStart(2, "0")}-${name}.png`), fullPage: true });
}

/** A person: their own browser context (cookie jar), signed in to the console. */
async function signIn(username, password) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("dialog", (d) => d.dismiss());
  await page.goto(`${url}/console`);
  await page.fill("#user", username);
  await page.fill("#password", password);
  await page.click("#signin");
  await page.waitForFunction((u) => document.getElementById("who").textContent.startsWith(u), username);
  return { context, page };
}

async function openTab(page, tab) {
  await page.click(`nav button[data-tab="${tab}"]`);
  await page.waitForFunction((t) => document.getElementById(t).classList.contains("active"), tab);
}

/** Whether the nav shows `tab`. */
const tabShown = (page, tab) => page.locator(`nav button[data-tab="${tab}"]`).isVisible();

/** The summary row as a reader sees it: for each label, the number drawn closest to it
 * horizontally (where its text is drawn, not its box). Read from whatever the console draws (labelled cells now, tiles before),
 * so that it catches the old bug: each number sat next to the following label. */
const SUMMARY_LABELS = { sent: "sent", delivered: "delivered", shown: "shown", clicked: "clicked", suppressed: "suppressed", not_delivered: "not delivered" };
async function summaryAsRead(page) {
  return page.evaluate((names) => {
    const box = document.getElementById("summary") || document.getElementById("tiles");
    const leaves = [...box.querySelectorAll("*")].filter((e) => e.children.length === 0);
    const labels = leaves.filter((e) => names.includes(e.textContent.trim()));
    const numbers = leaves.filter((e) => /^\d+$/.test(e.textContent.trim()));
    const center = (e) => { const range = document.createRange(); range.selectNodeContents(e); const r = range.getBoundingClientRect(); return r.left + r.width / 2; };
    const read = {};
    for (const l of labels) {
      const nearest = numbers.reduce((best, n) =>
        (best === null || Math.abs(center(n) - center(l)) < Math.abs(center(best) - center(l)) ? n : best), null);
      read[l.textContent.trim()] = nearest ? Number(nearest.textContent) : null;
    }
    return read;
  }, Object.values(SUMMARY_LABELS));
}

/** Every label of the summary row reads the report's number. */
function assertSummaryRead(read, summary) {
  for (const [field, label] of Object.entries(SUMMARY_LABELS)) {
    assert.equal(read[label], summary[field], `under "${label}": ${JSON.stringify(read)} vs ${JSON.stringify(summary)}`);
  }
}

const PASSWORD = "correct horse battery staple";
const people = {
  owner: { username: "olivia", role: "owner" },
  operations: { username: "oscar", role: "operations" },
  product: { username: "paula", role: "product" },
  developer: { username: "dev", role: "app_developer" },
};
let project, app;

before(async () => {
  assert.ok(existsSync(HERALD), `${HERALD} missing: run \`cargo build -p herald\` first`);
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install chromium`);
  mkdirSync(ARTIFACTS, { recursive: true });
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  server = spawn(HERALD, ["serve", "--data-dir", join(temp, "data"), "--listen", `127.0.0.1:${port}`], {
    env: { ...process.env, HERALD_LOG: "warn" },
    stdio: ["ignore", "ignore", "ignore"],
  });
  await waitHealthy(url, 30000);
  boot = JSON.parse(readFileSync(join(temp, "data", "bootstrap.json"), "utf8"));
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });

  // The instance admin, through the API: a project with an app, four users, the owner.
  project = await asAdmin("POST", "/api/v1/projects", { name: "Shop" });
  app = await asAdmin("POST", "/api/v1/apps", { project_id: project.project_id, name: "Shop app", package_name: "com.example.shop" });
  for (const p of Object.values(people)) await asAdmin("POST", "/api/v1/users", { username: p.username, password: PASSWORD });
  await asAdmin("POST", `/api/v1/projects/${project.project_id}/members`, { username: people.owner.username, role: "owner" });
});

after(async () => {
  if (browser) await browser.close();
  if (server) {
    server.kill("SIGTERM");
    await new Promise((r) => (server.exitCode !== null ? r() : server.once("exit", r)));
  }
  rmSync(temp, { recursive: true, force: true });
});

test("each role does its part in the console, and only its part", async () => {
  // The owner invites three colleagues.
  const owner = await signIn(people.owner.username, PASSWORD);
  assert.equal(await owner.page.textContent("#role"), "role: owner");
  // The session is an HttpOnly cookie: nothing in the page's storage, nothing it can read.
  assert.deepEqual(await owner.page.evaluate(() => [localStorage.length, sessionStorage.length]), [0, 0]);
  assert.doesNotMatch(await owner.page.evaluate(() => document.cookie), /herald_session/);
  const session = (await owner.context.cookies()).find((c) => c.name === "herald_session");
  assert.ok(session && session.httpOnly && session.sameSite === "Strict", JSON.stringify(session));
  await openTab(owner.page, "members");
  for (const p of [people.operations, people.product, people.developer]) {
    await owner.page.fill("#member-user", p.username);
    await owner.page.selectOption("#member-role", p.role);
    await owner.page.click("#member-add");
    await owner.page.locator(`#members-table tr[data-member="${p.username}"]`).waitFor();
  }
  assert.match(await owner.page.textContent("#members-table"), /oscar\s*operations/);
  await screenshot(owner.page, "owner-invited-three");
  await openTab(owner.page, "rights");
  assert.equal(await owner.page.locator('button[data-action="grant"]').count(), 0, "granting is the instance admin's");

  // Operations requests IM with its scenario and a sample message.
  const ops = await signIn(people.operations.username, PASSWORD);
  for (const tab of ["members", "audit", "test", "backend", "instance"]) {
    assert.equal(await tabShown(ops.page, tab), false, `operations sees no ${tab} tab`);
  }
  await openTab(ops.page, "rights");
  await ops.page.waitForFunction(() => document.querySelectorAll("#right-name option").length > 5);
  await ops.page.selectOption("#right-name", "IM");
  await ops.page.fill("#right-scenario", "Buyers and sellers chat about an order");
  await ops.page.fill("#right-sample", "Anna: is the blue one still available?");
  await ops.page.click("#right-request");
  await ops.page.locator('#rights-table tr[data-right="IM"]').waitFor();
  assert.match(await ops.page.textContent('#rights-table tr[data-right="IM"]'), /requested/);
  assert.equal(await ops.page.locator('button[data-action="confirm"]').count(), 0, "operations does not confirm");
  await screenshot(ops.page, "operations-requested-IM");

  // Product confirms the scenario.
  const product = await signIn(people.product.username, PASSWORD);
  assert.equal(await product.page.isVisible("#request-card"), false);
  await openTab(product.page, "rights");
  assert.equal(await product.page.isVisible("#request-card"), false, "product does not request");
  const confirm = product.page.locator('button[data-right="IM"][data-action="confirm"]');
  await confirm.waitFor();
  await product.page.fill("#right-why", "chat between buyers and sellers is IM");
  await confirm.click();
  await product.page.locator('#history tr:has-text("confirm")').first().waitFor();
  assert.equal(await product.page.locator('button[data-action="grant"]').count(), 0, "product does not grant");
  await screenshot(product.page, "product-confirmed");

  // The instance admin grants it; the history says who did what, and why.
  const admin = await signIn(boot.admin_username, boot.admin_password);
  await admin.page.selectOption("#project", project.project_id);
  await openTab(admin.page, "rights");
  const grant = admin.page.locator('button[data-right="IM"][data-action="grant"]');
  await grant.waitFor();
  await admin.page.fill("#right-why", "scenario checked");
  await grant.click();
  await admin.page.locator('#rights-table tr[data-right="IM"]:has-text("granted")').waitFor();
  const history = await admin.page.evaluate(() => [...document.querySelectorAll("#history tr")].slice(1)
    .map((tr) => [...tr.children].map((td) => td.textContent)));
  const step = (action) => history.find((h) => h[1] === "IM" && h[2] === action);
  assert.equal(step("request")[3], "oscar");
  assert.match(step("request")[4], /Buyers and sellers/);
  assert.match(step("request")[5], /blue one/);
  assert.equal(step("confirm")[3], "paula");
  assert.equal(step("grant")[3], boot.admin_username);
  assert.equal(step("grant")[4], "scenario checked");
  await screenshot(admin.page, "admin-granted");
  await openTab(admin.page, "instance");
  await admin.page.waitForFunction(() => document.getElementById("instance-audit").textContent.includes("olivia"));
  for (const p of [ops, product]) assert.equal(await tabShown(p.page, "instance"), false);

  // The app developer, alone: a browser device, registered, sent a test message.
  const dev = await signIn(people.developer.username, PASSWORD);
  for (const tab of ["members", "audit", "backend", "instance"]) {
    assert.equal(await tabShown(dev.page, tab), false, `the app developer sees no ${tab} tab`);
  }
  await dev.context.grantPermissions(["notifications"], { origin: url });
  const device = await dev.context.newPage();
  await device.goto(`${url}/device?client_id=${app.client_id}`);
  await device.waitForFunction(() => document.getElementById("token").textContent.length >= 100);
  const token = await device.textContent("#token");
  await openTab(dev.page, "rights");
  assert.equal(await dev.page.isVisible("#request-card"), false, "the app developer does not request rights");
  await openTab(dev.page, "test");
  assert.equal(await dev.page.getAttribute("#device-link", "href"), `/device?client_id=${app.client_id}`);
  await dev.page.fill("#td-token", token);
  await dev.page.fill("#td-name", "my laptop");
  await dev.page.click("#td-add");
  await dev.page.locator("#test-devices tr:has-text('my laptop')").waitFor();
  await dev.page.fill("#tm-title", "First push on my device");
  await dev.page.fill("#tm-body", "Sent from the console");
  await dev.page.fill("#tm-data", '{"page": "orders"}');
  assert.match(await dev.page.textContent("#tm-json"), /"testMessage": true/);
  await dev.page.click("#tm-send");
  await dev.page.waitForFunction(() => document.getElementById("tm-result").textContent.startsWith("80000000"));
  const sentJson = JSON.parse(await dev.page.textContent("#tm-json"));
  assert.deepEqual(sentJson.target.token, [token]);
  assert.equal(sentJson.pushOptions.testMessage, true);
  assert.deepEqual(sentJson.payload.notification.clickAction.data, { page: "orders" });
  const curl = await dev.page.textContent("#tm-curl");
  assert.match(curl, new RegExp(`^curl -X POST '${url}/v3/${project.project_id}/messages:send'`));
  assert.match(curl, /Bearer <JWT>/);
  await screenshot(dev.page, "developer-sent-test-message");
  await device.locator("#notifications li", { hasText: "First push on my device" }).waitFor({ timeout: 10000 });
  await screenshot(device, "device-shows-it");

  // The report counts it, each number under its own label.
  await openTab(dev.page, "report");
  await dev.page.waitForFunction(() => document.querySelector('#funnel tr[data-stage="sent"] td:nth-child(2)')?.textContent === "1");
  await dev.page.waitForFunction(() => document.querySelector('#funnel tr[data-stage="shown"] td:nth-child(2)')?.textContent === "1", null, { timeout: 10000 });
  const report = await asAdmin("GET", `/api/v1/report?project_id=${project.project_id}`);
  assertSummaryRead(await summaryAsRead(dev.page), report.summary);
  assert.equal(await dev.page.locator("#chart-svg polyline").count(), 4);
  await screenshot(dev.page, "developer-report");

  // The checklist ticks the steps that happened, for each role.
  await openTab(dev.page, "overview");
  for (const id of ["right_requested", "right_confirmed", "right_granted", "test_device_registered", "device_token", "first_send"]) {
    await dev.page.locator(`#checklist tr[data-item="${id}"][data-done="true"]`).waitFor();
  }
  assert.equal(await dev.page.getAttribute('#checklist tr[data-item="click_reported"]', "data-done"), "false");
  await screenshot(dev.page, "developer-checklist");

  // The owner's audit log tells who did what.
  await openTab(owner.page, "audit");
  await owner.page.waitForFunction(() => document.getElementById("audit-table").textContent.includes("paula"));
  const audit = await owner.page.textContent("#audit-table");
  assert.match(audit, /test_device\.add/);
  assert.match(audit, /test_message\.send/);
  await screenshot(owner.page, "owner-audit-log");

  // Signing out ends the session: the page asks for a password again, the cookie is gone.
  await owner.page.click("#signout");
  await owner.page.locator("#login").waitFor();
  const me = await owner.page.evaluate(() => fetch("/api/v1/me").then((r) => r.status));
  assert.equal(me, 401);

  for (const p of [owner, ops, product, admin, dev]) await p.context.close();
});

test("the summary row puts each number under its own label, and the lines say why", async () => {
  // Different numbers in neighbouring columns: three tokens no device holds (sent, and
  // not delivered with receipt 5), in the bootstrap project.
  const keyFile = JSON.parse(readFileSync(boot.service_account_file, "utf8"));
  const r = await fetch(`${url}/v3/${boot.project_id}/messages:send`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${signJwt(keyFile)}`, "push-type": "0" },
    body: JSON.stringify({ payload: { notification: { category: "MARKETING", title: "t", body: "b", clickAction: { actionType: 0 } } },
      target: { token: ["A", "B", "C"].map((c) => c.repeat(112)) } }),
  });
  assert.equal((await r.json()).code, "80000000");
  const report = await asAdmin("GET", `/api/v1/report?project_id=${boot.project_id}`);
  assert.equal(report.summary.sent, 3);
  assert.equal(report.summary.delivered, 0);

  const { page, context } = await signIn(boot.admin_username, boot.admin_password);
  await page.selectOption("#project", boot.project_id);
  await openTab(page, "report");
  await page.waitForFunction(() => document.querySelector('#summary td[data-field="sent"]')?.textContent === "3");
  assertSummaryRead(await summaryAsRead(page), report.summary);
  const line = await page.evaluate(() => [...document.querySelectorAll("#lines tr")]
    .map((tr) => [...tr.children].map((td) => td.textContent))
    .find((cells) => cells[0] === "dropped" && cells[1] === "5"));
  assert.deepEqual(line.slice(0, 4), ["dropped", "5", "token invalid", "3"]);
  const reason = await page.textContent('#not-shown tr[data-reason="dropped/5"]');
  assert.match(reason, /token is invalid/);
  await screenshot(page, "admin-summary-row");
  await context.close();
});
