//! The promotion policy's verdict: which requirements a version must meet to move from
//! one environment to another, scaled by what the workflow touches, and whether the
//! facts meet them. Pure: the facts (evidence, runs, approvals, the time) are given.

use crate::model::{
    FreezeWindow, Manifest, PromotionRule, Requirements, Risk, StagingRuns, Workflow,
};
use chrono::{Datelike, TimeZone, Timelike};
use serde::{Deserialize, Serialize};

/// A workflow's risk: the highest risk of the connectors it calls (internal when it
/// calls none).
pub fn workflow_risk(manifest: &Manifest, workflow: &Workflow) -> Risk {
    workflow
        .connectors_called()
        .iter()
        .filter_map(|name| manifest.connector(name))
        .map(|c| c.risk)
        .max()
        .unwrap_or(Risk::Internal)
}

/// The rule for `from -> to`, if the policy has one.
pub fn rule<'m>(manifest: &'m Manifest, from: &str, to: &str) -> Option<&'m PromotionRule> {
    manifest
        .promotion
        .iter()
        .find(|r| r.from.value == from && r.to.value == to)
}

/// The requirements for a risk class: the rule's baseline, overridden field by field by
/// the class's own entry. `tests` is one field with its coverage shares, as `staging_runs`
/// is one with its failure rate: a class that says `tests: pass` asks for no coverage.
pub fn requirements(rule: &PromotionRule, risk: Risk) -> Requirements {
    let mut merged = rule.require.clone();
    if let Some((_, specific)) = rule.by_risk.iter().find(|(r, _)| *r == risk) {
        if specific.tests.is_some() {
            merged.tests = specific.tests;
            merged.branch_coverage = specific.branch_coverage;
            merged.failure_path_coverage = specific.failure_path_coverage;
        }
        if specific.parity.is_some() {
            merged.parity = specific.parity;
        }
        if specific.staging_runs.is_some() {
            merged.staging_runs = specific.staging_runs;
        }
        if specific.approvals.is_some() {
            merged.approvals = specific.approvals;
        }
    }
    merged
}

/// What is known about a version when its promotion is judged.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Facts {
    /// The newest scenario-suite result for this exact hash: passed or not; None when
    /// the hash was never tested.
    pub tests_passed: Option<bool>,
    /// What that result's scenarios covered of the workflow's branch arms; None when the
    /// hash was never tested (or its evidence predates coverage).
    pub branches: Option<Covered>,
    /// What they covered of its failure paths; None likewise.
    pub failure_paths: Option<Covered>,
    /// Whether the parity report between the two environments shows no drift.
    pub parity_clean: Option<bool>,
    /// Finished runs of this hash in the source environment.
    pub source_runs: u32,
    /// How many of them failed or went dead.
    pub source_failures: u32,
    /// Approvers who said yes (the author excluded).
    pub approvals: Vec<String>,
    /// Now, in milliseconds since the epoch (for freeze windows).
    pub now_ms: i64,
    /// The exception the request's author stated for promoting inside a freeze window,
    /// if any: with one, a freeze no longer refuses the promotion; the approvers still
    /// decide, and see it in the verdict.
    pub freeze_exception: Option<FreezeException>,
    /// The target's gate, which no policy lowers (see [`Gate`]).
    pub gate: Gate,
}

/// What the target of a promotion is, for the floors no policy goes under and for
/// whether the approval rule can be met at all.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Gate {
    /// The target is protected: tests must pass for the exact hash and at least
    /// [`PROTECTED_MIN_APPROVALS`] approval by someone other than the author is needed,
    /// whatever `airlock.yaml` says.
    pub protected: bool,
    /// The target's approvers (as it runs them: its released configuration).
    pub approvers: Vec<String>,
    /// Who asked for the promotion (never one of its approvals).
    pub author: String,
}

/// The fewest approvals a change into a protected environment needs, whatever the
/// policy says.
pub const PROTECTED_MIN_APPROVALS: u32 = 1;

/// The requirements with a protected target's floors applied: tests pass for the exact
/// hash, at least one approval. An unprotected target keeps what its rule says.
pub fn with_floors(mut required: Requirements, protected: bool) -> Requirements {
    if protected {
        required.tests = Some(true);
        required.approvals = Some(required.approvals.unwrap_or(0).max(PROTECTED_MIN_APPROVALS));
    }
    required
}

/// The check that fails when `required` approvals can never be given to a request by
/// `author` into `environment`: the author cannot approve, so only the other approvers
/// count. `None` when the rule can be met.
pub fn unmeetable_approvals(
    environment: &str,
    required: u32,
    approvers: &[String],
    author: &str,
) -> Option<Check> {
    let eligible: Vec<&str> = approvers
        .iter()
        .map(String::as_str)
        .filter(|a| *a != author)
        .collect();
    if eligible.len() as u32 >= required {
        return None;
    }
    Some(Check {
        requirement: "approvable".into(),
        required: format!(
            "{required} approval{} possible from {environment}'s approvers other than the author ({author})",
            plural(required)
        ),
        actual: if eligible.is_empty() {
            "nobody but the author can approve: this request could never pass".to_owned()
        } else {
            format!(
                "only {} ({}) can approve: this request could never pass",
                eligible.len(),
                eligible.join(", ")
            )
        },
        met: false,
    })
}

/// How many items of one coverage category (branch arms, failure paths) a tested
/// version's scenarios reached, as `airlock test` records it in its evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Covered {
    /// Items reached.
    pub covered: u64,
    /// Items in all.
    pub total: u64,
}

impl Covered {
    /// The share reached, 0.0 to 1.0; 1.0 when there is nothing to reach.
    pub fn ratio(self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.covered as f64 / self.total as f64
        }
    }
}

/// Why a promotion goes ahead inside a freeze window, and who said so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeException {
    /// The request's author, who stated it.
    pub by: String,
    /// Their reason, as written.
    pub reason: String,
}

/// One requirement, what it asks, what was found, and whether it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// `tests`, `parity`, `staging_runs`, `approvals`, `freeze`.
    pub requirement: String,
    /// What is required, in words.
    pub required: String,
    /// What was found, in words.
    pub actual: String,
    /// Whether it holds.
    pub met: bool,
}

/// The verdict on a promotion, requirement by requirement.
// Deserialize too: the CLI reads a verdict back from the API and prints it as it prints
// its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The workflow's risk class.
    pub risk: Risk,
    /// Every requirement checked.
    pub checks: Vec<Check>,
}

impl Verdict {
    /// Whether every requirement holds.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.met)
    }

    /// Whether everything but approvals holds (the request can wait for approvers).
    pub fn ready_for_approval(&self) -> bool {
        self.checks
            .iter()
            .all(|c| c.met || c.requirement == "approvals")
    }
}

/// Judges a promotion.
pub fn verdict(rule: &PromotionRule, risk: Risk, facts: &Facts) -> Verdict {
    let required = with_floors(requirements(rule, risk), facts.gate.protected);
    let mut checks = Vec::new();
    if required.approvals.unwrap_or(0) > 0
        && let Some(check) = unmeetable_approvals(
            &rule.to.value,
            required.approvals.unwrap_or(0),
            &facts.gate.approvers,
            &facts.gate.author,
        )
    {
        checks.push(check);
    }
    if required.tests == Some(true) {
        checks.push(Check {
            requirement: "tests".into(),
            required: "scenario tests passed for this exact hash".into(),
            actual: match facts.tests_passed {
                Some(true) => "passed".into(),
                Some(false) => "failed".into(),
                None => "never run for this hash".into(),
            },
            met: facts.tests_passed == Some(true),
        });
    }
    for (requirement, items, minimum, found) in [
        (
            "branches",
            "branches",
            required.branch_coverage,
            facts.branches,
        ),
        (
            "failure_paths",
            "failure paths",
            required.failure_path_coverage,
            facts.failure_paths,
        ),
    ] {
        if let Some(minimum) = minimum {
            checks.push(coverage_check(
                requirement,
                items,
                minimum,
                found,
                facts.tests_passed,
            ));
        }
    }
    if required.parity == Some(true) {
        checks.push(Check {
            requirement: "parity".into(),
            required: format!(
                "no undocumented difference between {} and {}",
                rule.from.value, rule.to.value
            ),
            actual: match facts.parity_clean {
                Some(true) => "clean".into(),
                Some(false) => "drift found (see `airlock diff`)".into(),
                None => "not checked".into(),
            },
            met: facts.parity_clean == Some(true),
        });
    }
    if let Some(StagingRuns {
        min,
        max_failure_rate,
    }) = required.staging_runs
    {
        let rate = if facts.source_runs == 0 {
            0.0
        } else {
            f64::from(facts.source_failures) / f64::from(facts.source_runs)
        };
        checks.push(Check {
            requirement: "staging_runs".into(),
            required: format!(
                "at least {min} runs of this hash in {}, failure rate at most {:.0}%",
                rule.from.value,
                max_failure_rate * 100.0
            ),
            actual: format!(
                "{} runs, {} failed ({:.0}%)",
                facts.source_runs,
                facts.source_failures,
                rate * 100.0
            ),
            met: facts.source_runs >= min && rate <= max_failure_rate + f64::EPSILON,
        });
    }
    let approvals = required.approvals.unwrap_or(0);
    if approvals > 0 {
        checks.push(Check {
            requirement: "approvals".into(),
            required: format!(
                "{approvals} approval{} from {}'s approvers, not the author",
                plural(approvals),
                rule.to.value
            ),
            actual: if facts.approvals.is_empty() {
                "none".into()
            } else {
                format!("{} ({})", facts.approvals.len(), facts.approvals.join(", "))
            },
            met: facts.approvals.len() as u32 >= approvals,
        });
    }
    if let Some(window) = frozen(&rule.freeze, facts.now_ms) {
        let window = format!(
            "frozen from {} to {} ({})",
            weekly(window.from),
            weekly(window.to),
            window.timezone
        );
        checks.push(match &facts.freeze_exception {
            Some(exception) => Check {
                requirement: "freeze".into(),
                required: "outside freeze windows, or a stated exception".into(),
                actual: format!(
                    "{window}; exception by {}: {}",
                    exception.by, exception.reason
                ),
                met: true,
            },
            None => Check {
                requirement: "freeze".into(),
                required: "outside freeze windows, or a stated exception".into(),
                actual: window,
                met: false,
            },
        });
    }
    Verdict { risk, checks }
}

/// One coverage requirement: "failure paths covered 0 of 1 (0%), required 100%".
fn coverage_check(
    requirement: &str,
    items: &str,
    minimum: f64,
    found: Option<Covered>,
    tested: Option<bool>,
) -> Check {
    let required = percent(minimum);
    let (actual, met) = match found {
        // Compared on the counts, not on a rounded percentage: 2 of 3 does not meet 67%.
        Some(c) if c.total == 0 => (format!("no {items} to cover"), true),
        Some(c) => (
            format!(
                "{items} covered {} of {} ({}), required {required}",
                c.covered,
                c.total,
                percent(c.ratio())
            ),
            c.covered as f64 >= minimum * c.total as f64 - 1e-9,
        ),
        None if tested.is_some() => (
            format!("no coverage of {items} recorded for this hash: run `airlock test` again"),
            false,
        ),
        None => ("never tested for this hash".to_owned(), false),
    };
    Check {
        requirement: requirement.into(),
        required: if minimum >= 1.0 {
            format!("scenarios cover all its {items}")
        } else {
            format!("scenarios cover at least {required} of its {items}")
        },
        actual,
        met,
    }
}

/// A share as a percentage, to a tenth where that is needed: 100%, 80%, 66.7%.
pub fn percent(share: f64) -> String {
    let tenths = (share * 1000.0).round() / 10.0;
    if tenths.fract() == 0.0 {
        format!("{tenths:.0}%")
    } else {
        format!("{tenths:.1}%")
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A weekly time as `Fri 15:00`.
pub fn weekly((day, minute): (u8, u16)) -> String {
    format!(
        "{} {:02}:{:02}",
        DAYS[usize::from(day % 7)],
        minute / 60,
        minute % 60
    )
}

/// The freeze window `now_ms` falls in, if any. A window may wrap around the week
/// (Friday 15:00 to Monday 08:00).
pub fn frozen(windows: &[FreezeWindow], now_ms: i64) -> Option<&FreezeWindow> {
    windows.iter().find(|window| {
        let Ok(tz) = window.timezone.parse::<chrono_tz::Tz>() else {
            return false;
        };
        let Some(local) = tz.timestamp_millis_opt(now_ms).single() else {
            return false;
        };
        let now =
            local.weekday().num_days_from_monday() * 24 * 60 + local.hour() * 60 + local.minute();
        let at = |(day, minute): (u8, u16)| u32::from(day) * 24 * 60 + u32::from(minute);
        let (from, to) = (at(window.from), at(window.to));
        if from <= to {
            from <= now && now < to
        } else {
            now >= from || now < to
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Located;
    use crate::diagnostic::Span;

    fn located(text: &str) -> Located<String> {
        Located::new(text.to_owned(), Span::default())
    }

    fn rule() -> PromotionRule {
        PromotionRule {
            from: located("staging"),
            to: located("production"),
            require: Requirements {
                tests: Some(true),
                parity: Some(true),
                staging_runs: Some(StagingRuns {
                    min: 5,
                    max_failure_rate: 0.0,
                }),
                approvals: Some(1),
                ..Requirements::default()
            },
            by_risk: vec![
                (
                    Risk::Finance,
                    Requirements {
                        approvals: Some(2),
                        ..Requirements::default()
                    },
                ),
                (
                    Risk::Internal,
                    Requirements {
                        staging_runs: Some(StagingRuns {
                            min: 1,
                            max_failure_rate: 0.0,
                        }),
                        ..Requirements::default()
                    },
                ),
            ],
            freeze: vec![FreezeWindow {
                from: (4, 15 * 60),
                to: (0, 8 * 60),
                timezone: "UTC".into(),
            }],
            expires: None,
        }
    }

    fn good() -> Facts {
        Facts {
            tests_passed: Some(true),
            parity_clean: Some(true),
            source_runs: 5,
            source_failures: 0,
            approvals: vec!["ops-lead".into()],
            // Wednesday 2026-11-25 12:00 UTC
            now_ms: 1_795_608_000_000,
            freeze_exception: None,
            gate: Gate {
                protected: true,
                approvers: vec!["ops-lead".into(), "cfo".into(), "sre".into()],
                author: "dev".into(),
            },
            ..Facts::default()
        }
    }

    #[test]
    fn floors_hold_in_a_protected_target_whatever_the_file_says() {
        let mut lowered = rule();
        lowered.require = Requirements {
            tests: Some(false),
            parity: Some(false),
            staging_runs: None,
            approvals: Some(0),
            ..Requirements::default()
        };
        lowered.by_risk.clear();
        lowered.freeze.clear();
        let untested = Facts {
            tests_passed: None,
            approvals: Vec::new(),
            ..good()
        };
        let judged = verdict(&lowered, Risk::Finance, &untested);
        assert_eq!(unmet(&judged), ["tests", "approvals"]);
        // An unprotected target keeps what its rule says.
        let unprotected = Facts {
            gate: Gate {
                protected: false,
                ..good().gate
            },
            ..untested
        };
        assert!(verdict(&lowered, Risk::Finance, &unprotected).passed());
    }

    #[test]
    fn an_approval_rule_that_cannot_be_met_for_the_author_says_so_with_the_names() {
        let facts = Facts {
            approvals: Vec::new(),
            gate: Gate {
                protected: true,
                approvers: vec!["ops-lead".into(), "cfo".into()],
                author: "ops-lead".into(),
            },
            ..good()
        };
        let judged = verdict(&rule(), Risk::Finance, &facts);
        assert!(!judged.ready_for_approval());
        let check = judged
            .checks
            .iter()
            .find(|c| c.requirement == "approvable")
            .expect("the unmeetable rule is a check");
        assert!(check.actual.contains("only 1 (cfo)"), "{}", check.actual);
        assert!(check.required.contains("ops-lead"), "{}", check.required);
        // The same rule for an author who is not an approver can be met.
        let by_dev = Facts {
            gate: Gate {
                author: "dev".into(),
                ..facts.gate.clone()
            },
            ..facts
        };
        assert!(verdict(&rule(), Risk::Finance, &by_dev).ready_for_approval());
    }

    fn unmet(verdict: &Verdict) -> Vec<&str> {
        verdict
            .checks
            .iter()
            .filter(|c| !c.met)
            .map(|c| c.requirement.as_str())
            .collect()
    }

    #[test]
    fn every_gate_must_hold() {
        assert!(verdict(&rule(), Risk::Customer, &good()).passed());
        let cases: Vec<(Facts, &str)> = vec![
            (
                Facts {
                    tests_passed: None,
                    ..good()
                },
                "tests",
            ),
            (
                Facts {
                    tests_passed: Some(false),
                    ..good()
                },
                "tests",
            ),
            (
                Facts {
                    parity_clean: Some(false),
                    ..good()
                },
                "parity",
            ),
            (
                Facts {
                    source_runs: 4,
                    ..good()
                },
                "staging_runs",
            ),
            (
                Facts {
                    source_failures: 1,
                    ..good()
                },
                "staging_runs",
            ),
            (
                Facts {
                    approvals: vec![],
                    ..good()
                },
                "approvals",
            ),
        ];
        for (facts, gate) in cases {
            let v = verdict(&rule(), Risk::Customer, &facts);
            assert_eq!(unmet(&v), [gate], "{facts:?}");
        }
    }

    #[test]
    fn risk_scales_the_gate() {
        let finance = verdict(&rule(), Risk::Finance, &good());
        assert_eq!(
            unmet(&finance),
            ["approvals"],
            "finance needs two approvals"
        );
        let two = Facts {
            approvals: vec!["ops-lead".into(), "cfo".into()],
            ..good()
        };
        assert!(verdict(&rule(), Risk::Finance, &two).passed());
        let light = Facts {
            source_runs: 1,
            ..good()
        };
        assert!(
            verdict(&rule(), Risk::Internal, &light).passed(),
            "internal-only workflows take a lighter path"
        );
        assert!(!verdict(&rule(), Risk::Customer, &light).passed());
    }

    #[test]
    fn a_freeze_window_wrapping_the_weekend_refuses() {
        // Saturday 2026-11-28 10:00 UTC and Friday 16:00, Monday 07:59; Monday 08:00 is open.
        for (now, is_frozen) in [
            (1_795_860_000_000, true),
            (1_795_795_200_000, true),
            (1_796_025_540_000, true),
            (1_796_025_600_000, false),
        ] {
            let v = verdict(
                &rule(),
                Risk::Customer,
                &Facts {
                    now_ms: now,
                    ..good()
                },
            );
            assert_eq!(unmet(&v).contains(&"freeze"), is_frozen, "at {now}");
        }
    }

    #[test]
    fn a_stated_exception_lets_a_promotion_through_a_freeze_and_says_so() {
        let saturday = 1_795_860_000_000;
        let exception = FreezeException {
            by: "dev".into(),
            reason: "the fix for INC-42".into(),
        };
        let v = verdict(
            &rule(),
            Risk::Customer,
            &Facts {
                now_ms: saturday,
                freeze_exception: Some(exception.clone()),
                ..good()
            },
        );
        assert!(v.passed(), "{v:?}");
        let freeze = v
            .checks
            .iter()
            .find(|c| c.requirement == "freeze")
            .expect("the freeze is still shown");
        assert!(freeze.met);
        assert!(
            freeze
                .actual
                .ends_with("; exception by dev: the fix for INC-42"),
            "{}",
            freeze.actual
        );
        // Outside a window an exception changes nothing and shows nothing.
        let v = verdict(
            &rule(),
            Risk::Customer,
            &Facts {
                now_ms: 1_796_025_600_000,
                freeze_exception: Some(exception),
                ..good()
            },
        );
        assert!(v.checks.iter().all(|c| c.requirement != "freeze"));
        // Without one, the approvals that are all that is missing do not open the way.
        let v = verdict(
            &rule(),
            Risk::Customer,
            &Facts {
                now_ms: saturday,
                ..good()
            },
        );
        assert!(!v.ready_for_approval());
    }

    /// The rule, asking for coverage: every failure path, 80% of branch arms.
    fn with_coverage() -> PromotionRule {
        let mut rule = rule();
        rule.require.branch_coverage = Some(0.8);
        rule.require.failure_path_coverage = Some(1.0);
        rule
    }

    fn covered(covered: u64, total: u64) -> Option<Covered> {
        Some(Covered { covered, total })
    }

    fn check<'v>(verdict: &'v Verdict, requirement: &str) -> &'v Check {
        verdict
            .checks
            .iter()
            .find(|c| c.requirement == requirement)
            .unwrap_or_else(|| panic!("no {requirement} check in {verdict:?}"))
    }

    #[test]
    fn a_workflow_with_0_of_1_failure_paths_covered_is_not_promoted_when_the_policy_asks_for_all() {
        let facts = Facts {
            branches: covered(2, 2),
            failure_paths: covered(0, 1),
            ..good()
        };
        let v = verdict(&with_coverage(), Risk::Customer, &facts);
        assert_eq!(unmet(&v), ["failure_paths"], "{v:?}");
        assert!(!v.ready_for_approval(), "approvals cannot make up for it");
        let failure_paths = check(&v, "failure_paths");
        assert_eq!(
            failure_paths.actual,
            "failure paths covered 0 of 1 (0%), required 100%"
        );
        assert_eq!(
            failure_paths.required,
            "scenarios cover all its failure paths"
        );
        assert_eq!(
            check(&v, "branches").actual,
            "branches covered 2 of 2 (100%), required 80%"
        );
        // Without a coverage requirement the same facts pass, as they did before.
        assert!(verdict(&rule(), Risk::Customer, &facts).passed());
    }

    #[test]
    fn coverage_is_judged_on_the_counts() {
        let judged = |branches, failure_paths| {
            let facts = Facts {
                branches,
                failure_paths,
                ..good()
            };
            unmet(&verdict(&with_coverage(), Risk::Customer, &facts))
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert!(
            judged(covered(4, 5), covered(1, 1)).is_empty(),
            "80% is 80%"
        );
        assert_eq!(
            judged(covered(3, 4), covered(2, 2)),
            ["branches"],
            "75% < 80%"
        );
        assert!(
            judged(covered(0, 0), covered(0, 0)).is_empty(),
            "nothing to cover is covered"
        );
        // Never tested, or tested before coverage was recorded: not met, and said why.
        let never = verdict(
            &with_coverage(),
            Risk::Customer,
            &Facts {
                tests_passed: None,
                ..good()
            },
        );
        assert_eq!(
            check(&never, "failure_paths").actual,
            "never tested for this hash"
        );
        let old = verdict(&with_coverage(), Risk::Customer, &good());
        assert_eq!(unmet(&old), ["branches", "failure_paths"]);
        assert!(
            check(&old, "branches")
                .actual
                .starts_with("no coverage of branches recorded for this hash")
        );
        // 2 of 3 is 66.7%, shown to a tenth; it does not meet 66.7% asked as 0.667.
        let mut two_thirds = with_coverage();
        two_thirds.require.branch_coverage = Some(0.667);
        let v = verdict(
            &two_thirds,
            Risk::Customer,
            &Facts {
                branches: covered(2, 3),
                failure_paths: covered(1, 1),
                ..good()
            },
        );
        assert_eq!(
            check(&v, "branches").actual,
            "branches covered 2 of 3 (66.7%), required 66.7%"
        );
        assert!(!check(&v, "branches").met);
    }

    #[test]
    fn a_risk_class_that_says_tests_says_its_coverage_too() {
        let mut rule = with_coverage();
        rule.by_risk = vec![
            (
                Risk::Internal,
                Requirements {
                    tests: Some(true),
                    ..Requirements::default()
                },
            ),
            (
                Risk::Finance,
                Requirements {
                    tests: Some(true),
                    branch_coverage: Some(1.0),
                    ..Requirements::default()
                },
            ),
            (
                Risk::Customer,
                Requirements {
                    approvals: Some(1),
                    ..Requirements::default()
                },
            ),
        ];
        let of = |risk| {
            let r = requirements(&rule, risk);
            (r.branch_coverage, r.failure_path_coverage)
        };
        assert_eq!(
            of(Risk::Internal),
            (None, None),
            "`tests: pass` asks for none"
        );
        assert_eq!(of(Risk::Finance), (Some(1.0), None));
        assert_eq!(
            of(Risk::Customer),
            (Some(0.8), Some(1.0)),
            "inherited whole"
        );
    }
}
