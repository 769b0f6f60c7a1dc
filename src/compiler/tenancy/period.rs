//! Credit periods: which period a moment falls in, and when it ends (00:00 UTC boundaries).

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::crd::Period;

/// A period: its name (part of the store's keys and of `Team.status.usage.period`) and the
/// Unix second it ends (`i64::MAX` for `Never`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodWindow {
    pub name: String,
    pub end: i64,
}

/// The period `now` (Unix seconds) falls in.
pub fn window(period: Period, now: i64) -> PeriodWindow {
    let never = PeriodWindow {
        name: "all".to_string(),
        end: i64::MAX,
    };
    let Ok(at) = Timestamp::from_second(now) else {
        return never;
    };
    let date = at.to_zoned(TimeZone::UTC).date();
    let (name, next): (String, Option<Date>) = match period {
        Period::Never => return never,
        Period::Daily => (date.to_string(), date.tomorrow().ok()),
        Period::Weekly => {
            let week = date.iso_week_date();
            let monday = date
                .checked_sub(i64::from(date.weekday().to_monday_zero_offset()).days())
                .ok();
            (
                format!("{}-W{:02}", week.year(), week.week()),
                monday.and_then(|m| m.checked_add(7.days()).ok()),
            )
        }
        Period::Monthly => (
            format!("{:04}-{:02}", date.year(), date.month()),
            date.first_of_month().checked_add(1.month()).ok(),
        ),
    };
    let end = next
        .and_then(|d| d.to_zoned(TimeZone::UTC).ok())
        .map_or(i64::MAX, |z| z.timestamp().as_second());
    PeriodWindow { name, end }
}

/// Seconds since the Unix epoch, now.
pub fn now_seconds() -> i64 {
    Timestamp::now().as_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>().expect("time").as_second()
    }

    #[test]
    fn periods_are_named_and_end_at_midnight_utc() {
        let now = at("2026-05-13T17:45:00Z"); // a Wednesday
        assert_eq!(
            window(Period::Never, now),
            PeriodWindow {
                name: "all".into(),
                end: i64::MAX
            }
        );
        assert_eq!(
            window(Period::Daily, now),
            PeriodWindow {
                name: "2026-05-13".into(),
                end: at("2026-05-14T00:00:00Z")
            }
        );
        assert_eq!(
            window(Period::Weekly, now),
            PeriodWindow {
                name: "2026-W20".into(),
                end: at("2026-05-18T00:00:00Z")
            }
        );
        assert_eq!(
            window(Period::Monthly, now),
            PeriodWindow {
                name: "2026-05".into(),
                end: at("2026-06-01T00:00:00Z")
            }
        );
        assert_eq!(
            window(Period::Monthly, at("2026-12-31T23:59:59Z")).end,
            at("2027-01-01T00:00:00Z")
        );
        assert_eq!(
            window(Period::Weekly, at("2026-05-18T00:00:00Z")).name,
            "2026-W21",
            "Monday starts a week"
        );
    }
}
