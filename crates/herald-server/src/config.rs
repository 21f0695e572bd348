//! Typed, layered configuration: defaults → TOML file → `HERALD_*` environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything `herald serve` can be told. `Debug` never prints secrets (there are none
/// here yet; keys and passwords live in the data directory, not the config).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded database, key file and bootstrap file live.
    pub data_dir: PathBuf,
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
    pub retention_messages_days: u32,
    /// Days sent and dropped receipts are kept.
    pub retention_receipts_days: u32,
    /// Days the push report's hourly counters are kept.
    pub retention_report_days: u32,
    /// Days a device may stay away before it and its tokens are forgotten.
    pub retention_idle_devices_days: u32,
    /// Seconds between pruning rounds.
    pub prune_every_secs: u64,
    /// Records of each kind one pruning round deletes at most.
    pub prune_batch: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./herald-data"),
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
            retention_messages_days: 7,
            retention_receipts_days: 7,
            retention_report_days: 90,
            retention_idle_devices_days: 270,
            prune_every_secs: 10,
            prune_batch: 2_000,
        }
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
        fn parse<T: std::str::FromStr>(var: &str, value: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse().map_err(|e: T::Err| ConfigError::Env {
                var: var.to_owned(),
                message: e.to_string(),
            })
        }
        match var {
            "HERALD_DATA_DIR" => self.data_dir = PathBuf::from(value),
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
            "HERALD_PRUNE_EVERY_SECS" => self.prune_every_secs = parse(var, value)?,
            "HERALD_PRUNE_BATCH" => self.prune_batch = parse(var, value)?,
            _ => {}
        }
        Ok(())
    }

    /// The annotated default configuration, as `herald config default` prints it.
    pub fn annotated_default() -> String {
        let d = Config::default();
        format!(
            r#"# Herald configuration. Every key may also be set as HERALD_<KEY> in the environment
# (e.g. HERALD_LISTEN=0.0.0.0:8080); the environment wins over this file.

# Where the embedded database, the service-account key file and bootstrap.json live.
data_dir = "{data_dir}"
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

# Retention: records past these ages are deleted in the background, in small batches.
# Queued messages are always kept until their TTL ends.
retention_messages_days = {ret_msgs}
retention_receipts_days = {ret_receipts}
retention_report_days = {ret_report}
retention_idle_devices_days = {ret_devices}
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
            prune_every = d.prune_every_secs,
            prune_batch = d.prune_batch,
        )
    }

    /// How long a delivered message's receipt waits for the device's report, ms.
    pub fn receipt_report_wait_ms(&self) -> i64 {
        i64::try_from(self.receipt_report_wait_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// What the pruner keeps.
    pub fn retention(&self) -> herald_store::Retention {
        const DAY: i64 = 86_400_000;
        let days = |d: u32| i64::from(d) * DAY;
        herald_store::Retention {
            deliveries_ms: days(self.retention_messages_days),
            receipts_ms: days(self.retention_receipts_days),
            report_ms: days(self.retention_report_days),
            quota_days: 2,
            idle_devices_ms: days(self.retention_idle_devices_days),
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
}
