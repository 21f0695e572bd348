//! Quotas: per-day counters in a configurable time zone, and the per-app send-rate bucket.
//!
//! Pure policy: the server keeps the counters (in memory, with the store as the truth);
//! this module says what is counted, against which limit, on which day.

use std::fmt;

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Push Kit's MARKETING quota per app per device per day (reference §5).
pub const MARKETING_PER_DAY: u32 = 2;
/// The MARKETING quota of news apps.
pub const MARKETING_PER_DAY_NEWS: u32 = 5;
/// Default device-level daily total per app per device (legacy Push Kit figure).
pub const DEVICE_DAILY_TOTAL: u32 = 3000;
/// Refreshes per widget per device per day (reference §8: 5 for unlisted apps).
pub const WIDGET_REFRESHES_PER_DAY: u32 = 5;
/// IM background messages per app per device per hour.
pub const IM_BACKGROUND_PER_HOUR: u32 = 2;
/// Test messages per project per day (counted as accepted requests).
pub const TEST_MESSAGES_PER_DAY: u32 = 1000;
/// Default send rate per app, requests per second (Push Kit's documented floor).
pub const SEND_RATE_PER_SEC: u32 = 6000;

/// The app's category in the store listing, which decides its MARKETING quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppCategory {
    /// "新闻阅读 › 新闻" apps with an internet-news licence: 5 MARKETING a day.
    News,
    #[default]
    Other,
}

impl AppCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            AppCategory::News => "news",
            AppCategory::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<AppCategory> {
        match s {
            "news" => Some(AppCategory::News),
            "other" => Some(AppCategory::Other),
            _ => None,
        }
    }

    pub fn marketing_per_day(self) -> u32 {
        match self {
            AppCategory::News => MARKETING_PER_DAY_NEWS,
            AppCategory::Other => MARKETING_PER_DAY,
        }
    }
}

/// An app's limits after applying its overrides to the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppLimits {
    pub marketing_per_day: u32,
    pub device_daily_total: u32,
    pub send_rate_per_sec: u32,
}

/// Per-app overrides an operator set; `None` = the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitOverrides {
    pub marketing_per_day: Option<u32>,
    pub device_daily_total: Option<u32>,
    pub send_rate_per_sec: Option<u32>,
}

/// Server-wide defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultLimits {
    pub device_daily_total: u32,
    pub send_rate_per_sec: u32,
    pub test_messages_per_day: u32,
}

impl Default for DefaultLimits {
    fn default() -> Self {
        DefaultLimits {
            device_daily_total: DEVICE_DAILY_TOTAL,
            send_rate_per_sec: SEND_RATE_PER_SEC,
            test_messages_per_day: TEST_MESSAGES_PER_DAY,
        }
    }
}

impl DefaultLimits {
    pub fn for_app(&self, category: AppCategory, o: &LimitOverrides) -> AppLimits {
        AppLimits {
            marketing_per_day: o.marketing_per_day.unwrap_or(category.marketing_per_day()),
            device_daily_total: o.device_daily_total.unwrap_or(self.device_daily_total),
            send_rate_per_sec: o.send_rate_per_sec.unwrap_or(self.send_rate_per_sec),
        }
    }
}

/// What a daily counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    /// MARKETING notifications, per app per device.
    Marketing,
    /// Every message, per app per device (device-level control).
    DeviceTotal,
    /// Test-message requests, per project.
    TestMessages,
    /// Refreshes of one widget (`formId`), per app per device.
    Widget,
    /// IM background messages (`backgroundMode: 1`) in one clock hour, per app per device.
    ImBackgroundHour,
}

impl Counter {
    pub fn as_str(self) -> &'static str {
        match self {
            Counter::Marketing => "marketing",
            Counter::DeviceTotal => "device_total",
            Counter::TestMessages => "test_messages",
            Counter::Widget => "widget",
            Counter::ImBackgroundHour => "im_background_hour",
        }
    }
}

/// One daily counter: what, whose (`client_id/device_id` or `project_id`), which day.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    pub counter: Counter,
    pub scope: String,
    /// The local date as `YYYYMMDD`.
    pub day: i32,
}

impl CounterKey {
    pub fn per_device(counter: Counter, client_id: &str, device_id: &str, day: i32) -> Self {
        CounterKey {
            counter,
            scope: format!("{client_id}/{device_id}"),
            day,
        }
    }

    /// A per-device counter narrowed to one sub-scope (a widget id, an hour).
    pub fn per_device_item(
        counter: Counter,
        client_id: &str,
        device_id: &str,
        item: impl fmt::Display,
        day: i32,
    ) -> Self {
        CounterKey {
            counter,
            scope: format!("{client_id}/{device_id}/{item}"),
            day,
        }
    }

    pub fn per_project(counter: Counter, project_id: &str, day: i32) -> Self {
        CounterKey {
            counter,
            scope: project_id.to_owned(),
            day,
        }
    }
}

impl fmt::Display for CounterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.counter.as_str(), self.scope, self.day)
    }
}

/// Maps instants to natural days in the quota time zone.
#[derive(Debug, Clone)]
pub struct QuotaCalendar {
    tz: TimeZone,
}

/// The time zone name is not in the bundled database.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown time zone {0:?}")]
pub struct UnknownTimeZone(pub String);

impl QuotaCalendar {
    /// `UTC`, an IANA name (`Asia/Shanghai`) or a fixed offset (`+08:00`).
    pub fn new(zone: &str) -> Result<QuotaCalendar, UnknownTimeZone> {
        let tz = if zone.eq_ignore_ascii_case("utc") {
            TimeZone::UTC
        } else if let Some(seconds) = parse_offset(zone) {
            let offset = jiff::tz::Offset::from_seconds(seconds)
                .map_err(|_| UnknownTimeZone(zone.to_owned()))?;
            TimeZone::fixed(offset)
        } else {
            TimeZone::get(zone).map_err(|_| UnknownTimeZone(zone.to_owned()))?
        };
        Ok(QuotaCalendar { tz })
    }

    /// The local date of `now_ms` as `YYYYMMDD`.
    pub fn day(&self, now_ms: i64) -> i32 {
        let ts = Timestamp::from_millisecond(now_ms).unwrap_or(Timestamp::UNIX_EPOCH);
        let d = ts.to_zoned_datetime(self.tz.clone()).date();
        i32::from(d.year()) * 10_000 + i32::from(d.month()) * 100 + i32::from(d.day())
    }
}

/// `+HH:MM` / `-HH:MM` → seconds east of UTC.
fn parse_offset(s: &str) -> Option<i32> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    ((0..=18).contains(&h) && (0..60).contains(&m)).then_some(sign * (h * 3600 + m * 60))
}

/// A token bucket: `rate` tokens per second, holding at most `rate` (one second's burst).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last_ms: i64,
}

impl TokenBucket {
    pub fn new(rate_per_sec: u32, now_ms: i64) -> Self {
        TokenBucket {
            rate: f64::from(rate_per_sec.max(1)),
            tokens: f64::from(rate_per_sec.max(1)),
            last_ms: now_ms,
        }
    }

    pub fn rate(&self) -> u32 {
        self.rate as u32
    }

    /// Take one token if there is one.
    pub fn try_take(&mut self, now_ms: i64) -> bool {
        let elapsed = (now_ms - self.last_ms).max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last_ms = self.last_ms.max(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_follow_the_time_zone() {
        // 2026-11-29T20:00:00Z is already the 30th in Shanghai.
        let ms = 1_795_982_400_000;
        assert_eq!(QuotaCalendar::new("UTC").unwrap().day(ms), 20261129);
        assert_eq!(
            QuotaCalendar::new("Asia/Shanghai").unwrap().day(ms),
            20261130
        );
        assert_eq!(QuotaCalendar::new("+08:00").unwrap().day(ms), 20261130);
        assert!(QuotaCalendar::new("Mars/Olympus").is_err());
    }

    #[test]
    fn bucket_refills_at_its_rate() {
        let mut b = TokenBucket::new(5, 0);
        assert!((0..5).all(|_| b.try_take(0)));
        assert!(!b.try_take(0));
        assert!(b.try_take(200), "one token per 200 ms at 5/s");
        assert!(!b.try_take(200));
        assert!(
            (0..5).all(|_| b.try_take(10_000)),
            "refill is capped at one second"
        );
        assert!(!b.try_take(10_000));
    }

    #[test]
    fn news_apps_get_five_marketing_messages() {
        let d = DefaultLimits::default();
        assert_eq!(
            d.for_app(AppCategory::News, &Default::default())
                .marketing_per_day,
            5
        );
        assert_eq!(
            d.for_app(AppCategory::Other, &Default::default())
                .marketing_per_day,
            2
        );
        let o = LimitOverrides {
            device_daily_total: Some(7),
            ..Default::default()
        };
        assert_eq!(d.for_app(AppCategory::Other, &o).device_daily_total, 7);
    }
}
