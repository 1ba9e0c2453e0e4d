//! When a site is up, on the simulated clock: its office hours and days in its time zone, its
//! trace of online intervals, less its maintenance windows. Times are seconds after the
//! study's start.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::scenario::SiteAvailability;

/// A site's up-time.
#[derive(Debug, Clone)]
pub struct Calendar {
    start: DateTime<Utc>,
    tz: Tz,
    hours: Option<(u32, u32)>,
    days: [bool; 7],
    /// Online intervals from a trace (None: no trace, always up as far as it goes).
    trace: Option<Vec<(f64, f64)>>,
    /// Maintenance windows.
    down: Vec<(f64, f64)>,
}

/// How far ahead the calendar looks for the next up-time before it says there is none.
const HORIZON: f64 = 10.0 * 365.0 * 86_400.0;

impl Calendar {
    /// Always up.
    pub fn always(start: DateTime<Utc>) -> Calendar {
        Calendar {
            start,
            tz: Tz::UTC,
            hours: None,
            days: [true; 7],
            trace: None,
            down: Vec::new(),
        }
    }

    /// `a`'s calendar, with its trace's intervals (if it has a trace).
    pub fn of(
        a: &SiteAvailability,
        start: DateTime<Utc>,
        trace: Option<Vec<(f64, f64)>>,
    ) -> Calendar {
        let secs = |t: &DateTime<Utc>| (*t - start).num_milliseconds() as f64 / 1e3;
        Calendar {
            start,
            tz: a.timezone,
            hours: a.hours,
            days: a.days,
            trace,
            down: merged(a.maintenance.iter().map(|(f, u)| (secs(f), secs(u)))),
        }
    }

    /// The first up interval that ends after `t` (its start may be before `t`), or None if
    /// the site is never up again.
    pub fn next_up(&self, t: f64) -> Option<(f64, f64)> {
        let mut a = t;
        // Each part moves `a` to where it is up; when none moves it, all are up at `a`.
        for _ in 0..100_000 {
            if a > t + HORIZON {
                return None;
            }
            let mut b = f64::INFINITY;
            let mut moved = false;
            for (pa, pb) in [self.weekly(a)?, self.traced(a)?, self.not_down(a)] {
                if pa > a {
                    a = pa;
                    moved = true;
                }
                b = b.min(pb);
            }
            if !moved {
                return Some((a, b));
            }
        }
        None
    }

    /// When `work` seconds of computing that may start at `t` end: it runs only while the
    /// site is up, pausing over its off-hours. None if the site is never up again.
    pub fn work(&self, t: f64, work: f64) -> Option<f64> {
        let (mut t, mut left) = (t, work);
        loop {
            let (a, b) = self.next_up(t)?;
            let a = a.max(t);
            if a + left <= b {
                return Some(a + left);
            }
            left -= b - a;
            t = b;
        }
    }

    /// The instant `t` seconds after the start.
    pub fn instant(&self, t: f64) -> DateTime<Utc> {
        self.start + Duration::milliseconds((t * 1e3).round() as i64)
    }

    /// Office hours: the window (of a day that is on) that ends after `t`.
    fn weekly(&self, t: f64) -> Option<(f64, f64)> {
        let Some((from, until)) = self.hours else {
            if self.days == [true; 7] {
                return Some((f64::NEG_INFINITY, f64::INFINITY));
            }
            return self.window(t, 0, 24 * 60);
        };
        self.window(t, from, until)
    }

    fn window(&self, t: f64, from: u32, until: u32) -> Option<(f64, f64)> {
        let local = self.instant(t).with_timezone(&self.tz).date_naive();
        let secs = |date: NaiveDate, minutes: u32| {
            let at = date.and_time(NaiveTime::MIN) + Duration::minutes(minutes as i64);
            // A local time a clock change skips is taken an hour later.
            let utc = self
                .tz
                .from_local_datetime(&at)
                .earliest()
                .or_else(|| {
                    self.tz
                        .from_local_datetime(&(at + Duration::hours(1)))
                        .earliest()
                })?
                .with_timezone(&Utc);
            Some((utc - self.start).num_milliseconds() as f64 / 1e3)
        };
        let mut day = local.pred_opt()?;
        for _ in 0..9 {
            if self.days[day.weekday().num_days_from_monday() as usize] {
                let a = secs(day, from)?;
                let b = if until > from {
                    secs(day, until)?
                } else {
                    secs(day.succ_opt()?, until)?
                };
                if b > t {
                    return Some((a, b));
                }
            }
            day = day.succ_opt()?;
        }
        None
    }

    /// The trace's interval that ends after `t`.
    fn traced(&self, t: f64) -> Option<(f64, f64)> {
        let Some(trace) = &self.trace else {
            return Some((f64::NEG_INFINITY, f64::INFINITY));
        };
        let i = trace.partition_point(|(_, b)| *b <= t);
        trace.get(i).copied()
    }

    /// The stretch between maintenance windows that ends after `t`.
    fn not_down(&self, t: f64) -> (f64, f64) {
        let mut from = f64::NEG_INFINITY;
        for &(a, b) in &self.down {
            if a > t {
                return (from, a);
            }
            if t < b {
                from = b;
                // `t` is inside this window: up again at its end, until the next one.
                return self
                    .down
                    .iter()
                    .find(|(na, _)| *na >= b)
                    .map_or((from, f64::INFINITY), |(na, _)| (from, *na));
            }
            from = b;
        }
        (from, f64::INFINITY)
    }
}

/// Windows sorted, and those that overlap (from different entries) joined into one.
fn merged(windows: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    let mut w: Vec<(f64, f64)> = windows.collect();
    w.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(w.len());
    for (a, b) in w {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::SiteAvailability;

    fn monday_8_utc() -> DateTime<Utc> {
        "2027-01-04T08:00:00Z".parse().unwrap()
    }

    fn berlin_office() -> SiteAvailability {
        SiteAvailability {
            timezone: Tz::Europe__Berlin,
            hours: Some((8 * 60, 18 * 60)),
            days: [true, true, true, true, true, false, false],
            ..Default::default()
        }
    }

    const H: f64 = 3600.0;

    /// Berlin is UTC+1 in January: 08:00 UTC is 09:00 there, inside its hours until 17:00 UTC.
    #[test]
    fn office_hours_in_the_site_s_own_time_zone() {
        let c = Calendar::of(&berlin_office(), monday_8_utc(), None);
        // (An interval that began before `t` is given from `t`.)
        assert_eq!(c.next_up(0.0), Some((0.0, 9.0 * H)));
        // Friday 17:00 UTC is after hours: next up Monday 07:00 UTC.
        let friday_evening = 4.0 * 24.0 * H + 9.0 * H + 60.0;
        let (a, _) = c.next_up(friday_evening).unwrap();
        assert_eq!(a, 7.0 * 24.0 * H - H);
        // Ten hours of work from Monday 08:00 UTC: nine on Monday, one from Tuesday 07:00 UTC.
        assert_eq!(c.work(0.0, 10.0 * H), Some(24.0 * H - H + H));
    }

    /// Spring forward: Berlin's office opens at 08:00 local, which is 06:00 UTC from March 29.
    #[test]
    fn a_clock_change_moves_the_hours_in_utc() {
        let start: DateTime<Utc> = "2027-03-26T12:00:00Z".parse().unwrap(); // a Friday
        let c = Calendar::of(&berlin_office(), start, None);
        let (a, b) = c.next_up(6.0 * H).unwrap(); // Friday 18:00 UTC: closed
        assert_eq!(c.instant(a).to_rfc3339(), "2027-03-29T06:00:00+00:00");
        assert_eq!(b - a, 10.0 * H);
    }

    /// Maintenance cuts a window; a trace bounds it; past the trace the site is never up.
    #[test]
    fn maintenance_and_a_trace_cut_the_hours() {
        let start = monday_8_utc();
        let mut a = berlin_office();
        a.maintenance = vec![(start + Duration::hours(1), start + Duration::hours(3))];
        let c = Calendar::of(&a, start, Some(vec![(0.0, 2.0 * H), (2.5 * H, 5.0 * H)]));
        assert_eq!(c.next_up(0.0), Some((0.0, H)));
        assert_eq!(c.next_up(H), Some((3.0 * H, 5.0 * H)));
        assert_eq!(c.work(0.0, 2.0 * H), Some(4.0 * H));
        assert_eq!(c.next_up(5.0 * H), None);
        assert_eq!(Calendar::always(start).work(7.0, 3.0), Some(10.0));
        // Windows from two entries that overlap are one.
        let b = SiteAvailability {
            maintenance: vec![
                (start + Duration::hours(1), start + Duration::hours(3)),
                (start + Duration::hours(2), start + Duration::hours(4)),
            ],
            ..Default::default()
        };
        let c = Calendar::of(&b, start, None);
        assert_eq!(c.next_up(H), Some((4.0 * H, f64::INFINITY)));
    }
}
