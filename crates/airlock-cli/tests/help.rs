//! Defect 6 of issue 11: `airlock --help` opened with the crate's internal description ("The
//! airlock binary: parses arguments, calls the crates, prints."). Its first lines say what
//! Airlock is, for someone who has never heard of it.

mod support;
use support::*;

/// The help's lines before its command list.
fn opening(args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("a folder");
    let out = airlock(dir.path(), args);
    ok(&out, "help");
    text(&out.stdout)
        .lines()
        .take_while(|line| !line.starts_with("Commands:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn help_opens_with_what_airlock_is_for_a_user() {
    let long = opening(&["--help"]);
    insta::assert_snapshot!("help_long", long);
    let short = opening(&["-h"]);
    insta::assert_snapshot!("help_short", short);
    for inside in ["binary", "crates", "parses arguments"] {
        assert!(
            !long.contains(inside),
            "internal wording {inside:?}: {long}"
        );
    }
}
