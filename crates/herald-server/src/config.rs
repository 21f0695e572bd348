//! Typed, layered configuration: defaults → TOML file → `HERALD_*` environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Everything `herald serve` can be told. `Debug` never prints secrets (there are none
/// here yet; keys and passwords live in the data directory, not the config).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded database, key file and bootstrap file live.
    pub data_dir: PathBuf,
    /// The store: empty for the embedded SQLite file `herald.db` in `data_dir`,
    /// `sqlite:PATH`, or `postgres://user@host/db` (shared by any number of nodes; an
    /// optional `schema=NAME` parameter keeps Herald's tables in that schema).
    pub store: String,
    /// The bus between nodes: empty for none (one node, or nodes that learn of each
    /// other's messages only when a device next reads its queue), or `nats://host:port`.
    pub bus: String,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Base URL that backends and devices use to reach this server. Empty: derived from
    /// the bound address (`http://127.0.0.1:PORT` for a wildcard bind).
    pub public_url: String,
    /// `full` (survives power loss) or `normal` (survives a process crash).
    pub sqlite_synchronous: String,
    /// Seconds between WebSocket pings to each device.
    pub ping_interval_secs: u64,
    /// Seconds a device may stay silent (no pong, no frame) before it is dropped.
    pub idle_timeout_secs: u64,
    /// Seconds between sweeps that expire queued messages whose TTL ended.
    pub expiry_sweep_secs: u64,
    /// Messages buffered per connected device before the gateway falls back to the store.
    pub device_queue: usize,
    /// Seconds a graceful shutdown waits for in-flight work.
    pub shutdown_grace_secs: u64,
    /// Time zone whose natural days the daily quotas count: `UTC`, an IANA name
    /// (`Asia/Shanghai`) or an offset (`+08:00`).
    pub quota_time_zone: String,
    /// Default daily total per app per device before device-level control (receipt 102).
    pub device_daily_total: u32,
    /// Default send rate per app, requests per second (HTTP 503 past it).
    pub send_rate_per_sec: u32,
    /// Test messages per project per day (receipt 256 past it).
    pub test_messages_per_day: u32,
    /// Refreshes per widget (`formId`) per device per day (receipt 262 past it).
    pub widget_daily_limit: u32,
    /// Milliseconds receipts for one endpoint gather before a callback that is not yet
    /// full (100 statuses) is sent.
    pub receipt_batch_window_ms: u64,
    /// Longest wait between retries of a failed receipt callback, in seconds.
    pub receipt_retry_cap_secs: u64,
    /// Seconds a receipt is retried before it is dropped (counted and logged).
    pub receipt_retry_for_secs: u64,
    /// Seconds a receipt callback may take before it counts as failed.
    pub receipt_timeout_secs: u64,
    /// Refuse `http://` receipt callback URLs, as Push Kit does.
    pub receipt_require_https: bool,
    /// Seconds a delivered message's receipt waits for the device's report (shown → 0,
    /// not shown → 6, 144 …) before 0 is posted: each message gets one final receipt.
    pub receipt_report_wait_secs: u64,
    /// Days delivered and ended messages (with their deliveries) are kept.
    pub retention_messages_days: f64,
    /// Days sent and dropped receipts are kept.
    pub retention_receipts_days: f64,
    /// Days the push report's hourly counters are kept.
    pub retention_report_days: f64,
    /// Days a device may stay away before it and its tokens are forgotten.
    pub retention_idle_devices_days: f64,
    /// Days audit log entries are kept.
    pub retention_audit_days: f64,
    /// Seconds between pruning rounds.
    pub prune_every_secs: u64,
    /// Records of each kind one pruning round deletes at most.
    pub prune_batch: usize,
    /// PEM certificate chain: with `tls_key`, everything is served over TLS (rustls).
    /// Empty: plain HTTP.
    pub tls_cert: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for `tls_cert`.
    pub tls_key: String,
    /// Client addresses that may read `/metrics` without the admin token (loopback by
    /// default); any address may read it with `Authorization: Bearer <admin token>`.
    pub metrics_allow: Cidrs,
    /// What a stranger may cost the node: per-address limits, timeouts, caps.
    pub limits: Limits,
    /// Image pre-verification (`images:verify`), the `[images]` table.
    pub images: ImagesConfig,
    /// Sessions of the admin API and the console, the `[auth]` table.
    pub auth: AuthConfig,
}

/// `[auth]`: how long sign-ins last.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Seconds a console session (cookie) may go unused before it ends.
    pub session_idle_secs: u64,
    /// Seconds a console session lasts at most, however busy.
    pub session_max_secs: u64,
    /// Seconds a bearer token from `POST /api/v1/sessions` lasts.
    pub token_ttl_secs: u64,
    /// Mark the session cookie `Secure` even without `tls_cert` (Herald behind a
    /// TLS-terminating proxy). With `tls_cert` it is always `Secure`.
    pub secure_cookie: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_idle_secs: 1_800,
            session_max_secs: 43_200,
            token_ttl_secs: 86_400,
            secure_cookie: false,
        }
    }
}

/// `[images]`: how `images:verify` checks an image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ImagesConfig {
    /// Also download the image and check that it is a PNG, JPEG or BMP of at most
    /// 512 KB. Off by default: the server then fetches URLs its API callers name.
    pub fetch: bool,
    /// Seconds a download may take (connection included).
    pub fetch_timeout_secs: u64,
    /// A PEM file of CA certificates to trust for image downloads besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Calls per minute per app (v1) or project (v2) before `83010002`.
    pub verify_per_minute: u32,
    /// Seconds a `downloadUrl` stays valid (`expireTime`).
    pub verified_for_secs: u64,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            fetch: false,
            fetch_timeout_secs: 10,
            ca_file: None,
            verify_per_minute: 60,
            verified_for_secs: 86_400,
        }
    }
}

/// The `[limits]` section: what any one client address (and the world at large) may
/// cost the node. On by default; `exempt` lifts the per-address limits for trusted
/// networks (load tests, a NAT full of devices).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// CIDRs exempt from the per-address limits (not from the global caps).
    pub exempt: Cidrs,
    /// Header naming the client address, set by a trusted reverse proxy (e.g.
    /// `X-Forwarded-For`, whose last entry is used). Empty: the TCP peer address. Set it
    /// only when every connection comes through that proxy.
    pub trusted_proxy_header: String,
    /// Open TCP connections in all (HTTP and device WebSockets).
    pub max_connections: usize,
    /// Open TCP connections per client address.
    pub connections_per_addr: usize,
    /// Open device WebSockets per client address.
    pub device_connections_per_addr: usize,
    /// Device registrations (`hello` without a credential) per address: a burst …
    pub registrations_burst: u32,
    /// … then this many per hour.
    pub registrations_per_hour: u32,
    /// Password checks (argon2, ~19 MiB each) running at once; more are answered 429.
    pub login_concurrency: usize,
    /// Failed logins per address before back-off …
    pub login_failures_burst: u32,
    /// … then one more attempt per this many seconds.
    pub login_failure_cooldown_secs: u64,
    /// Failed logins per user name (from all addresses) before back-off …
    pub user_login_failures_burst: u32,
    /// … then one more attempt per this many seconds.
    pub user_login_failure_cooldown_secs: u64,
    /// Seconds a client has to send a request's headers (and, with TLS, finish the
    /// handshake); also how long an idle keep-alive connection is kept.
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a whole request body.
    pub body_timeout_secs: u64,
    /// Seconds an HTTP connection may move no bytes at all before it is closed.
    pub http_idle_timeout_secs: u64,
    /// Verified JWTs remembered (each until its `exp`).
    pub jwt_cache_entries: usize,
    /// Client addresses whose rate-limit state is remembered (least recently used are
    /// forgotten beyond this).
    pub tracked_addresses: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            exempt: Cidrs::default(),
            trusted_proxy_header: String::new(),
            max_connections: 19_000,
            connections_per_addr: 256,
            device_connections_per_addr: 128,
            registrations_burst: 50,
            registrations_per_hour: 120,
            login_concurrency: 2,
            login_failures_burst: 5,
            login_failure_cooldown_secs: 60,
            user_login_failures_burst: 20,
            user_login_failure_cooldown_secs: 15,
            header_read_timeout_secs: 10,
            body_timeout_secs: 30,
            http_idle_timeout_secs: 60,
            jwt_cache_entries: 65_536,
            tracked_addresses: 65_536,
        }
    }
}

/// A list of CIDRs (`10.0.0.0/8`, `::1/128`; a bare address is a single host), written
/// as a TOML array or as one comma-separated string (as in the environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cidrs(pub Vec<IpNet>);

impl Cidrs {
    /// `127.0.0.0/8` and `::1/128`.
    pub fn loopback() -> Cidrs {
        Cidrs(vec![
            "127.0.0.0/8".parse().expect("valid CIDR"),
            "::1/128".parse().expect("valid CIDR"),
        ])
    }

    pub fn contains(&self, ip: &std::net::IpAddr) -> bool {
        let ip = canonical_ip(*ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The list as `herald config default` writes it.
    pub fn to_toml(&self) -> String {
        let items: Vec<String> = self.0.iter().map(|n| format!("\"{n}\"")).collect();
        format!("[{}]", items.join(", "))
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, as a dual-stack socket reports IPv4
/// peers) as the IPv4 address it is.
pub fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

impl std::str::FromStr for Cidrs {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidrs, String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(parse_cidr)
            .collect::<Result<Vec<_>, _>>()
            .map(Cidrs)
    }
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| format!("{s:?} is not an address or CIDR"))
}

impl Serialize for Cidrs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|n| n.to_string()))
    }
}

impl<'de> Deserialize<'de> for Cidrs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cidrs, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            One(String),
            Many(Vec<String>),
        }
        let text = match Written::deserialize(d)? {
            Written::One(s) => s,
            Written::Many(v) => v.join(","),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./herald-data"),
            store: String::new(),
            bus: String::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: String::new(),
            sqlite_synchronous: "full".into(),
            ping_interval_secs: 30,
            idle_timeout_secs: 90,
            expiry_sweep_secs: 5,
            device_queue: 256,
            shutdown_grace_secs: 10,
            quota_time_zone: "UTC".into(),
            device_daily_total: herald_core::quota::DEVICE_DAILY_TOTAL,
            send_rate_per_sec: herald_core::quota::SEND_RATE_PER_SEC,
            test_messages_per_day: herald_core::quota::TEST_MESSAGES_PER_DAY,
            widget_daily_limit: herald_core::quota::WIDGET_REFRESHES_PER_DAY,
            receipt_batch_window_ms: 200,
            receipt_retry_cap_secs: 300,
            receipt_retry_for_secs: 86_400,
            receipt_timeout_secs: 10,
            receipt_require_https: false,
            receipt_report_wait_secs: 10,
            retention_messages_days: 7.0,
            retention_receipts_days: 7.0,
            retention_report_days: 90.0,
            retention_idle_devices_days: 270.0,
            retention_audit_days: 365.0,
            prune_every_secs: 10,
            prune_batch: 2_000,
            tls_cert: String::new(),
            tls_key: String::new(),
            metrics_allow: Cidrs::loopback(),
            limits: Limits::default(),
            images: ImagesConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

fn parse<T: std::str::FromStr>(var: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| ConfigError::Env {
        var: var.to_owned(),
        message: e.to_string(),
    })
}

impl Limits {
    /// `HERALD_LIMITS_<KEY>`: `key` is the upper-case key (`EXEMPT`, `MAX_CONNECTIONS`…).
    fn apply_env(&mut self, var: &str, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "EXEMPT" => self.exempt = parse(var, value)?,
            "TRUSTED_PROXY_HEADER" => self.trusted_proxy_header = value.trim().to_owned(),
            "MAX_CONNECTIONS" => self.max_connections = parse(var, value)?,
            "CONNECTIONS_PER_ADDR" => self.connections_per_addr = parse(var, value)?,
            "DEVICE_CONNECTIONS_PER_ADDR" => self.device_connections_per_addr = parse(var, value)?,
            "REGISTRATIONS_BURST" => self.registrations_burst = parse(var, value)?,
            "REGISTRATIONS_PER_HOUR" => self.registrations_per_hour = parse(var, value)?,
            "LOGIN_CONCURRENCY" => self.login_concurrency = parse(var, value)?,
            "LOGIN_FAILURES_BURST" => self.login_failures_burst = parse(var, value)?,
            "LOGIN_FAILURE_COOLDOWN_SECS" => self.login_failure_cooldown_secs = parse(var, value)?,
            "USER_LOGIN_FAILURES_BURST" => self.user_login_failures_burst = parse(var, value)?,
            "USER_LOGIN_FAILURE_COOLDOWN_SECS" => {
                self.user_login_failure_cooldown_secs = parse(var, value)?
            }
            "HEADER_READ_TIMEOUT_SECS" => self.header_read_timeout_secs = parse(var, value)?,
            "BODY_TIMEOUT_SECS" => self.body_timeout_secs = parse(var, value)?,
            "HTTP_IDLE_TIMEOUT_SECS" => self.http_idle_timeout_secs = parse(var, value)?,
            "JWT_CACHE_ENTRIES" => self.jwt_cache_entries = parse(var, value)?,
            "TRACKED_ADDRESSES" => self.tracked_addresses = parse(var, value)?,
            _ => {
                return Err(ConfigError::Env {
                    var: var.to_owned(),
                    message: "no such key in [limits]".into(),
                });
            }
        }
        Ok(())
    }
}

/// A configuration file or variable could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid value for {var}: {message}")]
    Env { var: String, message: String },
}

impl Config {
    /// Defaults, then the TOML file (if given), then `HERALD_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Toml {
                    path: path.to_owned(),
                    source,
                })?
            }
            None => Config::default(),
        };
        for (var, value) in env {
            config.apply_env(&var, &value)?;
        }
        Ok(config)
    }

    fn apply_env(&mut self, var: &str, value: &str) -> Result<(), ConfigError> {
        match var {
            "HERALD_DATA_DIR" => self.data_dir = PathBuf::from(value),
            "HERALD_STORE" => self.store = value.to_owned(),
            "HERALD_BUS" => self.bus = value.to_owned(),
            "HERALD_LISTEN" => self.listen = parse(var, value)?,
            "HERALD_PUBLIC_URL" => self.public_url = value.to_owned(),
            "HERALD_SQLITE_SYNCHRONOUS" => self.sqlite_synchronous = value.to_owned(),
            "HERALD_PING_INTERVAL_SECS" => self.ping_interval_secs = parse(var, value)?,
            "HERALD_IDLE_TIMEOUT_SECS" => self.idle_timeout_secs = parse(var, value)?,
            "HERALD_EXPIRY_SWEEP_SECS" => self.expiry_sweep_secs = parse(var, value)?,
            "HERALD_DEVICE_QUEUE" => self.device_queue = parse(var, value)?,
            "HERALD_SHUTDOWN_GRACE_SECS" => self.shutdown_grace_secs = parse(var, value)?,
            "HERALD_QUOTA_TIME_ZONE" => self.quota_time_zone = value.to_owned(),
            "HERALD_DEVICE_DAILY_TOTAL" => self.device_daily_total = parse(var, value)?,
            "HERALD_SEND_RATE_PER_SEC" => self.send_rate_per_sec = parse(var, value)?,
            "HERALD_TEST_MESSAGES_PER_DAY" => self.test_messages_per_day = parse(var, value)?,
            "HERALD_WIDGET_DAILY_LIMIT" => self.widget_daily_limit = parse(var, value)?,
            "HERALD_RECEIPT_BATCH_WINDOW_MS" => self.receipt_batch_window_ms = parse(var, value)?,
            "HERALD_RECEIPT_RETRY_CAP_SECS" => self.receipt_retry_cap_secs = parse(var, value)?,
            "HERALD_RECEIPT_RETRY_FOR_SECS" => self.receipt_retry_for_secs = parse(var, value)?,
            "HERALD_RECEIPT_TIMEOUT_SECS" => self.receipt_timeout_secs = parse(var, value)?,
            "HERALD_RECEIPT_REQUIRE_HTTPS" => self.receipt_require_https = parse(var, value)?,
            "HERALD_RECEIPT_REPORT_WAIT_SECS" => self.receipt_report_wait_secs = parse(var, value)?,
            "HERALD_RETENTION_MESSAGES_DAYS" => self.retention_messages_days = parse(var, value)?,
            "HERALD_RETENTION_RECEIPTS_DAYS" => self.retention_receipts_days = parse(var, value)?,
            "HERALD_RETENTION_REPORT_DAYS" => self.retention_report_days = parse(var, value)?,
            "HERALD_RETENTION_IDLE_DEVICES_DAYS" => {
                self.retention_idle_devices_days = parse(var, value)?
            }
            "HERALD_RETENTION_AUDIT_DAYS" => self.retention_audit_days = parse(var, value)?,
            "HERALD_AUTH_SESSION_IDLE_SECS" => self.auth.session_idle_secs = parse(var, value)?,
            "HERALD_AUTH_SESSION_MAX_SECS" => self.auth.session_max_secs = parse(var, value)?,
            "HERALD_AUTH_TOKEN_TTL_SECS" => self.auth.token_ttl_secs = parse(var, value)?,
            "HERALD_AUTH_SECURE_COOKIE" => self.auth.secure_cookie = parse(var, value)?,
            "HERALD_PRUNE_EVERY_SECS" => self.prune_every_secs = parse(var, value)?,
            "HERALD_PRUNE_BATCH" => self.prune_batch = parse(var, value)?,
            "HERALD_IMAGES_FETCH" => self.images.fetch = parse(var, value)?,
            "HERALD_IMAGES_FETCH_TIMEOUT_SECS" => {
                self.images.fetch_timeout_secs = parse(var, value)?
            }
            "HERALD_IMAGES_CA_FILE" => self.images.ca_file = Some(PathBuf::from(value)),
            "HERALD_IMAGES_VERIFY_PER_MINUTE" => self.images.verify_per_minute = parse(var, value)?,
            "HERALD_IMAGES_VERIFIED_FOR_SECS" => self.images.verified_for_secs = parse(var, value)?,
            "HERALD_TLS_CERT" => self.tls_cert = value.to_owned(),
            "HERALD_TLS_KEY" => self.tls_key = value.to_owned(),
            "HERALD_METRICS_ALLOW" => self.metrics_allow = parse(var, value)?,
            _ => {
                if let Some(key) = var.strip_prefix("HERALD_LIMITS_") {
                    self.limits.apply_env(var, key, value)?;
                }
            }
        }
        Ok(())
    }

    /// Whether `tls_cert` and `tls_key` ask for TLS (both or neither must be set).
    pub fn tls_enabled(&self) -> Result<bool, String> {
        match (self.tls_cert.is_empty(), self.tls_key.is_empty()) {
            (true, true) => Ok(false),
            (false, false) => Ok(true),
            _ => Err("tls_cert and tls_key must be given together".into()),
        }
    }

    /// The annotated default configuration, as `herald config default` prints it.
    pub fn annotated_default() -> String {
        let d = Config::default();
        format!(
            r#"# Herald configuration. Every key may also be set as HERALD_<KEY> in the environment
# (e.g. HERALD_LISTEN=0.0.0.0:8080); the environment wins over this file.

# Where the embedded database, the service-account key file and bootstrap.json live.
data_dir = "{data_dir}"
# The store: "" = the embedded SQLite file herald.db in data_dir; or "sqlite:PATH";
# or "postgres://user@host/db" (any number of nodes share it; "?schema=NAME" keeps
# Herald's tables in that schema).
store = ""
# The bus between nodes sharing a store: "" = none; "nats://host:4222" = a message sent
# through one node reaches a device connected to another at once.
bus = ""
# Address to listen on.
listen = "{listen}"
# Base URL backends and devices use; empty = derived from the bound address.
public_url = ""
# "full": a commit survives power loss; "normal": it survives a process crash only.
sqlite_synchronous = "{sync}"
# Seconds between WebSocket pings to each device.
ping_interval_secs = {ping}
# Seconds a silent device connection is kept before it is dropped.
idle_timeout_secs = {idle}
# Seconds between sweeps that expire queued messages whose TTL ended.
expiry_sweep_secs = {sweep}
# Messages buffered in memory per connected device before falling back to the store.
device_queue = {queue}
# Seconds a graceful shutdown waits for in-flight work.
shutdown_grace_secs = {grace}
# Time zone whose natural days the daily quotas count: "UTC", an IANA name
# ("Asia/Shanghai") or an offset ("+08:00").
quota_time_zone = "{tz}"
# Messages per app per device per day before device-level control drops them (receipt 102);
# an app's own setting (herald admin app update) wins.
device_daily_total = {device_total}
# Requests per second per app before the API answers HTTP 503 (token bucket).
send_rate_per_sec = {rate}
# Test messages (pushOptions.testMessage) per project per day; past it, receipt 256.
test_messages_per_day = {tests}
# Refreshes per widget (formId) per device per day; past it, receipt 262.
widget_daily_limit = {widgets}

# Retention: records past these ages (in days; fractions allowed, e.g. 0.5) are deleted
# in the background, in small batches. Queued messages are always kept until their TTL.
retention_messages_days = {ret_msgs}
retention_receipts_days = {ret_receipts}
retention_report_days = {ret_report}
retention_idle_devices_days = {ret_devices}
# Audit log entries (who changed what, when, from where).
retention_audit_days = {ret_audit}
prune_every_secs = {prune_every}
prune_batch = {prune_batch}

# Delivery receipts (herald admin receipt …).
# Milliseconds receipts for one endpoint gather before a callback with fewer than 100
# statuses is sent (a full one goes at once).
receipt_batch_window_ms = {batch_window}
# Failed callbacks are retried with exponential backoff and jitter from about a second,
# each wait at most this many seconds …
receipt_retry_cap_secs = {retry_cap}
# … for this many seconds after the receipt was queued; then it is dropped and logged.
receipt_retry_for_secs = {retry_for}
# Seconds a callback may take before it counts as failed.
receipt_timeout_secs = {receipt_timeout}
# Refuse http:// callback URLs, as Push Kit does (http is handy for local receivers).
receipt_require_https = {require_https}
# Seconds a delivered message's receipt waits for the device's report (shown → 0, switch
# off → 6, profile not bound → 144, cached → 27), so each message gets one final receipt;
# with no report by then, 0 is posted.
receipt_report_wait_secs = {report_wait}

# TLS (rustls): with both set, the Push Kit API, the admin API, the console and the
# device gateway are served over https:// and wss:// only (HERALD_TLS_CERT, HERALD_TLS_KEY,
# or herald serve --tls-cert/--tls-key). PEM files; empty = plain HTTP.
tls_cert = ""
tls_key = ""
# Client addresses (CIDRs) that may read /metrics without a token; any other address
# needs "Authorization: Bearer <admin token>" (Prometheus: authorization.credentials).
metrics_allow = {metrics_allow}

# What one client address, and the world at large, may cost this node. Each key is also
# HERALD_LIMITS_<KEY> (e.g. HERALD_LIMITS_EXEMPT="10.0.0.0/8,192.168.0.0/16").
# docs/SECURITY.md explains each one.
[limits]
# CIDRs exempt from the per-address limits below (not from max_connections); e.g. the
# benchmark's or a load test's address, or a NAT with many devices. Default: none.
exempt = {exempt}
# Header a trusted reverse proxy sets to the client's address (e.g. "X-Forwarded-For";
# its last entry counts). Empty: the TCP peer is the client. Set it only when every
# connection comes through that proxy: anyone else could name any address in it.
trusted_proxy_header = ""
# Open TCP connections in all (HTTP and device WebSockets); more wait in the backlog.
max_connections = {max_connections}
# Open TCP connections per client address (not counted behind a trusted proxy, whose
# own address would carry them all).
connections_per_addr = {connections_per_addr}
# Open device WebSockets per client address; more are answered HTTP 429.
device_connections_per_addr = {device_connections_per_addr}
# New devices (hello without a credential) per address: this many at once …
registrations_burst = {registrations_burst}
# … then this many per hour; past it the socket is closed with 1013 (try again later).
registrations_per_hour = {registrations_per_hour}
# Password checks (argon2, ~19 MiB each) at once; further logins are answered 429.
login_concurrency = {login_concurrency}
# Failed logins per address before back-off (HTTP 429 with Retry-After) …
login_failures_burst = {login_failures_burst}
# … then one more attempt per this many seconds.
login_failure_cooldown_secs = {login_failure_cooldown_secs}
# Failed logins per user name, from all addresses together, before back-off …
user_login_failures_burst = {user_login_failures_burst}
# … then one more attempt per this many seconds.
user_login_failure_cooldown_secs = {user_login_failure_cooldown_secs}
# Seconds to send a request's headers (and finish a TLS handshake); also how long an
# idle keep-alive connection is kept.
header_read_timeout_secs = {header_read_timeout_secs}
# Seconds to send a whole request body.
body_timeout_secs = {body_timeout_secs}
# Seconds an HTTP connection may move no bytes at all (e.g. a client that never reads
# its answer) before it is closed. Device WebSockets use idle_timeout_secs above.
http_idle_timeout_secs = {http_idle_timeout_secs}
# Verified JWTs remembered, each until its exp (least recently used forgotten first).
jwt_cache_entries = {jwt_cache_entries}
# Client addresses whose login and registration counters are remembered.
tracked_addresses = {tracked_addresses}

# Image pre-verification (POST /v1/{{clientId}}/images:verify, /v2/{{projectId}}/images:verify).
# Environment: HERALD_IMAGES_FETCH, HERALD_IMAGES_FETCH_TIMEOUT_SECS, HERALD_IMAGES_CA_FILE, …
[images]
# A well-formed https URL passes. With fetch = true Herald also downloads it and checks it
# is a PNG, JPEG or BMP of at most 512 KB (83010005 when the download fails). Off by
# default: with it on, the server fetches whatever URL an API caller names.
fetch = {fetch}
# Seconds a download may take.
fetch_timeout_secs = {fetch_timeout}
# A PEM file of extra CA certificates for image downloads (unset: the system's only).
# ca_file = "/etc/herald/images-ca.pem"
# Calls per minute per app (v1) or project (v2); past it, 83010002.
verify_per_minute = {verify_rate}
# Seconds a verified downloadUrl stays valid (its expireTime).
verified_for_secs = {verified_for}

# Sign-ins to the admin API and the console (docs/roles.md).
# Environment: HERALD_AUTH_SESSION_IDLE_SECS, HERALD_AUTH_SESSION_MAX_SECS, …
[auth]
# Seconds a console session (its HttpOnly cookie) may go unused before it ends.
session_idle_secs = {session_idle}
# Seconds a console session lasts at most, however busy.
session_max_secs = {session_max}
# Seconds a bearer token from POST /api/v1/sessions (scripts) lasts.
token_ttl_secs = {token_ttl}
# Mark the session cookie Secure without tls_cert (behind a TLS-terminating proxy);
# with tls_cert it always is.
secure_cookie = {secure_cookie}
"#,
            data_dir = d.data_dir.display(),
            listen = d.listen,
            sync = d.sqlite_synchronous,
            ping = d.ping_interval_secs,
            idle = d.idle_timeout_secs,
            sweep = d.expiry_sweep_secs,
            queue = d.device_queue,
            grace = d.shutdown_grace_secs,
            tz = d.quota_time_zone,
            device_total = d.device_daily_total,
            rate = d.send_rate_per_sec,
            tests = d.test_messages_per_day,
            widgets = d.widget_daily_limit,
            batch_window = d.receipt_batch_window_ms,
            retry_cap = d.receipt_retry_cap_secs,
            retry_for = d.receipt_retry_for_secs,
            receipt_timeout = d.receipt_timeout_secs,
            require_https = d.receipt_require_https,
            report_wait = d.receipt_report_wait_secs,
            ret_msgs = d.retention_messages_days,
            ret_receipts = d.retention_receipts_days,
            ret_report = d.retention_report_days,
            ret_devices = d.retention_idle_devices_days,
            ret_audit = d.retention_audit_days,
            session_idle = d.auth.session_idle_secs,
            session_max = d.auth.session_max_secs,
            token_ttl = d.auth.token_ttl_secs,
            secure_cookie = d.auth.secure_cookie,
            prune_every = d.prune_every_secs,
            prune_batch = d.prune_batch,
            fetch = d.images.fetch,
            fetch_timeout = d.images.fetch_timeout_secs,
            verify_rate = d.images.verify_per_minute,
            verified_for = d.images.verified_for_secs,
            metrics_allow = d.metrics_allow.to_toml(),
            exempt = d.limits.exempt.to_toml(),
            max_connections = d.limits.max_connections,
            connections_per_addr = d.limits.connections_per_addr,
            device_connections_per_addr = d.limits.device_connections_per_addr,
            registrations_burst = d.limits.registrations_burst,
            registrations_per_hour = d.limits.registrations_per_hour,
            login_concurrency = d.limits.login_concurrency,
            login_failures_burst = d.limits.login_failures_burst,
            login_failure_cooldown_secs = d.limits.login_failure_cooldown_secs,
            user_login_failures_burst = d.limits.user_login_failures_burst,
            user_login_failure_cooldown_secs = d.limits.user_login_failure_cooldown_secs,
            header_read_timeout_secs = d.limits.header_read_timeout_secs,
            body_timeout_secs = d.limits.body_timeout_secs,
            http_idle_timeout_secs = d.limits.http_idle_timeout_secs,
            jwt_cache_entries = d.limits.jwt_cache_entries,
            tracked_addresses = d.limits.tracked_addresses,
        )
    }

    /// How long a delivered message's receipt waits for the device's report, ms.
    pub fn receipt_report_wait_ms(&self) -> i64 {
        i64::try_from(self.receipt_report_wait_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// What the pruner keeps.
    pub fn retention(&self) -> herald_store::Retention {
        const DAY: i64 = 86_400_000;
        // Fractions of a day are allowed (tests and soak runs use minutes); never negative.
        let days = |d: f64| (d.max(0.0) * DAY as f64) as i64;
        herald_store::Retention {
            deliveries_ms: days(self.retention_messages_days),
            receipts_ms: days(self.retention_receipts_days),
            report_ms: days(self.retention_report_days),
            quota_days: 2,
            idle_devices_ms: days(self.retention_idle_devices_days),
            audit_ms: days(self.retention_audit_days),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotated_default_parses_to_the_default() {
        let parsed: Config = toml::from_str(&Config::annotated_default()).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn environment_wins() {
        let c = Config::load(
            None,
            [("HERALD_LISTEN".to_owned(), "0.0.0.0:9000".to_owned())],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert!(Config::load(None, [("HERALD_LISTEN".to_owned(), "nope".to_owned())]).is_err());
    }

    #[test]
    fn images_fetch_from_the_file_and_the_environment() {
        let parsed: Config = toml::from_str("[images]\nfetch = true\n").unwrap();
        assert!(parsed.images.fetch);
        assert_eq!(parsed.images.verify_per_minute, 60);
        let c = Config::load(
            None,
            [("HERALD_IMAGES_FETCH".to_owned(), "true".to_owned())],
        )
        .unwrap();
        assert!(c.images.fetch);
    }

    #[test]
    fn limits_come_from_the_file_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(
            &file,
            "[limits]\nexempt = [\"10.0.0.0/8\"]\nlogin_concurrency = 4\nregistrations_burst = 7\n",
        )
        .unwrap();
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let c = Config::load(
            Some(&file),
            env(&[
                ("HERALD_LIMITS_LOGIN_CONCURRENCY", "3"),
                ("HERALD_LIMITS_EXEMPT", "192.168.1.7, 2001:db8::/32"),
                ("HERALD_METRICS_ALLOW", "10.1.2.3/32"),
            ]),
        )
        .unwrap();
        assert_eq!(c.limits.login_concurrency, 3, "the environment wins");
        assert_eq!(
            c.limits.registrations_burst, 7,
            "the file beats the default"
        );
        assert!(c.limits.exempt.contains(&"192.168.1.7".parse().unwrap()));
        assert!(c.limits.exempt.contains(&"2001:db8::1".parse().unwrap()));
        assert!(!c.limits.exempt.contains(&"10.0.0.1".parse().unwrap()));
        assert!(c.metrics_allow.contains(&"10.1.2.3".parse().unwrap()));
        assert!(!c.metrics_allow.contains(&"127.0.0.1".parse().unwrap()));
        // An IPv4 peer seen through a dual-stack socket.
        assert!(Cidrs::loopback().contains(&"::ffff:127.0.0.1".parse().unwrap()));
        for bad in [
            ("HERALD_LIMITS_EXEMPT", "10.0.0.0/33"),
            ("HERALD_LIMITS_NO_SUCH_KEY", "1"),
            ("HERALD_LIMITS_MAX_CONNECTIONS", "many"),
        ] {
            assert!(Config::load(None, env(&[bad])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn limits_are_on_by_default() {
        let l = Limits::default();
        assert!(l.exempt.0.is_empty());
        assert!(l.trusted_proxy_header.is_empty());
        assert!(l.login_concurrency > 0 && l.login_concurrency <= 4);
        assert!(l.registrations_burst > 0 && l.device_connections_per_addr > 0);
        assert!(l.header_read_timeout_secs > 0 && l.body_timeout_secs > 0);
    }
}
