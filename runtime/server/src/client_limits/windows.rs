//! The calendar windows limits are counted in: the UTC minute (rpm, tpm), and the
//! UTC day or month of a budget. Every replica derives the same window ids from
//! its clock, so a shared store counts one window for the whole fleet.

use tamma_registry::server_config::BudgetPeriod;

/// The windows in force at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    /// Minutes since the Unix epoch.
    pub minute: u64,
    /// Seconds left in this minute (at least 1).
    pub minute_left_secs: u64,
    /// The budget period's id (days since the epoch, or `year * 12 + month0`).
    pub period: u64,
    /// Seconds left in the budget period (at least 1).
    pub period_left_secs: u64,
    /// `"day"` or `"month"`: part of the store's key, so that a period changed in
    /// the file never meets the other kind's counter.
    pub period_kind: &'static str,
}

/// `(year, month 1-12, day 1-31)` of a day count since 1970-01-01 (the
/// proleptic Gregorian calendar). Hand-written rather than a date crate: it is
/// the one conversion needed, a dozen lines of integer arithmetic
/// (H. Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of the first day of `(year, month)`.
fn days_from_civil(y: i64, m: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Windows {
    /// The windows at `unix_secs`, the budget counted per `period`.
    pub fn at(unix_secs: u64, period: BudgetPeriod) -> Windows {
        let minute = unix_secs / 60;
        let minute_left_secs = 60 - unix_secs % 60;
        let day = unix_secs / 86_400;
        let (id, end) = match period {
            BudgetPeriod::Day => (day, (day + 1) * 86_400),
            BudgetPeriod::Month => {
                let (y, m, _) = civil_from_days(day as i64);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                let next = days_from_civil(ny, nm).max(0) as u64 * 86_400;
                ((y.max(0) as u64) * 12 + u64::from(m - 1), next)
            }
        };
        Windows {
            minute,
            minute_left_secs,
            period: id,
            period_left_secs: end.saturating_sub(unix_secs).max(1),
            period_kind: period.as_str(),
        }
    }

    /// The windows now.
    pub fn now(period: BudgetPeriod) -> Windows {
        Self::at(tamma_sandbox::time::now_unix_secs(), period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_periods_are_utc_days_and_months() {
        // 2024-02-29T23:59:30Z, a leap day.
        let t = 1_709_251_170;
        assert_eq!(civil_from_days(t as i64 / 86_400), (2024, 2, 29));
        let w = Windows::at(t, BudgetPeriod::Month);
        assert_eq!(w.period, 2024 * 12 + 1);
        assert_eq!(w.period_left_secs, 30, "March starts in 30 s");
        assert_eq!(w.minute_left_secs, 30);
        let d = Windows::at(t, BudgetPeriod::Day);
        assert_eq!(d.period, t / 86_400);
        assert_eq!(d.period_left_secs, 30);
        // December rolls over into the next year.
        let dec = 1_735_689_599; // 2024-12-31T23:59:59Z
        let w = Windows::at(dec, BudgetPeriod::Month);
        assert_eq!(w.period, 2024 * 12 + 11);
        assert_eq!(w.period_left_secs, 1);
        assert_eq!(days_from_civil(1970, 1), 0);
    }
}
