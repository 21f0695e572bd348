//! The one clock that TTLs, JWT expiry and quotas read, injectable for tests.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Resolves with the clock's move count once it exceeds the count it was made with.
pub type Moved = Pin<Box<dyn Future<Output = u64> + Send>>;

/// A source of "now". Everything time-dependent reads one of these, never the system.
pub trait Clock: Send + Sync + Debug + 'static {
    fn now_ms(&self) -> Millis;

    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// For periodic work that reads this clock (the expiry sweep): resolves once the
    /// clock has been moved by hand more than `seen` times, with the new count, so the
    /// work runs at once rather than at its next real-time tick. A clock that moves by
    /// itself never resolves it.
    fn moved_since(&self, seen: u64) -> Moved {
        let _ = seen;
        Box::pin(std::future::pending())
    }
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Manual>);

#[derive(Debug, Default)]
struct Manual {
    now: AtomicI64,
    /// How many times the clock was moved.
    moves: AtomicU64,
    /// Tasks waiting in [`Clock::moved_since`]; woken (and dropped) on every move.
    waiting: Mutex<Vec<Waker>>,
}

impl ManualClock {
    pub fn new(start_ms: Millis) -> Self {
        let manual = Manual::default();
        manual.now.store(start_ms, Ordering::SeqCst);
        ManualClock(Arc::new(manual))
    }

    /// A manual clock starting at the current wall-clock time.
    pub fn starting_now() -> Self {
        ManualClock::new(SystemClock.now_ms())
    }

    pub fn advance_ms(&self, ms: i64) {
        self.0.now.fetch_add(ms, Ordering::SeqCst);
        self.moved();
    }

    pub fn advance_secs(&self, secs: i64) {
        self.advance_ms(secs * 1000);
    }

    pub fn set_ms(&self, ms: Millis) {
        self.0.now.store(ms, Ordering::SeqCst);
        self.moved();
    }

    fn moved(&self) {
        self.0.moved();
    }
}

impl Manual {
    /// Count a move and wake whoever waits for one.
    fn moved(&self) {
        self.moves.fetch_add(1, Ordering::SeqCst);
        let waiting = std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|e| e.into_inner()));
        waiting.into_iter().for_each(Waker::wake);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.0.now.load(Ordering::SeqCst)
    }

    fn moved_since(&self, seen: u64) -> Moved {
        Box::pin(MovedSince {
            manual: self.0.clone(),
            seen,
        })
    }
}

/// The wall clock plus an offset that can only grow (the emulator's clock: `POST
/// /emulator/v1/clock`). Time runs as usual; [`OffsetClock::advance_ms`] jumps it
/// forward and, like a [`ManualClock`] move, wakes the periodic work waiting in
/// [`Clock::moved_since`]. Clones share the same offset.
#[derive(Debug, Clone, Default)]
pub struct OffsetClock(Arc<Manual>);

impl OffsetClock {
    pub fn new() -> Self {
        OffsetClock::default()
    }

    /// Jump forward by `ms` (negative values are ignored: time never runs backwards).
    pub fn advance_ms(&self, ms: i64) {
        self.0.now.fetch_add(ms.max(0), Ordering::SeqCst);
        self.0.moved();
    }

    /// How far ahead of the wall clock this clock is, in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        self.0.now.load(Ordering::SeqCst)
    }
}

impl Clock for OffsetClock {
    fn now_ms(&self) -> Millis {
        SystemClock.now_ms().saturating_add(self.offset_ms())
    }

    fn moved_since(&self, seen: u64) -> Moved {
        Box::pin(MovedSince {
            manual: self.0.clone(),
            seen,
        })
    }
}

/// The future of [`ManualClock::moved_since`] and [`OffsetClock::moved_since`].
struct MovedSince {
    manual: Arc<Manual>,
    seen: u64,
}

impl Future for MovedSince {
    type Output = u64;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        let moves = || self.manual.moves.load(Ordering::SeqCst);
        if moves() > self.seen {
            return Poll::Ready(moves());
        }
        let mut waiting = self
            .manual
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Checked again under the lock: a move between the two checks has taken the list.
        if moves() > self.seen {
            return Poll::Ready(moves());
        }
        waiting.push(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        let shared = c.clone();
        assert_eq!(c.now_ms(), 1_000);
        shared.advance_secs(2);
        assert_eq!(c.now_ms(), 3_000);
        assert_eq!(c.now_secs(), 3);
        c.set_ms(10);
        assert_eq!(shared.now_ms(), 10);
    }

    /// A waker that counts its wakes.
    struct Count(AtomicU64);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_move_wakes_whoever_waits_for_one_and_reports_the_count() {
        let c = ManualClock::new(0);
        let count = Arc::new(Count(AtomicU64::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut moved = c.moved_since(0);
        assert_eq!(moved.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        c.advance_ms(1);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "the move woke the waiter"
        );
        assert_eq!(moved.as_mut().poll(&mut cx), Poll::Ready(1));
        // Moves already seen do not count again; the next one does.
        let mut next = c.moved_since(1);
        assert_eq!(next.as_mut().poll(&mut cx), Poll::Pending);
        c.set_ms(5);
        assert_eq!(next.as_mut().poll(&mut cx), Poll::Ready(2));
    }

    #[test]
    fn an_offset_clock_runs_with_the_wall_clock_and_jumps_forward_on_demand() {
        let c = OffsetClock::new();
        let before = SystemClock.now_ms();
        assert!((c.now_ms() - before).abs() < 1_000);
        let count = Arc::new(Count(AtomicU64::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut moved = c.moved_since(0);
        assert_eq!(moved.as_mut().poll(&mut cx), Poll::Pending);
        c.clone().advance_ms(86_400_000);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "the jump woke the waiter"
        );
        assert_eq!(moved.as_mut().poll(&mut cx), Poll::Ready(1));
        assert!(c.now_ms() >= before + 86_400_000);
        c.advance_ms(-5_000);
        assert_eq!(c.offset_ms(), 86_400_000, "never backwards");
    }

    #[test]
    fn the_wall_clock_is_never_moved_by_hand() {
        let count = Arc::new(Count(AtomicU64::new(0)));
        let waker = Waker::from(count);
        let mut cx = Context::from_waker(&waker);
        assert_eq!(
            SystemClock.moved_since(0).as_mut().poll(&mut cx),
            Poll::Pending
        );
    }
}
