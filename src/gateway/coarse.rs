//! The coarse clocks: the kernel's time as of its last tick (at most a few milliseconds old),
//! read from the vDSO without the TSC. For what counts in seconds, not microseconds: the
//! `Date` header and how long a pooled connection has been idle.
//!
//! Why: a precise clock read costs 25–45 ns on this kind of VM, a coarse one 9 ns, and a
//! plain-HTTP request's path made six or seven precise reads, two or three of which needed no
//! precision (README, "Round eight").

use std::time::Duration;

/// The monotonic clock as of the last tick (since an unspecified start, as `Instant`).
pub fn monotonic() -> Duration {
    since_start(libc::CLOCK_MONOTONIC_COARSE)
}

/// The wall clock as of the last tick, in whole seconds since the Unix epoch.
pub fn unix_seconds() -> u64 {
    since_start(libc::CLOCK_REALTIME_COARSE).as_secs()
}

/// Through glibc, not `rustix`: `rustix` calls the vDSO it finds itself, and under valgrind
/// (the bench's instruction counts) that call crashed the process.
fn since_start(clock: libc::clockid_t) -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the struct we pass and nothing else; on an error (a clock
    // the kernel lacks, which Linux has had since 2.6.32) it leaves it zero.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return Duration::ZERO;
    }
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(now.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos)
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;

    #[test]
    fn the_coarse_clocks_agree_with_the_precise_ones_within_a_tick() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let coarse = unix_seconds();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        // The coarse clock lags by at most a tick (a few milliseconds): never ahead, never a
        // second behind more than the crossing of one.
        assert!(
            coarse <= after && coarse + 1 >= before,
            "{before} <= {coarse} <= {after}"
        );
        let (a, b) = (monotonic(), monotonic());
        assert!(b >= a, "the monotonic coarse clock went back: {a:?} then {b:?}");
        assert!(a > Duration::ZERO);
    }
}
