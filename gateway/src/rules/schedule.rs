//! Weekly schedules: when a rule is in force, in the rule's time zone.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::config::{RuleError, ScheduleEntry, invalid};

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const SECONDS_PER_DAY: u32 = 24 * 3600;

/// One checked range: on `days` (Monday = 0), from `from` until `to`, in seconds of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    days: [bool; 7],
    from: u32,
    to: u32,
}

/// A checked weekly schedule; a range whose `from` is after its `to` runs past midnight into
/// the next day, and belongs to the day it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    ranges: Vec<Range>,
}

impl Schedule {
    /// Checks schedule entries from config; `key` names the list in errors, e.g. `rules[2].schedule`.
    pub fn parse(entries: &[ScheduleEntry], key: &str) -> Result<Self, RuleError> {
        if entries.is_empty() {
            return Err(invalid(key, "lists no time ranges; leave it out to apply the rule at all times"));
        }
        let mut ranges = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let key = format!("{key}[{i}]");
            let days = match &e.days {
                None => [true; 7],
                Some(names) => parse_days(names, &format!("{key}.days"))?,
            };
            let from = parse_time(&e.from, false).map_err(|m| invalid(format!("{key}.from"), m))?;
            let to = parse_time(&e.to, true).map_err(|m| invalid(format!("{key}.to"), m))?;
            if from == to {
                return Err(invalid(
                    format!("{key}.to"),
                    "equals `from`, an empty range; use from = \"00:00\", to = \"24:00\" for a whole day",
                ));
            }
            ranges.push(Range { days, from, to });
        }
        Ok(Self { ranges })
    }

    /// Whether the schedule is in force at `wall` in time zone `tz`.
    pub fn is_active(&self, wall: Timestamp, tz: &TimeZone) -> bool {
        let local = wall.to_zoned_datetime(tz.clone());
        let weekday = local.weekday().to_monday_zero_offset();
        let second = i32::from(local.hour()) * 3600 + i32::from(local.minute()) * 60 + i32::from(local.second());
        match (usize::try_from(weekday), u32::try_from(second)) {
            (Ok(day), Ok(second)) => self.contains(day, second),
            _ => false,
        }
    }

    /// Whether second `second` of weekday `day` (Monday = 0) is in force.
    pub fn contains(&self, day: usize, second: u32) -> bool {
        if day >= 7 || second >= SECONDS_PER_DAY {
            return false;
        }
        let yesterday = (day + 6) % 7;
        self.ranges.iter().any(|r| {
            if r.from < r.to {
                r.days[day] && r.from <= second && second < r.to
            } else {
                (r.days[day] && second >= r.from) || (r.days[yesterday] && second < r.to)
            }
        })
    }
}

fn parse_days(names: &[String], key: &str) -> Result<[bool; 7], RuleError> {
    if names.is_empty() {
        return Err(invalid(key, "lists no days; leave it out for every day"));
    }
    let mut days = [false; 7];
    for (k, name) in names.iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        let Some(d) = DAY_NAMES.iter().position(|n| *n == lower) else {
            return Err(invalid(
                format!("{key}[{k}]"),
                format!("`{name}` is not a day; use one of {}", DAY_NAMES.join(", ")),
            ));
        };
        days[d] = true;
    }
    Ok(days)
}

/// "HH:MM" to seconds of the day; "24:00" only where it may end a range.
fn parse_time(s: &str, allow_24: bool) -> Result<u32, String> {
    let bad =
        || format!("expected a time as \"HH:MM\" (00:00 to {}), got {s:?}", if allow_24 { "24:00" } else { "23:59" });
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || h.len() > 2 || !digits(m) || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    match (h, m) {
        (24, 0) if allow_24 => Ok(SECONDS_PER_DAY),
        (0..=23, 0..=59) => Ok(h * 3600 + m * 60),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(days: Option<&[&str]>, from: &str, to: &str) -> ScheduleEntry {
        ScheduleEntry {
            days: days.map(|d| d.iter().map(|s| s.to_string()).collect()),
            from: from.into(),
            to: to.into(),
        }
    }

    fn at(h: u32, m: u32) -> u32 {
        h * 3600 + m * 60
    }

    #[test]
    fn daytime_range_on_weekdays() {
        let s =
            Schedule::parse(&[entry(Some(&["mon", "tue", "wed", "thu", "fri"]), "06:00", "20:00")], "s").expect("ok");
        assert!(s.contains(0, at(6, 0)));
        assert!(s.contains(4, at(19, 59)));
        assert!(!s.contains(4, at(20, 0)));
        assert!(!s.contains(0, at(5, 59)));
        assert!(!s.contains(5, at(12, 0)), "saturday");
        assert!(!s.contains(7, 0) && !s.contains(0, SECONDS_PER_DAY));
    }

    #[test]
    fn range_wrapping_past_midnight_belongs_to_its_start_day() {
        let s = Schedule::parse(&[entry(Some(&["fri"]), "22:00", "06:00")], "s").expect("ok");
        assert!(s.contains(4, at(23, 0)), "friday night");
        assert!(s.contains(5, at(3, 0)), "early saturday");
        assert!(!s.contains(5, at(6, 0)));
        assert!(!s.contains(4, at(3, 0)), "early friday belongs to thursday's range");
        assert!(!s.contains(5, at(23, 0)));
        let every = Schedule::parse(&[entry(None, "20:00", "06:00")], "s").expect("ok");
        assert!((0..7).all(|d| every.contains(d, at(2, 0)) && every.contains(d, at(21, 0))));
        assert!((0..7).all(|d| !every.contains(d, at(12, 0))));
    }

    #[test]
    fn whole_day_with_24_00() {
        let s = Schedule::parse(&[entry(Some(&["Sun"]), "00:00", "24:00")], "s").expect("ok");
        assert!(s.contains(6, 0) && s.contains(6, SECONDS_PER_DAY - 1));
        assert!(!s.contains(0, 0));
    }

    #[test]
    fn errors_name_the_key() {
        let key = |e: Vec<ScheduleEntry>| Schedule::parse(&e, "rules[2].schedule").unwrap_err().key().to_string();
        assert_eq!(key(vec![entry(None, "25:00", "06:00")]), "rules[2].schedule[0].from");
        assert_eq!(key(vec![entry(None, "06:00", "20:00"), entry(None, "6", "07:00")]), "rules[2].schedule[1].from");
        assert_eq!(key(vec![entry(None, "06:00", "7:5")]), "rules[2].schedule[0].to");
        assert_eq!(key(vec![entry(None, "24:00", "06:00")]), "rules[2].schedule[0].from");
        assert_eq!(key(vec![entry(None, "06:00", "06:00")]), "rules[2].schedule[0].to");
        assert_eq!(key(vec![entry(Some(&["mon", "funday"]), "06:00", "07:00")]), "rules[2].schedule[0].days[1]");
        assert_eq!(key(vec![entry(Some(&[]), "06:00", "07:00")]), "rules[2].schedule[0].days");
        assert_eq!(key(vec![]), "rules[2].schedule");
        assert!(parse_time("+6:00", false).is_err() && parse_time("06:-1", false).is_err());
        assert!(parse_time("٠٦:00", false).is_err(), "non-ASCII digits");
    }

    #[test]
    fn is_active_uses_the_time_zone() {
        let tz = TimeZone::get("Asia/Shanghai").expect("bundled tzdb");
        let s = Schedule::parse(&[entry(Some(&["mon"]), "06:00", "20:00")], "s").expect("ok");
        // 2026-03-02 is a Monday; 06:30 in Shanghai is 22:30 UTC on Sunday.
        let ts =
            jiff::civil::date(2026, 3, 2).at(6, 30, 0, 0).to_zoned_datetime(tz.clone()).expect("valid").timestamp();
        assert!(s.is_active(ts, &tz));
        assert!(!s.is_active(ts, &TimeZone::UTC));
    }
}
