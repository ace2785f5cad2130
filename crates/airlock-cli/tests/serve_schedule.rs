//! Cron schedules with several server processes on one store: one run per tick, and the
//! ticks missed while no server ran are caught up by the trigger's policy.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;
use support::server::Served;
use support::{airlock, json as stdout_json, ok};

#[test]
fn two_servers_fire_each_tick_once_and_downtime_is_caught_up() {
    let temp = tempfile::tempdir().unwrap();
    let project = temp.path().join("project");
    std::fs::create_dir_all(project.join("workflows")).unwrap();
    std::fs::write(
        project.join("airlock.yaml"),
        "project: schedules\nconnectors: {}\nenvironments:\n  staging: { bindings: {} }\n",
    )
    .unwrap();
    std::fs::write(
        project.join("workflows/tick.yaml"),
        r#"name: tick
trigger:
  cron:
    schedule: "*/2 * * * * *"
    timezone: Europe/London
    catch_up: all
steps:
  - id: note
    map:
      at: "{{ trigger.time }}"
"#,
    )
    .unwrap();
    ok(&airlock(&project, &["validate"]), "validate");
    ok(
        &airlock(&project, &["deploy", "--env", "staging"]),
        "deploy",
    );

    // Two processes on one store, both scheduling.
    let first = Served::start(&project, &[]);
    let second = Served::start(&project, &[]);
    std::thread::sleep(Duration::from_millis(6_500));
    drop(first);
    drop(second);
    // Down for a while: ticks are missed.
    std::thread::sleep(Duration::from_millis(5_000));
    let third = Served::start(&project, &[]);
    std::thread::sleep(Duration::from_millis(3_000));
    let logs = third.logs.lock().unwrap().clone();
    drop(third);

    let out = airlock(
        &project,
        &["runs", "--json", "--limit", "1000", "--workflow", "tick"],
    );
    ok(&out, "runs");
    let runs = stdout_json(&out).as_array().cloned().unwrap();
    let ticks: Vec<i64> = runs
        .iter()
        .map(|r| {
            let time = r["trigger"]["time"].as_str().unwrap();
            chrono::DateTime::parse_from_rfc3339(time)
                .unwrap()
                .timestamp_millis()
        })
        .collect();
    let distinct: BTreeSet<i64> = ticks.iter().copied().collect();
    assert_eq!(distinct.len(), ticks.len(), "a tick fired twice: {ticks:?}");
    assert!(ticks.len() >= 5, "too few ticks: {ticks:?}\n{logs}");
    // Every 2 s from the first tick to the last, the downtime included: none missed.
    let first_tick = *distinct.first().unwrap();
    let last_tick = *distinct.last().unwrap();
    let expected: BTreeSet<i64> = (0..)
        .map(|i| first_tick + i * 2_000)
        .take_while(|t| *t <= last_tick)
        .collect();
    assert_eq!(distinct, expected, "ticks missing after the downtime");
    assert!(
        last_tick - first_tick >= 12_000,
        "the ticks do not span the downtime: {ticks:?}"
    );
}
