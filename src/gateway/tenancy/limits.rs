//! What one admission decides, the token buckets behind rate limits, and the verdict types
//! shared by both stores (the Redis store's Lua scripts do the same arithmetic).

use std::time::Duration;

use crate::crd::Limits;

/// What the gateway asks of a store for one request.
#[derive(Clone, Debug)]
pub struct Ask {
    pub limits: Limits,
    /// Credits per period in nano-dollars, when the team has credits.
    pub allocated: Option<i64>,
    /// Estimated tokens of the call (prompt + completion), for `tokensPerMinute`.
    pub estimated_tokens: u64,
    /// Estimated cost in nano-dollars, reserved until the call settles.
    pub estimated_cost: i64,
    /// Seconds since the Unix epoch when the request came (read once per admission: the
    /// period's name and the local counters' period both use it).
    pub now: i64,
}

/// A token bucket's state in the answer: for the `x-ratelimit-*` headers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BucketView {
    pub limit: u64,
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset: Duration,
}

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    Requests,
    Tokens,
    Parallel,
}

/// A store's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Admitted {
        requests: Option<BucketView>,
        tokens: Option<BucketView>,
    },
    RateLimited {
        kind: LimitKind,
        retry_after: Duration,
        requests: Option<BucketView>,
        tokens: Option<BucketView>,
    },
    /// Credits spent: allocated, spent (settled) and reserved (in flight), nano-dollars.
    NoCredits { allocated: i64, spent: i64 },
}

/// A bucket of `capacity` refilled at `capacity` per minute, continuously. `level` may go
/// below zero (tokens used beyond an estimate), which delays the next request.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    level: f64,
    /// Seconds (any monotonic origin) of the last update.
    at: f64,
}

impl Bucket {
    pub fn full(capacity: u64, now: f64) -> Self {
        Bucket {
            level: capacity as f64,
            at: now,
        }
    }

    /// The level now, after refilling.
    pub fn refill(&mut self, capacity: u64, now: f64) -> f64 {
        let rate = capacity as f64 / 60.0;
        self.level = (self.level + (now - self.at).max(0.0) * rate).min(capacity as f64);
        self.at = now;
        self.level
    }

    pub fn take(&mut self, amount: f64) {
        self.level -= amount;
    }

    /// The headers' view of this bucket.
    pub fn view(&self, capacity: u64) -> BucketView {
        let rate = capacity as f64 / 60.0;
        BucketView {
            limit: capacity,
            remaining: self.level.max(0.0).floor() as u64,
            // Whole milliseconds, what the header shows: an integer conversion, where
            // `Duration::from_secs_f64` takes about 50 instructions.
            reset: Duration::from_millis(((capacity as f64 - self.level) / rate * 1000.0).max(0.0) as u64),
        }
    }

    /// How long until the level reaches `wanted`.
    pub fn wait_for(&self, capacity: u64, wanted: f64) -> Duration {
        let rate = capacity as f64 / 60.0;
        Duration::from_secs_f64(((wanted - self.level) / rate).max(0.001))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refills_a_minutes_worth_per_minute_and_reports_its_reset() {
        let mut bucket = Bucket::full(60, 0.0);
        for _ in 0..60 {
            assert!(bucket.refill(60, 0.0) >= 1.0);
            bucket.take(1.0);
        }
        assert!(bucket.refill(60, 0.0) < 1.0, "empty after 60");
        assert_eq!(bucket.wait_for(60, 1.0), Duration::from_secs(1));
        assert_eq!(bucket.refill(60, 30.0), 30.0, "half a minute refills half");
        assert_eq!(bucket.view(60).remaining, 30);
        assert_eq!(bucket.view(60).reset, Duration::from_secs(30));
        assert_eq!(bucket.refill(60, 1000.0), 60.0, "never over capacity");
        bucket.take(100.0);
        assert_eq!(bucket.view(60).remaining, 0, "in debt");
    }
}
