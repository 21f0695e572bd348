// Herald's browser device SDK: a real device over Herald's device protocol (version 1,
// docs/protocol.md) with Push Kit's client rules (docs/app-developers.md), for any page.
// No build step; served by Herald at /device/sdk.js. Usage:
//   const device = new HeraldDevice({ clientIds: ["1234567"] });
//   const app = device.app("1234567");
//   await app.requestEnableNotification();   // the browser's own permission prompt
//   const token = await app.getToken();      // hand it to your backend
//   device.start();
"use strict";

(function (global) {
  const PROTOCOL_VERSION = 1;
  const WS_PATH = "/device/ws";
  const SEEN_CAPACITY = 1000;
  const MAX_PROFILES = 10;
  const APP_MESSAGE_ID_WINDOW_MS = 24 * 60 * 60 * 1000;
  const RECEIPT_SWITCH_OFF = 6;
  const RECEIPT_PROFILE_MISMATCH = 144;
  // Close codes after which reconnecting cannot help (4001 is handled by re-registering).
  const CLOSE_BAD_CREDENTIALS = 4001;
  const CLOSE_UNSUPPORTED_VERSION = 4002;
  const CLOSE_REPLACED = 4004;

  /** An error with Push Kit's / Notification Kit's numeric code, like ArkTS's BusinessError. */
  class PushError extends Error {
    constructor(code, message) {
      super(`${code} ${message}`);
      this.code = code;
    }
  }

  /** http(s) base URL → ws(s) endpoint, as the Rust client does. */
  function wsUrl(base) {
    const u = new URL(base, global.location ? global.location.href : undefined);
    if (u.protocol === "ws:" || u.protocol === "wss:") return u.href;
    const scheme = u.protocol === "https:" ? "wss:" : "ws:";
    const path = u.pathname.replace(/\/+$/, "");
    return `${scheme}//${u.host}${path}${WS_PATH}`;
  }

  /** Routes a clickAction to an ability name (reference §2.4.1, §7.4). */
  function routeClick(clickAction, abilities, home) {
    const ca = clickAction || {};
    const type = ca.actionType ?? 0;
    const want = { parameters: { ...(ca.data || {}) }, action: ca.action || null, uri: ca.uri || null };
    if (type === 3) return { clear: true };
    if (type === 5) return { dial: want.parameters.tel ?? null };
    let ability = home;
    if (type === 1) {
      const byAction = want.action && abilities.find((a) => (a.actions || []).includes(want.action));
      const norm = (u) => String(u).replace(/\/+$/, "").toLowerCase();
      const byUri = want.uri && abilities.find((a) => (a.uris || []).some((u) => norm(u) === norm(want.uri)));
      ability = (byAction || byUri || { name: home }).name;
    }
    return { ability, want };
  }

  /** One app on the device: ArkTS's pushService / notificationManager calls. */
  class HeraldApp {
    constructor(device, clientId) {
      this.device = device;
      this.clientId = clientId;
      this.state = device._load(`app:${clientId}`, {
        enabled: false, asked: false, token: null, profiles: [], appMessageIds: {},
      });
      this.confirmedToken = null;
      this.tokenWaiters = [];
      this.deleteWaiters = [];
      this.receivers = {};
      this.home = { name: "EntryAbility", onCreate() {}, onNewWant() {} };
      this.abilities = [];
      this.created = new Set();
      this.shade = [];
      this.promptOpen = false;
    }

    _save() { this.device._store(`app:${this.clientId}`, this.state); }

    /** pushService.getToken(): resolves once the server has confirmed the token. */
    getToken() {
      if (this.confirmedToken) return Promise.resolve(this.confirmedToken);
      return new Promise((resolve, reject) => {
        this.tokenWaiters.push({ resolve, reject });
        this.device._send({ type: "get_token", client_id: this.clientId });
      });
    }

    /** pushService.deleteToken(): the old token is dropped with receipt 5 from now on. */
    deleteToken() {
      return new Promise((resolve, reject) => {
        this.deleteWaiters.push({ resolve, reject });
        this.device._send({ type: "delete_token", client_id: this.clientId });
      });
    }

    /** pushService.bindAppProfileId(type, id): at most 10 (1000900015). */
    async bindAppProfileId(type, id) {
      if (!id || id.length > 64) throw new PushError(401, "appProfileId must be 1 to 64 characters");
      const found = this.state.profiles.find((p) => p.id === id);
      if (found) found.type = type;
      else if (this.state.profiles.length >= MAX_PROFILES) {
        throw new PushError(1000900015, "the number of bound accounts has reached the maximum (10)");
      } else this.state.profiles.push({ type, id });
      this._save();
    }

    /** pushService.unbindAppProfileId(id). */
    async unbindAppProfileId(id) {
      this.state.profiles = this.state.profiles.filter((p) => p.id !== id);
      this._save();
    }

    /** pushService.receiveMessage(kind, callback): "DEFAULT", "IM", "VoIP", "BACKGROUND". */
    receiveMessage(kind, callback) { this.receivers[kind] = callback; }

    /**
     * notificationManager.requestEnableNotification(): the browser's own prompt.
     * Refused (now or before) → 1600004; while the prompt is open → 1600013.
     */
    async requestEnableNotification() {
      const result = await this._requestPermission().then(() => null, (e) => e);
      this.device._emit("permission", { clientId: this.clientId, enabled: this.isNotificationEnabled(), code: result ? result.code : null });
      if (result) throw result;
    }

    async _requestPermission() {
      if (this.isNotificationEnabled()) return;
      if (this.promptOpen) throw new PushError(1600013, "a notification dialog box is already displayed");
      const api = global.Notification;
      if (api && api.permission === "granted" && !this.state.asked) {
        this.state.asked = true;
        this.state.enabled = true;
        this._save();
        return;
      }
      if (this.state.asked || (api && api.permission === "denied")) {
        throw new PushError(1600004, "notification disabled: the user refused; guide them to the settings");
      }
      this.promptOpen = true;
      let allowed;
      try {
        allowed = api ? (await api.requestPermission()) === "granted" : global.confirm(`Allow app ${this.clientId} to send notifications?`);
      } finally {
        this.promptOpen = false;
      }
      this.state.asked = true;
      this.state.enabled = allowed;
      this._save();
      if (!allowed) throw new PushError(1600004, "notification disabled: the user refused");
    }

    /** notificationManager.isNotificationEnabled(). */
    isNotificationEnabled() {
      const api = global.Notification;
      return this.state.enabled && (!api || api.permission === "granted");
    }

    /** The user flips the app's switch in the settings (an on-page toggle here). */
    setNotificationEnabled(enabled) {
      this.state.enabled = !!enabled;
      if (enabled) this.state.asked = true;
      this._save();
      this.device._emit("permission", { clientId: this.clientId, enabled: this.isNotificationEnabled(), code: null });
    }

    /** Declares the home ability: { name, onCreate(want), onNewWant(want) }. */
    setHomeAbility(ability) { this.home = ability; }

    /** Declares an ability with skills: { name, actions, uris, onCreate, onNewWant }. */
    addAbility(ability) {
      this.abilities = this.abilities.filter((a) => a.name !== ability.name).concat([ability]);
    }

    /** The notifications on screen, oldest first. */
    notifications() { return this.shade.slice(); }

    /** The user taps the notification with notifyId. */
    click(notifyId) {
      const i = this.shade.map((n) => n.notifyId).lastIndexOf(notifyId);
      if (i < 0) throw new PushError(401, `no notification with notifyId ${notifyId} on screen`);
      const [shown] = this.shade.splice(i, 1);
      this.device._report(shown.messageId, "clicked");
      this.device._emit("removed", { clientId: this.clientId, messageId: shown.messageId, notifyId, reason: "clicked" });
      const route = routeClick(shown.notification.clickAction, this.abilities, this.home.name);
      if (!route.ability) return route;
      const target = route.ability === this.home.name ? this.home : this.abilities.find((a) => a.name === route.ability) || this.home;
      const callback = this.created.has(route.ability) ? "onNewWant" : "onCreate";
      this.created.add(route.ability);
      try {
        if (typeof target[callback] === "function") target[callback](route.want);
      } finally {
        this.device._emit("ability", { clientId: this.clientId, ability: route.ability, callback, want: route.want });
      }
      return { ability: route.ability, callback, want: route.want };
    }

    /**
     * messages:revoke reached the device: the newest notification with notifyId leaves
     * the screen (a tapped one already left it and is unaffected). Returns what left.
     */
    _onRevoke(notifyId) {
      const i = this.shade.map((n) => n.notifyId).lastIndexOf(notifyId);
      if (i < 0) return null;
      const [shown] = this.shade.splice(i, 1);
      this.device._emit("removed", { clientId: this.clientId, messageId: shown.messageId, notifyId, reason: "revoked" });
      return shown;
    }

    _onToken(token) {
      if (this.state.token && this.state.token !== token) this.state.profiles = [];
      this.state.token = token;
      this.confirmedToken = token;
      this._save();
      this.tokenWaiters.splice(0).forEach((w) => w.resolve(token));
      this.device._emit("token", { clientId: this.clientId, token });
    }

    _onTokenDeleted() {
      this.state.token = null;
      this.state.profiles = [];
      this.confirmedToken = null;
      this._save();
      this.deleteWaiters.splice(0).forEach((w) => w.resolve());
      this.device._emit("token_deleted", { clientId: this.clientId });
    }

    /** Push Kit's client rules, in the order the Rust SDK applies them. */
    _decide(m) {
      const n = m.payload && m.payload.notification;
      const foreground = !global.document || global.document.visibilityState === "visible";
      if (m.push_type === 6 || m.push_type === 10) {
        return { toApp: m.push_type === 6 ? "BACKGROUND" : "VoIP" };
      }
      if ((m.push_type !== 0 && m.push_type !== 2) || !n) return { passThrough: true };
      if (m.push_type === 2 && foreground) return { toApp: "IM" };
      const now = Date.now();
      for (const [id, at] of Object.entries(this.state.appMessageIds)) {
        if (now - at >= APP_MESSAGE_ID_WINDOW_MS) delete this.state.appMessageIds[id];
      }
      if (n.appMessageId && this.state.appMessageIds[n.appMessageId] !== undefined) {
        return { suppress: null, reason: "duplicate appMessageId within 24 hours" };
      }
      if (n.profileId && !this.state.profiles.some((p) => p.id === n.profileId)) {
        return { suppress: RECEIPT_PROFILE_MISMATCH, reason: "profileId does not match a bound account" };
      }
      if (n.foregroundShow === false && foreground) return { toApp: "DEFAULT" };
      if (!this.isNotificationEnabled()) return { suppress: RECEIPT_SWITCH_OFF, reason: "notification switch is off" };
      if (n.appMessageId) this.state.appMessageIds[n.appMessageId] = now;
      this._save();
      return { show: true };
    }

    _onMessage(m) {
      const d = this._decide(m);
      const n = (m.payload && m.payload.notification) || null;
      if (d.show) {
        const i = this.shade.findIndex((s) => n.notifyId !== undefined && s.notifyId === n.notifyId);
        const replaced = i >= 0 ? this.shade.splice(i, 1)[0].messageId : null;
        const shown = { messageId: m.id, notifyId: n.notifyId, notification: n, test: !!m.test };
        this.shade.push(shown);
        this.device._emit("notification", { clientId: this.clientId, shown, replaced });
        this.device._report(m.id, "shown");
      } else if ("suppress" in d) {
        this.device._emit("suppressed", { clientId: this.clientId, messageId: m.id, receipt: d.suppress, reason: d.reason });
        if (d.suppress !== null) this.device._report(m.id, "suppressed", d.suppress);
      } else if (d.toApp) {
        const data = { data: (m.payload && m.payload.extraData) || "", header: { token: m.token } };
        if (n) Object.assign(data, { messageAction: 0, notification: n });
        const payload = { type: d.toApp === "DEFAULT" ? "ALERT" : d.toApp, data: JSON.stringify(data), messageId: m.id };
        const cb = this.receivers[d.toApp];
        if (cb) cb(payload);
        this.device._emit("received", { clientId: this.clientId, kind: d.toApp, payload, handled: !!cb });
        this.device._report(m.id, "shown");
      } else {
        this.device._emit("message", { clientId: this.clientId, message: m });
        this.device._report(m.id, "shown");
      }
    }
  }

  /** One device: one WebSocket for several apps, reconnecting with backoff. */
  class HeraldDevice extends EventTarget {
    constructor(options = {}) {
      super();
      // Several nodes: an array or a comma-separated list; tried in turn, moving to the
      // next when one fails, with jittered backoff.
      const listed = typeof options.servers === "string"
        ? options.servers.split(",").map((u) => u.trim()).filter(Boolean)
        : options.servers;
      this.servers = listed && listed.length ? listed
        : [options.server || (global.location ? global.location.origin : "http://127.0.0.1:8080")];
      this.storageKey = options.storageKey || "herald-device";
      this.apps = new Map();
      (options.clientIds || []).forEach((id) => this.app(id));
      this.credential = this._load("credential", null);
      this.seen = this._load("seen", []);
      this.seenSet = new Set(this.seen);
      this.ready = false;
      this.outbox = [];
      this.step = 200;
      this.serverIndex = 0;
      this.stopped = false;
      this.socket = null;
    }

    _load(key, fallback) {
      try {
        const raw = global.localStorage && global.localStorage.getItem(`${this.storageKey}:${key}`);
        return raw ? JSON.parse(raw) : fallback;
      } catch (_) {
        return fallback;
      }
    }

    _store(key, value) {
      try { global.localStorage.setItem(`${this.storageKey}:${key}`, JSON.stringify(value)); } catch (_) { /* private mode */ }
    }

    _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

    /** The handle of one app (installed on first use). */
    app(clientId) {
      if (!this.apps.has(clientId)) this.apps.set(clientId, new HeraldApp(this, clientId));
      return this.apps.get(clientId);
    }

    start() {
      this.stopped = false;
      this._connect();
      return this;
    }

    stop() {
      this.stopped = true;
      if (this.socket) this.socket.close(1000);
    }

    _connect() {
      if (this.stopped) return;
      const url = wsUrl(this.servers[this.serverIndex % this.servers.length]);
      this.serverIndex += 1;
      let ws;
      try { ws = new WebSocket(url); } catch (e) { this._retry(String(e)); return; }
      this.socket = ws;
      ws.onopen = () => {
        const hello = { type: "hello", version: PROTOCOL_VERSION };
        if (this.credential) hello.device = this.credential;
        ws.send(JSON.stringify(hello));
      };
      ws.onmessage = (e) => this._onFrame(ws, e.data);
      ws.onclose = (e) => {
        if (this.socket !== ws) return;
        this.ready = false;
        this._emit("disconnected", { code: e.code, reason: e.reason });
        if (e.code === CLOSE_BAD_CREDENTIALS) {
          // The server does not know this browser (its data was reset): register anew.
          this.credential = null;
          this._store("credential", null);
        } else if (e.code === CLOSE_UNSUPPORTED_VERSION || e.code === CLOSE_REPLACED) {
          this.stopped = true;
          this._emit("stopped", { code: e.code, reason: e.code === CLOSE_REPLACED ? "this device is open in another tab" : "unsupported protocol version" });
          return;
        }
        this._retry(`closed with ${e.code}`);
      };
    }

    _retry(reason) {
      if (this.stopped) return;
      const delay = this.step / 2 + Math.random() * (this.step / 2);
      this.step = Math.min(this.step * 2, 10000);
      this._emit("retrying", { reason, delay });
      setTimeout(() => this._connect(), delay);
    }

    _send(frame) {
      if (this.ready && this.socket) this.socket.send(JSON.stringify(frame));
      else if (frame.type !== "get_token") this.outbox.push(frame); // tokens are asked after every welcome
    }

    _report(id, status, code) {
      const frame = { type: "report", id, status };
      if (code !== undefined) frame.code = code;
      this._send(frame);
    }

    _onFrame(ws, text) {
      let f;
      try { f = JSON.parse(text); } catch (_) { return; }
      switch (f.type) {
        case "welcome":
          if (f.secret) {
            this.credential = { id: f.device_id, secret: f.secret };
            this._store("credential", this.credential);
          }
          this.ready = true;
          this.step = 200;
          this._emit("connected", { deviceId: f.device_id, registered: !!f.secret });
          this.outbox.splice(0).filter((fr) => fr.type === "delete_token").forEach((fr) => ws.send(JSON.stringify(fr)));
          for (const id of this.apps.keys()) ws.send(JSON.stringify({ type: "get_token", client_id: id }));
          this.outbox.splice(0).forEach((fr) => ws.send(JSON.stringify(fr)));
          break;
        case "token": this.app(f.client_id)._onToken(f.token); break;
        case "token_deleted": this.app(f.client_id)._onTokenDeleted(); break;
        case "message": this._onMessage(ws, f); break;
        case "revoke": this._onRevoke(ws, f); break;
        case "error": {
          this._emit("error", f);
          if (f.code === "unknown_app") {
            for (const app of this.apps.values()) {
              const err = new PushError(1000900010, `illegal app identity: ${f.message}`);
              if (!app.confirmedToken) app.tokenWaiters.splice(0).forEach((w) => w.reject(err));
              app.deleteWaiters.splice(0).forEach((w) => w.reject(err));
            }
          }
          break;
        }
        default: break; // a newer server's frame
      }
    }

    /**
     * Records a message's or revoke command's id as seen (persisted before the ack leaves)
     * and acks it; whether it was seen before (a redelivery after a reconnect).
     */
    _seenThenAck(ws, id) {
      const duplicate = this.seenSet.has(id);
      if (!duplicate) {
        this.seen.push(id);
        this.seenSet.add(id);
        while (this.seen.length > SEEN_CAPACITY) this.seenSet.delete(this.seen.shift());
        this._store("seen", this.seen);
      }
      ws.send(JSON.stringify({ type: "ack", ids: [id] }));
      return duplicate;
    }

    _onMessage(ws, m) {
      // Ack before any report: the server records delivery first.
      if (!this._seenThenAck(ws, m.id)) this.app(m.client_id)._onMessage(m);
    }

    /** A revoke command: acked and de-duplicated by its id like a message (protocol §5). */
    _onRevoke(ws, r) {
      if (!this._seenThenAck(ws, r.id)) this.app(r.client_id)._onRevoke(r.notify_id);
    }
  }

  global.HeraldDevice = HeraldDevice;
  global.HeraldPushError = PushError;
  global.heraldRouteClick = routeClick;
})(typeof window !== "undefined" ? window : globalThis);
