//! The retry budget and the backoff between tries.
//!
//! The budget is Finagle's: every request deposits a fifth of a retry, a retry withdraws a
//! whole one, and a small floor (ten retries a second) is always available, so a quiet replica
//! can still retry while an outage cannot multiply traffic: retries stay within 20 % of the
//! requests plus the floor. One budget per replica, shared by every alias.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A retry, in thousandths.
const RETRY: i64 = 1_000;
/// What one request deposits: 20 % of a retry.
const DEPOSIT: i64 = RETRY / 5;
/// Retries a second that are always allowed.
const FLOOR_PER_SECOND: i64 = 10;
/// The most the budget holds (deposits beyond it are lost): the floor of ten seconds plus
/// the deposits of a burst.
const CAP: i64 = 100 * RETRY;

/// The retry budget of one replica.
pub struct RetryBudget {
    /// Balance in thousandths of a retry.
    balance: AtomicI64,
    /// Milliseconds since `epoch` at which the floor was last added.
    refilled_ms: AtomicU64,
    epoch: Instant,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            balance: AtomicI64::new(FLOOR_PER_SECOND * RETRY),
            refilled_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl RetryBudget {
    /// A request arrived.
    pub fn deposit(&self) {
        self.add(DEPOSIT);
    }

    fn add(&self, amount: i64) {
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some((b + amount).min(CAP)));
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        self.refill();
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= RETRY).then_some(b - RETRY)
            })
            .is_ok()
    }

    /// Adds the floor for the time since the last refill (at most one second's worth is
    /// banked beyond the cap's reach of deposits).
    fn refill(&self) {
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.refilled_ms.load(Ordering::Relaxed);
        if now_ms <= last {
            return;
        }
        if self
            .refilled_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let elapsed_ms = i64::try_from(now_ms - last).unwrap_or(i64::MAX).min(1_000);
        // Never banks more than one second of floor on its own.
        let floor = FLOOR_PER_SECOND * RETRY;
        let add = elapsed_ms * FLOOR_PER_SECOND;
        let _ = self.balance.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
            Some(if b >= floor { b } else { (b + add).min(floor) })
        });
    }
}

/// The wait before retry number `n` (1 for the first retry): `base` doubled for each retry
/// after the first, at most 32 times `base` and 30 s, then jittered to between half and all
/// of it (so retries of many requests spread out).
pub fn backoff(base: Duration, n: u32, roll: f64) -> Duration {
    let factor = 1u32 << n.saturating_sub(1).min(5);
    let full = base.saturating_mul(factor).min(Duration::from_secs(30));
    full.mul_f64(0.5 + roll.clamp(0.0, 1.0) * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_outage_retries_at_most_a_fifth_of_the_requests_plus_the_floor() {
        let budget = RetryBudget::default();
        let mut retries = 0;
        for _ in 0..1_000 {
            budget.deposit();
            if budget.withdraw() {
                retries += 1;
            }
        }
        // No time passes: the initial floor (10) plus 20 % of 1,000.
        assert_eq!(retries, 210);
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_comes_back_with_time() {
        let budget = RetryBudget::default();
        while budget.withdraw() {}
        assert!(!budget.withdraw());
        tokio::time::advance(Duration::from_millis(500)).await;
        let mut again = 0;
        while budget.withdraw() {
            again += 1;
        }
        assert_eq!(again, 5, "ten a second");
        tokio::time::advance(Duration::from_secs(60)).await;
        let mut banked = 0;
        while budget.withdraw() {
            banked += 1;
        }
        assert_eq!(banked, 10, "an idle minute banks one second of floor, not sixty");
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_millis(200);
        assert_eq!(backoff(base, 1, 0.0), Duration::from_millis(100));
        assert_eq!(backoff(base, 1, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(base, 3, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(Duration::from_secs(10), 9, 1.0), Duration::from_secs(30));
    }
}
