//! The project `airlock init` writes: two environments with documented differences,
//! an order-intake workflow (webhook) and a credit-review workflow (cron and an
//! approval), and scenarios for both. The staging it describes runs offline. Each YAML
//! file starts with the `yaml-language-server` modeline naming its schema under `schemas/`.

/// Every file of the starter project: relative path and contents.
pub const FILES: &[(&str, &str)] = &[
    ("airlock.yaml", include_str!("../scaffold/airlock.yaml")),
    (
        "workflows/order-intake.yaml",
        include_str!("../scaffold/workflows/order-intake.yaml"),
    ),
    (
        "workflows/credit-review.yaml",
        include_str!("../scaffold/workflows/credit-review.yaml"),
    ),
    (
        "tests/order-intake/big-order.yaml",
        include_str!("../scaffold/tests/order-intake/big-order.yaml"),
    ),
    (
        "tests/order-intake/small-order.yaml",
        include_str!("../scaffold/tests/order-intake/small-order.yaml"),
    ),
    (
        "tests/order-intake/crm-flaky.yaml",
        include_str!("../scaffold/tests/order-intake/crm-flaky.yaml"),
    ),
    (
        "tests/order-intake/crm-down.yaml",
        include_str!("../scaffold/tests/order-intake/crm-down.yaml"),
    ),
    (
        "tests/credit-review/reminders-approved.yaml",
        include_str!("../scaffold/tests/credit-review/reminders-approved.yaml"),
    ),
    (
        "tests/credit-review/nothing-overdue.yaml",
        include_str!("../scaffold/tests/credit-review/nothing-overdue.yaml"),
    ),
    (
        "tests/credit-review/reminders-rejected.yaml",
        include_str!("../scaffold/tests/credit-review/reminders-rejected.yaml"),
    ),
    (
        "tests/credit-review/reminders-mail-retried.yaml",
        include_str!("../scaffold/tests/credit-review/reminders-mail-retried.yaml"),
    ),
    ("db/orders.sql", include_str!("../scaffold/db/orders.sql")),
    (
        "examples/order.json",
        include_str!("../scaffold/examples/order.json"),
    ),
    (
        "examples/small-order.json",
        include_str!("../scaffold/examples/small-order.json"),
    ),
    // Large and unpaid: what `credit-review` finds overdue, so that its run reaches the
    // approval step (the README's tour runs it before `run credit-review`).
    (
        "examples/overdue-order.json",
        include_str!("../scaffold/examples/overdue-order.json"),
    ),
    // The schemas the modelines on each file's first line point to, so that an editor
    // checks and completes the files offline (`airlock schema` prints the same).
    (
        "schemas/manifest.schema.json",
        include_str!("../schemas/manifest.schema.json"),
    ),
    (
        "schemas/workflow.schema.json",
        include_str!("../schemas/workflow.schema.json"),
    ),
    (
        "schemas/scenario.schema.json",
        include_str!("../schemas/scenario.schema.json"),
    ),
];

/// The `.gitignore` written beside the project: local state never goes into git.
pub const GITIGNORE: &str = ".airlock/\n";

/// The starter project as source files.
pub fn files() -> Vec<crate::source::SourceFile> {
    FILES
        .iter()
        .filter(|(path, _)| crate::project::is_project_file(path))
        .map(|(path, text)| crate::source::SourceFile::new(*path, *text))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starter_project_is_valid() {
        let loaded = crate::project::load(files());
        assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
        assert_eq!(loaded.project.workflows.len(), 2);
        assert_eq!(loaded.project.scenarios.len(), 8);
        let staging = loaded.project.manifest.environment("staging").unwrap();
        for connector in ["crm", "chat", "mail"] {
            assert_eq!(
                staging.binding(connector).unwrap().mode.value,
                crate::model::BindingMode::Record,
                "staging's {connector} works offline"
            );
        }
        // A new user sees where notifications go and who is who; staging never pages.
        let manifest = &loaded.project.manifest;
        assert!(!staging.notify.is_empty());
        assert!(staging.bindings.iter().all(|b| b.pages.is_none()));
        let production = manifest.environment("production").unwrap();
        assert!(!production.notify.is_empty());
        for approver in &production.approvers {
            assert!(
                manifest.person(approver).is_some_and(|p| p.email.is_some()),
                "{} can be reached",
                approver.value
            );
        }
    }

    /// The starter's policy asks for every branch arm and failure path covered: its own
    /// workflows' scenarios must cover them, or its tour could not promote them.
    #[test]
    fn the_starters_scenarios_cover_what_its_policy_asks() {
        use crate::suite::Category;
        let loaded = crate::project::load(files());
        let project = &loaded.project;
        let rule = crate::policy::rule(&project.manifest, "staging", "production").unwrap();
        let reports = crate::suite::run_suites(&crate::suite::suites(project, None), &|| {});
        for report in &reports {
            let workflow = &project.workflow(&report.workflow).unwrap().workflow;
            let required = crate::policy::requirements(
                rule,
                crate::policy::workflow_risk(&project.manifest, workflow),
            );
            assert!(report.passed, "{}", report.workflow);
            for (category, share) in [
                (Category::Branches, required.branch_coverage),
                (Category::FailurePaths, required.failure_path_coverage),
            ] {
                let share = share.expect("the starter asks for coverage");
                let tally = report.coverage.tally(category);
                assert!(
                    tally.ratio >= share,
                    "{} covers {} of {} {}",
                    report.workflow,
                    tally.covered,
                    tally.total,
                    category.as_str()
                );
            }
        }
    }

    /// The README's tour runs `order-intake` with this order and then `credit-review`, whose
    /// run must reach its approval step: the order must be one its query finds overdue.
    #[test]
    fn the_overdue_example_is_an_order_credit_review_finds_overdue() {
        let loaded = crate::project::load(files());
        let review = loaded.project.workflow("credit-review").unwrap();
        let threshold = review
            .workflow
            .steps
            .iter()
            .find_map(|step| match &step.kind {
                crate::model::StepKind::Call {
                    with: Some(with), ..
                } if step.id.value == "find_overdue" => with.to_json()["params"][0].as_f64(),
                _ => None,
            })
            .expect("find_overdue's threshold");
        let example = |path: &str| -> serde_json::Value {
            let (_, text) = FILES.iter().find(|(p, _)| *p == path).unwrap();
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{path}: {e}"))
        };
        let overdue = example("examples/overdue-order.json");
        assert!(
            overdue["amount"].as_f64().unwrap() > threshold,
            "{overdue} is not above {threshold}"
        );
        for (path, _) in FILES.iter().filter(|(p, _)| p.starts_with("examples/")) {
            let order = example(path);
            assert!(order["id"].is_number(), "{path}: an order has an id");
        }
    }
}
