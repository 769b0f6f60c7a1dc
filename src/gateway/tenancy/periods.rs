//! The current credit period's name (`2026-12`, `2026-W49`, `2026-12-04`, `all`), computed
//! once per period instead of once per request: formatting a calendar date cost more than the
//! rest of an admission on the memory store.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::compiler::tenancy::period::window;
use crate::crd::Period;

/// A period's name with the seconds it holds for.
struct Named {
    /// The second it was computed for: an earlier clock (set back) computes it again.
    from: i64,
    /// The first second of the next period.
    end: i64,
    name: Arc<str>,
}

/// The current name of each kind of period.
#[derive(Default)]
pub struct PeriodNames([ArcSwapOption<Named>; 4]);

impl PeriodNames {
    /// The name of `period`'s window holding `now` (seconds since the Unix epoch).
    pub fn name(&self, period: Period, now: i64) -> Arc<str> {
        let slot = &self.0[match period {
            Period::Never => 0,
            Period::Daily => 1,
            Period::Weekly => 2,
            Period::Monthly => 3,
        }];
        if let Some(named) = &*slot.load() {
            if named.from <= now && now < named.end {
                return named.name.clone();
            }
        }
        let current = window(period, now);
        let name: Arc<str> = Arc::from(current.name);
        slot.store(Some(Arc::new(Named {
            from: now,
            end: current.end,
            name: name.clone(),
        })));
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_calendar_across_boundaries_and_clock_changes() {
        let names = PeriodNames::default();
        // 2026-12-31T23:59:59Z, then the next second, then the clock set back.
        let new_year = 1_798_761_600;
        assert_eq!(&*names.name(Period::Monthly, new_year - 1), "2026-12");
        assert_eq!(&*names.name(Period::Monthly, new_year - 100), "2026-12");
        assert_eq!(&*names.name(Period::Monthly, new_year), "2027-01");
        assert_eq!(&*names.name(Period::Monthly, new_year - 1), "2026-12");
        assert_eq!(&*names.name(Period::Daily, new_year), "2027-01-01");
        assert_eq!(&*names.name(Period::Never, new_year), "all");
        for (period, now) in [(Period::Weekly, new_year), (Period::Daily, new_year - 1)] {
            assert_eq!(*names.name(period, now), window(period, now).name);
        }
    }
}
