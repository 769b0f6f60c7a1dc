//! Hands memory the allocator keeps after a burst back to the system.
//!
//! glibc's malloc returns freed memory to the system only from the top of each arena; the
//! rest stays in the process (RSS) until `malloc_trim` releases the free pages. A burst of
//! watch events — the initial list, a thousand creates — frees most of what it allocated
//! but leaves it scattered between live objects, so without a trim the controller's RSS
//! stayed at about three times its heap.

use std::time::Duration;

/// How often freed memory is handed back. A trim walks the free lists of every arena: well
/// under a millisecond at 10,000 aliases.
pub const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Trims every [`TRIM_EVERY`], off the async threads, for as long as the runtime lives.
pub async fn trim_periodically() {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if tokio::task::spawn_blocking(trim).await.is_err() {
            return;
        }
    }
}

/// When to hand memory back after a fall in load (open connections plus requests in flight):
/// each open stream holds 20 to 30 KB (hyper's buffers, its tasks), which glibc keeps when it
/// ends. A trim after the fall returns it (3,000 streams ending: 104.6 MB -> 39.2 MB); trimming
/// under steady load would not (a periodic trim halved the maximum rate, as the next
/// allocations fault the pages in again), so this fires only once the load has fallen to half
/// its peak or less, by at least [`AfterDrop::MIN_FALL`]: at once when it has fallen to
/// nothing, otherwise at most every [`AfterDrop::MIN_GAP`].
#[derive(Debug, Default)]
pub struct AfterDrop {
    /// The most connections open since the last trim.
    peak: usize,
    /// When the last trim ran.
    last: Option<std::time::Instant>,
}

impl AfterDrop {
    /// The smallest fall worth a trim (some 10 MB of streams).
    pub const MIN_FALL: usize = 512;
    /// The shortest time between two trims.
    pub const MIN_GAP: Duration = Duration::from_secs(10);

    /// Records the load at `now`; whether to trim now.
    pub fn observe(&mut self, load: usize, now: std::time::Instant) -> bool {
        self.peak = self.peak.max(load);
        let fallen = self.peak - load >= Self::MIN_FALL && load <= self.peak / 2;
        let due = load == 0 || self.last.is_none_or(|last| now.duration_since(last) >= Self::MIN_GAP);
        if fallen && due {
            self.peak = load;
            self.last = Some(now);
            return true;
        }
        false
    }
}

/// Makes every thread allocate from glibc's one main arena instead of up to eight per core:
/// fewer places for freed memory to sit. For the controller, whose allocations come from a few
/// tasks at a time; call before any other thread starts.
pub fn single_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets a glibc tunable; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Releases the free pages of every malloc arena; whether any memory was released.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers and walks glibc's own arenas under their locks;
        // it is safe to call from any thread at any time.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::AfterDrop;

    #[test]
    fn a_fall_to_half_the_peak_trims_once() {
        let start = Instant::now();
        let mut after = AfterDrop::default();
        // The ramp and the plateau never trim.
        for open in [0, 1_000, 3_000, 3_000, 2_900] {
            assert!(!after.observe(open, start));
        }
        // Half of the peak, but fewer than MIN_FALL fewer: not yet... then the fall.
        assert!(!after.observe(1_600, start));
        assert!(after.observe(1_400, start));
        // A further fall right after waits for MIN_GAP, unless it is to nothing.
        assert!(!after.observe(600, start + Duration::from_secs(1)));
        assert!(after.observe(600, start + AfterDrop::MIN_GAP));
        let mut again = AfterDrop::default();
        assert!(!again.observe(3_000, start));
        assert!(again.observe(1_000, start));
        assert!(again.observe(0, start + Duration::from_secs(1)));
        assert!(!again.observe(0, start + Duration::from_secs(2)));
    }

    #[test]
    fn small_listeners_and_steady_load_never_trim() {
        let start = Instant::now();
        let mut after = AfterDrop::default();
        for second in 0..100 {
            let open = if second % 2 == 0 { 400 } else { 0 };
            assert!(!after.observe(open, start + Duration::from_secs(second)));
        }
        let mut steady = AfterDrop::default();
        for second in 0..100 {
            let open = 5_000 + (second % 7) * 100;
            assert!(!steady.observe(open as usize, start + Duration::from_secs(second)));
        }
    }

    #[test]
    fn trimming_after_freeing_keeps_the_heap_usable() {
        let blocks: Vec<Vec<u8>> = (0..1000).map(|i| vec![1u8; 4096 + i]).collect();
        drop(blocks);
        super::trim();
        let again = vec![2u8; 1 << 20];
        assert_eq!(again.iter().map(|&b| usize::from(b)).sum::<usize>(), 2 << 20);
    }
}
