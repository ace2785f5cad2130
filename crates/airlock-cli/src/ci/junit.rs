//! `airlock test --junit FILE`: the scenario suite as JUnit XML, the format CI systems
//! (GitHub Actions reporters, GitLab, Jenkins) show as a test report. One test suite per
//! workflow (its version hash a property, since the evidence is bound to it), one test case
//! per scenario, each failed expectation in its failure's text.

use airlock_core::suite::WorkflowReport;
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use std::collections::HashMap;
use std::time::Duration;

/// The report. `files` maps (workflow, scenario) to the scenario's file, so a reporter can
/// link the failure to it.
pub fn report(
    reports: &[WorkflowReport],
    files: &HashMap<(&str, &str), &str>,
    elapsed: Duration,
) -> Report {
    let mut junit = Report::new("airlock test");
    junit.set_time(elapsed);
    for workflow in reports {
        let mut suite = TestSuite::new(workflow.workflow.as_str());
        suite.add_property(Property::new("version", workflow.version.as_str()));
        suite.add_property(Property::new(
            "evidence",
            if workflow.passed { "passed" } else { "failed" },
        ));
        if workflow.results.is_empty() {
            // No scenario is a failed suite (the evidence records it so): say it where the
            // reporter looks rather than show an empty, green suite.
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(format!(
                "no scenarios under tests/{}/: nothing was tested",
                workflow.workflow
            ));
            let mut case = TestCase::new("(no scenarios)", status);
            case.set_classname(workflow.workflow.as_str());
            suite.add_test_case(case);
        }
        for result in &workflow.results {
            let status = if result.passed {
                TestCaseStatus::success()
            } else {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(
                    result
                        .failures
                        .first()
                        .cloned()
                        .unwrap_or_else(|| format!("the run ended {}", result.status)),
                );
                status.set_type("expectation");
                status.set_description(result.failures.join("\n"));
                status
            };
            let mut case = TestCase::new(result.name.as_str(), status);
            case.set_classname(workflow.workflow.as_str());
            if let Some(file) = files.get(&(result.workflow.as_str(), result.name.as_str())) {
                case.extra.insert("file".into(), (*file).into());
            }
            suite.add_test_case(case);
        }
        junit.add_test_suite(suite);
    }
    junit
}
