//! Figures for the sites and statistics pages, from stored rows: violations per
//! camera-day, the confirmed share, violations per day by kind (in a site's time zone)
//! and the time from an event to its first review.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Status;

/// What the figures need of one stored event.
#[derive(Debug, Clone)]
pub struct StatRow {
    /// The event's camera.
    pub camera: String,
    /// The rule's kind (`presence`, …).
    pub kind: String,
    /// When the violation started, UNIX ms.
    pub start_ms: i64,
    /// Its review state now.
    pub status: Status,
    /// When it was first reviewed, UNIX ms.
    pub reviewed_ms: Option<i64>,
}

/// A site's (or camera's) record over a period.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Compliance {
    /// Violations raised.
    pub violations: u64,
    /// Cameras × days in the period.
    pub camera_days: f64,
    /// Violations per camera-day (None without cameras).
    pub per_camera_day: Option<f64>,
    /// Violations someone reviewed (any status but `new`).
    pub reviewed: u64,
    /// Reviewed violations found real: confirmed, rectified or closed.
    pub confirmed: u64,
    /// `confirmed / reviewed` (None before any review).
    pub confirmed_share: Option<f64>,
}

impl Compliance {
    /// Counts one event.
    pub fn add(&mut self, status: Status) {
        self.violations += 1;
        if status != Status::New {
            self.reviewed += 1;
        }
        if matches!(status, Status::Confirmed | Status::Rectified | Status::Closed) {
            self.confirmed += 1;
        }
    }

    /// Fills in the ratios for `cameras` watched over `days`.
    pub fn finish(mut self, cameras: usize, days: f64) -> Self {
        self.camera_days = cameras as f64 * days;
        self.per_camera_day = (self.camera_days > 0.0).then(|| self.violations as f64 / self.camera_days);
        self.confirmed_share = (self.reviewed > 0).then(|| self.confirmed as f64 / self.reviewed as f64);
        self
    }
}

/// Violations on one day, by kind.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Day {
    /// The date, `YYYY-MM-DD`, in the report's time zone.
    pub day: String,
    /// All violations that day.
    pub total: u64,
    /// Per kind.
    pub kinds: BTreeMap<String, u64>,
}

/// Every day from `from_ms` to `to_ms` (days without violations included, so a chart
/// shows them as zero), with the rows counted on the day they started.
pub fn per_day(rows: &[StatRow], from_ms: i64, to_ms: i64, tz: &jiff::tz::TimeZone) -> Vec<Day> {
    let date = |ms: i64| jiff::Timestamp::from_millisecond(ms).ok().map(|t| t.to_zoned_datetime(tz.clone()).date());
    let mut days: BTreeMap<jiff::civil::Date, Day> = BTreeMap::new();
    if let (Some(mut d), Some(last)) = (date(from_ms), date(to_ms.saturating_sub(1).max(from_ms))) {
        // At most a year and a day of empty days, whatever the range asked.
        for _ in 0..367 {
            days.insert(d, Day { day: d.to_string(), total: 0, kinds: BTreeMap::new() });
            if d >= last {
                break;
            }
            let Ok(next) = d.tomorrow() else { break };
            d = next;
        }
    }
    for r in rows {
        let Some(d) = date(r.start_ms) else { continue };
        let day = days.entry(d).or_insert_with(|| Day { day: d.to_string(), total: 0, kinds: BTreeMap::new() });
        day.total += 1;
        *day.kinds.entry(r.kind.clone()).or_default() += 1;
    }
    days.into_values().collect()
}

/// How long events waited for their first review.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReviewTimes {
    /// Events reviewed at least once.
    pub reviewed: u64,
    /// Median wait, seconds.
    pub median_s: Option<f64>,
    /// 90th percentile wait, seconds.
    pub p90_s: Option<f64>,
}

/// Review waits of `rows`.
pub fn review_times(rows: &[StatRow]) -> ReviewTimes {
    let mut waits: Vec<f64> =
        rows.iter().filter_map(|r| r.reviewed_ms.map(|at| (at - r.start_ms).max(0) as f64 / 1000.0)).collect();
    waits.sort_by(f64::total_cmp);
    let pick = |q: f64| -> Option<f64> {
        if waits.is_empty() {
            return None;
        }
        let i = ((waits.len() - 1) as f64 * q).round() as usize;
        waits.get(i).copied()
    };
    ReviewTimes { reviewed: waits.len() as u64, median_s: pick(0.5), p90_s: pick(0.9) }
}

/// The UNIX ms at which today began in `tz`.
pub fn start_of_day(now_ms: i64, tz: &jiff::tz::TimeZone) -> i64 {
    jiff::Timestamp::from_millisecond(now_ms)
        .ok()
        .and_then(|t| t.to_zoned_datetime(tz.clone()).start_of_day().ok())
        .map_or(now_ms, |z| z.timestamp().as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, start_ms: i64, status: Status, reviewed_ms: Option<i64>) -> StatRow {
        StatRow { camera: "cam1".into(), kind: kind.into(), start_ms, status, reviewed_ms }
    }

    #[test]
    fn compliance_counts_reviews_and_ratios() {
        let mut c = Compliance::default();
        for s in [Status::New, Status::Confirmed, Status::Dismissed, Status::Closed, Status::Rectified] {
            c.add(s);
        }
        let c = c.finish(2, 7.0);
        assert_eq!((c.violations, c.reviewed, c.confirmed), (5, 4, 3));
        assert_eq!(c.per_camera_day, Some(5.0 / 14.0));
        assert_eq!(c.confirmed_share, Some(0.75));
        assert_eq!(Compliance::default().finish(0, 7.0).per_camera_day, None);
        assert_eq!(Compliance::default().finish(1, 7.0).confirmed_share, None);
    }

    #[test]
    fn days_are_counted_in_the_sites_time_zone_with_empty_days_kept() {
        let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
        // 2026-12-01 00:00 in Shanghai is 2026-11-30 16:00 UTC.
        let day1 = jiff::Timestamp::from_second(1_796_054_400).unwrap().as_millisecond();
        let h = 3_600_000;
        let rows = vec![
            row("presence", day1 + h, Status::New, None),
            // 23:30 local on the 1st, already the 1st... and 00:30 on the 3rd.
            row("presence", day1 + 23 * h + h / 2, Status::New, None),
            row("missing_attribute", day1 + 48 * h + h / 2, Status::New, None),
        ];
        let days = per_day(&rows, day1, day1 + 72 * h, &tz);
        let got: Vec<(&str, u64)> = days.iter().map(|d| (d.day.as_str(), d.total)).collect();
        assert_eq!(got, vec![("2026-12-01", 2), ("2026-12-02", 0), ("2026-12-03", 1)]);
        assert_eq!(days[2].kinds.get("missing_attribute"), Some(&1));
        assert_eq!(start_of_day(day1 + 5 * h, &tz), day1);
    }

    #[test]
    fn review_waits_give_median_and_p90() {
        let rows: Vec<StatRow> = (1..=10)
            .map(|i| row("presence", 0, Status::Confirmed, Some(i * 60_000)))
            .chain([row("presence", 0, Status::New, None)])
            .collect();
        let t = review_times(&rows);
        assert_eq!(t.reviewed, 10);
        assert_eq!(t.median_s, Some(360.0));
        assert_eq!(t.p90_s, Some(540.0));
        assert_eq!(review_times(&[]).median_s, None);
    }
}
