//! Cron schedules, the pure part: the next tick after an instant, and which ticks are
//! due now given the last one fired. The server's scheduler owns the clock and the
//! cursor (`Store::schedule_cursor`); everything here is a function of its arguments,
//! so daylight-saving transitions and downtime are tested with fixed instants.
//!
//! Expressions are read exactly as `airlock validate` reads them (`croner`'s default
//! parser: five fields, or six with leading seconds) in an IANA time zone. Across
//! daylight-saving transitions croner follows Vixie cron: a fixed-time job whose wall
//! clock time does not exist that day (spring forward) runs at the first instant after
//! the gap, and one whose time happens twice (fall back) runs once, at the first;
//! interval jobs (`*/15 * * * *`) skip the missing hour and run in both repeated ones.
//!
//! # The cursor protocol
//!
//! The cursor is the last tick that fired, or `None` before any did. A scheduler, at
//! each wake-up:
//! 1. calls [`due_ticks`] with the cursor and `now`, and enqueues a run per tick (with a
//!    dedupe key naming the tick, so two processes enqueue it once);
//! 2. moves the cursor to [`next_cursor`] (a compare-and-set, so one process wins).
//!
//! With no cursor (first start of a schedule) nothing that was "missed" fires, since
//! nothing was missed: the schedule did not exist. Only a tick in the current second
//! fires (`trunc(now) <= tick <= now`), and the cursor is then created at `now` even
//! when none fired, so the next wake-up has a window to look in.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// How late a tick may be noticed and still fire under `catch_up: skip`. A scheduler
/// wakes a little late (load, a GC pause, a restart that takes seconds); a tick that
/// late is not "missed". Older ones are dropped.
pub const SKIP_GRACE_SECS: i64 = 60;

/// What to do about ticks missed while nothing was running (`catch_up:` of a cron
/// trigger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CatchUp {
    /// Fire only ticks at most [`SKIP_GRACE_SECS`] old; drop the rest. The default:
    /// a report that was due at 07:00 is not sent at 11:00.
    Skip,
    /// Fire the most recent missed tick only, however old: state is brought up to
    /// date once, not replayed.
    Latest,
    /// Fire every missed tick, oldest first, at most `limit` per call: each tick
    /// stands for work that must be done (a daily invoice run).
    All,
}

impl CatchUp {
    /// The names as a workflow writes them.
    pub const NAMES: &'static [&'static str] = &["skip", "latest", "all"];

    /// The policy named by a workflow's `catch_up:`, if it is one.
    pub fn from_name(name: &str) -> Option<CatchUp> {
        match name {
            "skip" => Some(CatchUp::Skip),
            "latest" => Some(CatchUp::Latest),
            "all" => Some(CatchUp::All),
            _ => None,
        }
    }

    /// The name as a workflow writes it.
    pub fn name(self) -> &'static str {
        match self {
            CatchUp::Skip => "skip",
            CatchUp::Latest => "latest",
            CatchUp::All => "all",
        }
    }
}

/// Why a schedule cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not a cron expression.
    #[error("`{expression}` is not a valid cron expression: {reason}")]
    BadExpression {
        /// The expression.
        expression: String,
        /// croner's reason.
        reason: String,
    },
    /// Not an IANA time zone.
    #[error("unknown time zone `{zone}`")]
    UnknownTimeZone {
        /// The zone as written.
        zone: String,
    },
}

/// A parsed cron expression in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
}

impl Schedule {
    /// Reads `expression` in the IANA zone `tz`.
    pub fn parse(expression: &str, tz: &str) -> Result<Schedule, ScheduleError> {
        let cron = parse_cron(expression).map_err(|e| ScheduleError::BadExpression {
            expression: expression.to_owned(),
            reason: e.to_string(),
        })?;
        let tz = tz
            .parse::<Tz>()
            .map_err(|_| ScheduleError::UnknownTimeZone {
                zone: tz.to_owned(),
            })?;
        Ok(Schedule { cron, tz })
    }

    /// The time zone the expression is read in.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The first tick strictly after `after`, or `None` when there is none (an
    /// expression that can never match again, such as `0 0 30 2 *`, or one past
    /// croner's search range).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut from = after;
        // croner searches from the wall clock second after `from` (sub-seconds are
        // dropped), so its answer is already later than `after`; the loop only guards
        // that promise, which the callers' window arithmetic relies on.
        for _ in 0..4 {
            let found = self
                .cron
                .find_next_occurrence(&from.with_timezone(&self.tz), false)
                .ok()?
                .with_timezone(&Utc);
            if found > after {
                return Some(found);
            }
            from = found;
        }
        None
    }

    /// The last tick at or before `at`, or `None` when there is none.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut from = at;
        let mut inclusive = true;
        for _ in 0..4 {
            let found = self
                .cron
                .find_previous_occurrence(&from.with_timezone(&self.tz), inclusive)
                .ok()?
                .with_timezone(&Utc);
            if found <= at {
                return Some(found);
            }
            from = found;
            inclusive = false;
        }
        None
    }

    /// The ticks to fire now, oldest first: those in `(cursor, now]` that `catch_up`
    /// keeps, at most `limit`. See the module documentation for `cursor: None`.
    ///
    /// When the result is capped, the rest are found by the next call, from the
    /// cursor [`next_cursor`] moves to: a backlog drains `limit` ticks per wake-up
    /// rather than flooding the queue at once.
    pub fn due(
        &self,
        cursor: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        catch_up: CatchUp,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        if limit == 0 {
            return Vec::new();
        }
        // The exclusive lower bound of the window.
        let after = match cursor {
            Some(cursor) => cursor,
            None => start_of_second(now) - TimeDelta::nanoseconds(1),
        };
        if after >= now {
            return Vec::new();
        }
        match catch_up {
            CatchUp::Latest => self
                .latest_at_or_before(now)
                .filter(|tick| *tick > after)
                .into_iter()
                .collect(),
            CatchUp::All => self.forward(after, now, limit),
            CatchUp::Skip => {
                let grace_start =
                    now - TimeDelta::seconds(SKIP_GRACE_SECS) - TimeDelta::nanoseconds(1);
                self.forward(after.max(grace_start), now, limit)
            }
        }
    }

    /// Ticks in `(after, until]`, oldest first, at most `limit`.
    fn forward(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut ticks = Vec::new();
        let mut from = after;
        while ticks.len() < limit {
            match self.next_after(from) {
                Some(tick) if tick <= until => {
                    ticks.push(tick);
                    from = tick;
                }
                _ => break,
            }
        }
        ticks
    }
}

fn start_of_second(at: DateTime<Utc>) -> DateTime<Utc> {
    at - TimeDelta::nanoseconds(i64::from(at.timestamp_subsec_nanos()))
}

/// Reads a cron expression: five fields (minute hour day-of-month month day-of-week), or
/// six with a leading seconds field, for schedules finer than a minute.
pub fn parse_cron(expression: &str) -> Result<Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(expression)
}

/// The first tick of `expr` in zone `tz` strictly after `after`; `Ok(None)` when the
/// expression never matches again.
pub fn next_tick(
    expr: &str,
    tz: &str,
    after: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, ScheduleError> {
    Ok(Schedule::parse(expr, tz)?.next_after(after))
}

/// The ticks of `expr` in zone `tz` to fire at `now`, given the last tick fired
/// (`cursor`): see [`Schedule::due`] and the module documentation.
pub fn due_ticks(
    expr: &str,
    tz: &str,
    cursor: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    catch_up: CatchUp,
    limit: usize,
) -> Result<Vec<DateTime<Utc>>, ScheduleError> {
    Ok(Schedule::parse(expr, tz)?.due(cursor, now, catch_up, limit))
}

/// Where the cursor goes after the `fired` ticks of one [`due_ticks`] call (at `now`
/// with `cursor`): to the last tick fired; with none fired, to `now` for a schedule
/// that had no cursor yet, so the next call has a window; otherwise it stays
/// (`None`: do not move it). Staying is right: `skip` and `latest` look back from
/// `now`, not from the cursor, so an old cursor costs them nothing.
pub fn next_cursor(
    cursor: Option<DateTime<Utc>>,
    fired: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match (fired.last(), cursor) {
        (Some(last), _) => Some(*last),
        (None, None) => Some(now),
        (None, Some(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn due(
        expr: &str,
        tz: &str,
        cursor: Option<&str>,
        now: &str,
        catch_up: CatchUp,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        due_ticks(expr, tz, cursor.map(utc), utc(now), catch_up, limit)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn times(list: &[&str]) -> Vec<DateTime<Utc>> {
        list.iter().map(|t| utc(t)).collect()
    }

    #[test]
    fn next_tick_reads_the_zone() {
        // 07:00 in Paris in winter is 06:00 UTC.
        assert_eq!(
            next_tick("0 7 * * 1-5", "Europe/Paris", utc("2025-01-06T06:30:00Z")),
            Ok(Some(utc("2025-01-07T06:00:00Z")))
        );
        // Strictly after: a tick at `after` itself is not the next one.
        assert_eq!(
            next_tick("0 * * * *", "UTC", utc("2025-01-06T06:00:00Z")),
            Ok(Some(utc("2025-01-06T07:00:00Z")))
        );
        // Six fields: seconds first.
        assert_eq!(
            next_tick("*/20 * * * * *", "UTC", utc("2025-01-06T06:00:00.5Z")),
            Ok(Some(utc("2025-01-06T06:00:20Z")))
        );
    }

    #[test]
    fn bad_input_is_named() {
        assert!(matches!(
            next_tick("61 * * * *", "UTC", utc("2025-01-01T00:00:00Z")),
            Err(ScheduleError::BadExpression { .. })
        ));
        assert_eq!(
            next_tick("0 * * * *", "Mars/Olympus", utc("2025-01-01T00:00:00Z"))
                .unwrap_err()
                .to_string(),
            "unknown time zone `Mars/Olympus`"
        );
    }

    #[test]
    fn an_expression_that_never_matches_has_no_next_tick() {
        let started = std::time::Instant::now();
        assert_eq!(
            next_tick("0 0 30 2 *", "UTC", utc("2025-01-01T00:00:00Z")),
            Ok(None)
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn first_start_fires_only_the_current_second() {
        let e = "0 7 * * *";
        // Started at 07:00:00.4: the 07:00 tick is now.
        assert_eq!(
            due(e, "UTC", None, "2025-03-03T07:00:00.4Z", CatchUp::All, 10),
            times(&["2025-03-03T07:00:00Z"])
        );
        // Started a second later: the schedule did not exist at 07:00; nothing was missed.
        for catch_up in [CatchUp::Skip, CatchUp::Latest, CatchUp::All] {
            assert!(due(e, "UTC", None, "2025-03-03T07:00:01Z", catch_up, 10).is_empty());
        }
        // The cursor is created at `now`, and the next tick fires from it.
        let now = utc("2025-03-03T07:00:01Z");
        let cursor = next_cursor(None, &[], now);
        assert_eq!(cursor, Some(now));
        let later = utc("2025-03-04T07:00:02Z");
        let s = Schedule::parse(e, "UTC").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.due(cursor, later, CatchUp::Skip, 10),
            times(&["2025-03-04T07:00:00Z"])
        );
    }

    #[test]
    fn catch_up_policies_after_downtime() {
        let e = "0 * * * *";
        let cursor = Some("2025-03-03T06:00:00Z");
        // Down from 06:00 to 09:00:30: 07:00, 08:00 and 09:00 were missed.
        let now = "2025-03-03T09:00:30Z";
        assert_eq!(
            due(e, "UTC", cursor, now, CatchUp::Skip, 10),
            times(&["2025-03-03T09:00:00Z"])
        );
        assert_eq!(
            due(e, "UTC", cursor, now, CatchUp::Latest, 10),
            times(&["2025-03-03T09:00:00Z"])
        );
        assert_eq!(
            due(e, "UTC", cursor, now, CatchUp::All, 10),
            times(&[
                "2025-03-03T07:00:00Z",
                "2025-03-03T08:00:00Z",
                "2025-03-03T09:00:00Z"
            ])
        );
        // At 09:30 the 09:00 tick is past the grace: skip drops it, latest still fires it.
        let now = "2025-03-03T09:30:00Z";
        assert!(due(e, "UTC", cursor, now, CatchUp::Skip, 10).is_empty());
        assert_eq!(
            due(e, "UTC", cursor, now, CatchUp::Latest, 10),
            times(&["2025-03-03T09:00:00Z"])
        );
        // Exactly at the edge of the grace it still fires.
        assert_eq!(
            due(e, "UTC", cursor, "2025-03-03T09:01:00Z", CatchUp::Skip, 10),
            times(&["2025-03-03T09:00:00Z"])
        );
        assert!(
            due(
                e,
                "UTC",
                cursor,
                "2025-03-03T09:01:00.001Z",
                CatchUp::Skip,
                10
            )
            .is_empty()
        );
        // A tick already fired does not fire again.
        assert!(
            due(
                e,
                "UTC",
                Some("2025-03-03T09:00:00Z"),
                now,
                CatchUp::Latest,
                10
            )
            .is_empty()
        );
        // A cursor at or after `now` (a clock that went back) fires nothing.
        assert!(due(e, "UTC", Some(now), now, CatchUp::All, 10).is_empty());
        assert!(due(e, "UTC", cursor, now, CatchUp::All, 0).is_empty());
    }

    #[test]
    fn a_backlog_drains_in_batches_through_the_cursor() {
        let s = Schedule::parse("0 * * * *", "UTC").unwrap_or_else(|e| panic!("{e}"));
        let now = utc("2025-03-04T00:00:00Z");
        let mut cursor = Some(utc("2025-03-03T00:00:00Z"));
        let mut fired = Vec::new();
        loop {
            let batch = s.due(cursor, now, CatchUp::All, 5);
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() <= 5);
            fired.extend(&batch);
            cursor = next_cursor(cursor, &batch, now).or(cursor);
        }
        assert_eq!(fired.len(), 24);
        assert_eq!(fired.first(), Some(&utc("2025-03-03T01:00:00Z")));
        assert_eq!(fired.last(), Some(&now));
    }

    // Europe/London springs forward on 2025-03-30 at 01:00 GMT (to 02:00 BST): 01:30
    // does not exist that day. A daily 01:30 job runs once, at the first instant
    // after the gap (02:00 BST = 01:00 UTC), and the days around keep their own time.
    #[test]
    fn london_spring_forward_runs_a_0130_job_once() {
        let ticks = due(
            "30 1 * * *",
            "Europe/London",
            Some("2025-03-29T00:00:00Z"),
            "2025-04-01T00:00:00Z",
            CatchUp::All,
            10,
        );
        assert_eq!(
            ticks,
            times(&[
                "2025-03-29T01:30:00Z", // 01:30 GMT
                "2025-03-30T01:00:00Z", // 02:00 BST, just after the gap
                "2025-03-31T00:30:00Z", // 01:30 BST
            ])
        );
        // An hourly-interval job simply has no 01:xx run that day.
        let hourly = due(
            "30 * * * *",
            "Europe/London",
            Some("2025-03-30T00:00:00Z"),
            "2025-03-30T02:00:00Z",
            CatchUp::All,
            10,
        );
        assert_eq!(
            hourly,
            times(&["2025-03-30T00:30:00Z", "2025-03-30T01:30:00Z"])
        );
    }

    // Europe/London falls back on 2025-10-26 at 02:00 BST (to 01:00 GMT): 01:30 happens
    // twice, at 00:30 UTC and 01:30 UTC. A daily 01:30 job runs once, at the first.
    #[test]
    fn london_fall_back_runs_a_0130_job_once() {
        let ticks = due(
            "30 1 * * *",
            "Europe/London",
            Some("2025-10-25T00:00:00Z"),
            "2025-10-28T00:00:00Z",
            CatchUp::All,
            10,
        );
        assert_eq!(
            ticks,
            times(&[
                "2025-10-25T00:30:00Z", // 01:30 BST
                "2025-10-26T00:30:00Z", // the first 01:30 (BST)
                "2025-10-27T01:30:00Z", // 01:30 GMT
            ])
        );
        // A scheduler that fired the first 01:30 and wakes during the second does not
        // fire it again, whatever the policy.
        for catch_up in [CatchUp::Skip, CatchUp::Latest, CatchUp::All] {
            assert!(
                due(
                    "30 1 * * *",
                    "Europe/London",
                    Some("2025-10-26T00:30:00Z"),
                    "2025-10-26T01:30:20Z",
                    catch_up,
                    10
                )
                .is_empty(),
                "{catch_up:?}"
            );
        }
        // An interval job runs in both repeated hours.
        let half_hourly = due(
            "*/30 * * * *",
            "Europe/London",
            Some("2025-10-25T23:59:00Z"),
            "2025-10-26T02:00:00Z",
            CatchUp::All,
            20,
        );
        assert_eq!(
            half_hourly,
            times(&[
                "2025-10-26T00:00:00Z", // 01:00 BST
                "2025-10-26T00:30:00Z", // 01:30 BST
                "2025-10-26T01:00:00Z", // 01:00 GMT
                "2025-10-26T01:30:00Z", // 01:30 GMT
                "2025-10-26T02:00:00Z", // 02:00 GMT
            ])
        );
    }

    #[test]
    fn catch_up_names_round_trip() {
        for name in CatchUp::NAMES {
            assert_eq!(CatchUp::from_name(name).map(CatchUp::name), Some(*name));
        }
        assert_eq!(CatchUp::from_name("replay"), None);
    }

    const EXPRESSIONS: &[&str] = &[
        "*/7 * * * *",
        "0 * * * *",
        "30 1 * * *",
        "0 2 * * *",
        "*/15 * * * * *",
        "0 9 * * 1-5",
        "15,45 */2 * * *",
    ];
    const ZONES: &[&str] = &[
        "UTC",
        "Europe/London",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
    ];
    /// Instants near transitions in the zones above, so that random windows cross them.
    const NEAR: &[&str] = &[
        "2025-03-30T01:00:00Z",
        "2025-10-26T01:00:00Z",
        "2025-03-09T07:00:00Z",
        "2025-11-02T06:00:00Z",
        "2025-04-05T15:00:00Z",
        "2025-10-04T15:30:00Z",
        "2026-06-15T12:00:00Z",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn due_ticks_are_increasing_and_inside_the_window(
            expr in prop::sample::select(EXPRESSIONS),
            zone in prop::sample::select(ZONES),
            near in prop::sample::select(NEAR),
            offset_s in -86_400i64..86_400,
            offset_ns in 0u32..1_000_000_000,
            window_s in 0i64..(6 * 3600),
            has_cursor in any::<bool>(),
            catch_up in prop::sample::select(&[CatchUp::Skip, CatchUp::Latest, CatchUp::All][..]),
            limit in 0usize..40,
        ) {
            let s = Schedule::parse(expr, zone).unwrap_or_else(|e| panic!("{e}"));
            let start = utc(near) + TimeDelta::seconds(offset_s) + TimeDelta::nanoseconds(i64::from(offset_ns));
            let now = start + TimeDelta::seconds(window_s);
            let cursor = has_cursor.then_some(start);
            let ticks = s.due(cursor, now, catch_up, limit);
            let lower = cursor.unwrap_or_else(|| start_of_second(now) - TimeDelta::nanoseconds(1));
            prop_assert!(ticks.len() <= limit);
            prop_assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{:?}", ticks);
            prop_assert!(ticks.iter().all(|t| lower < *t && *t <= now), "{:?}", ticks);

            // The policies agree with each other: `latest` is the last of `all`, and
            // `skip` is `all` within the grace.
            let every = s.due(cursor, now, CatchUp::All, usize::MAX);
            match catch_up {
                CatchUp::All => prop_assert_eq!(&ticks[..], &every[..ticks.len()]),
                CatchUp::Latest => {
                    let last: Vec<_> = every.last().copied().into_iter().take(limit).collect();
                    prop_assert_eq!(ticks, last);
                }
                CatchUp::Skip => {
                    let graced: Vec<_> = every
                        .iter()
                        .copied()
                        .filter(|t| now - *t <= TimeDelta::seconds(SKIP_GRACE_SECS))
                        .take(limit)
                        .collect();
                    prop_assert_eq!(ticks, graced);
                }
            }
            // And successive `next_after` calls see the same ticks as `all`.
            if let Some(first) = every.first() {
                prop_assert_eq!(s.next_after(lower), Some(*first));
            }
            // The ticks are whole seconds.
            prop_assert!(every.iter().all(|t| t.timestamp_subsec_nanos() == 0));
        }
    }
}
