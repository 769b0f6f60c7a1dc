//! The sweeper on tokio's paused clock: when a wait ends, and that a sweeper runs exactly
//! while something is watched.

use std::time::Duration;

use tokio::time::Instant;

use super::*;

const LIMIT: Duration = Duration::from_millis(100);
/// The tick `LIMIT` asks for.
const TICK: Duration = Duration::from_micros(12_500);

#[tokio::test(start_paused = true)]
async fn a_wait_ends_after_its_due_time_and_at_most_a_tick_later() {
    let watch = Watch::new();
    let start = Instant::now();
    let waiting = watch.until(start + LIMIT, LIMIT);
    waiting.expired().await;
    let waited = start.elapsed();
    assert!(waited >= LIMIT, "ended early, after {waited:?}");
    assert!(waited <= LIMIT + TICK, "ended more than a tick late, after {waited:?}");
}

#[tokio::test(start_paused = true)]
async fn moving_the_end_later_keeps_the_wait_alive_until_then() {
    let watch = Watch::new();
    let start = Instant::now();
    let waiting = watch.until(start + LIMIT, LIMIT);
    tokio::time::sleep(LIMIT * 8 / 10).await;
    // A frame arrived: the idle limit runs again from now.
    let moved = Instant::now() + LIMIT;
    waiting.set(moved);
    let ended = tokio::time::timeout_at(start + LIMIT * 3 / 2, waiting.expired()).await;
    assert!(ended.is_err(), "the wait ended at its first end, which was moved");
    waiting.expired().await;
    let now = Instant::now();
    assert!(
        now >= moved && now <= moved + TICK,
        "ended {:?} after its new end",
        now - moved
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_is_dropped_is_no_longer_watched_and_the_sweeper_stops() {
    let watch = Watch::new();
    let first = watch.until(Instant::now() + LIMIT, LIMIT);
    assert!(watch.sweeping());
    drop(first);
    // The sweeper looks once more, finds nothing, and ends.
    tokio::time::sleep(LIMIT).await;
    assert!(!watch.sweeping(), "a sweeper still runs with nothing watched");
    // The next watch starts another, which ends the wait in time.
    let start = Instant::now();
    let second = watch.until(start + LIMIT, LIMIT);
    assert!(watch.sweeping());
    second.expired().await;
    assert!(start.elapsed() <= LIMIT + TICK, "{:?}", start.elapsed());
}

#[tokio::test(start_paused = true)]
async fn many_waits_each_end_at_their_own_time() {
    let watch = Watch::new();
    let start = Instant::now();
    let waits: Vec<(Duration, Waiting)> = (1..=5u32)
        .map(|i| (LIMIT * i, watch.until(start + LIMIT * i, LIMIT)))
        .collect();
    for (end, waiting) in &waits {
        waiting.expired().await;
        let waited = start.elapsed();
        assert!(
            waited >= *end && waited <= *end + TICK,
            "ended after {waited:?}, due after {end:?}"
        );
    }
}

#[test]
fn a_sweeper_dropped_with_its_runtime_is_replaced_on_the_next() {
    let watch = Watch::new();
    let runtime = |paused: bool| {
        let mut builder = tokio::runtime::Builder::new_current_thread();
        builder.enable_time().start_paused(paused);
        builder.build().expect("a runtime")
    };
    let first = runtime(true);
    let kept = first.block_on(async { watch.until(Instant::now() + LIMIT * 100, LIMIT) });
    assert!(watch.sweeping());
    // The runtime ends with its sweeper waiting for the next tick.
    drop(first);
    assert!(!watch.sweeping(), "the dropped sweeper still counts as running");
    let second = runtime(true);
    second.block_on(async {
        let start = Instant::now();
        let waiting = watch.until(start + LIMIT, LIMIT);
        assert!(watch.sweeping());
        waiting.expired().await;
        assert!(start.elapsed() <= LIMIT + TICK, "{:?}", start.elapsed());
    });
    drop(kept);
}

#[tokio::test(start_paused = true)]
async fn within_gives_the_answer_that_comes_in_time_and_none_for_one_that_does_not() {
    let watch = Watch::new();
    let start = Instant::now();
    let waiting = watch.until(start + LIMIT, LIMIT);
    let in_time = waiting.within(tokio::time::sleep(LIMIT / 2)).await;
    assert_eq!(in_time, Some(()));
    let late = waiting.within(std::future::pending::<()>()).await;
    assert_eq!(late, None);
    let waited = start.elapsed();
    assert!(waited >= LIMIT && waited <= LIMIT + TICK, "gave up after {waited:?}");
}
