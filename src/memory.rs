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
    #[test]
    fn trimming_after_freeing_keeps_the_heap_usable() {
        let blocks: Vec<Vec<u8>> = (0..1000).map(|i| vec![1u8; 4096 + i]).collect();
        drop(blocks);
        super::trim();
        let again = vec![2u8; 1 << 20];
        assert_eq!(again.iter().map(|&b| usize::from(b)).sum::<usize>(), 2 << 20);
    }
}
