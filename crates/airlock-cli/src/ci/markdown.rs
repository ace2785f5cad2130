//! `airlock diff --format markdown`: the parity report as GitHub-flavoured markdown, for a
//! bot to post on the pull request. What differs is in tables, dimension by dimension (rows
//! that are the same are only counted: a reviewer reads what moves); the configuration a
//! promotion would change is a `diff` code block. Every value is escaped, so a value holding
//! `|`, `*` or `<script>` reads as itself.

use crate::commands::diff::{drift_advice, status_cell};
use airlock_core::parity::{Dimension, Finding, Status};
use airlock_ops::diff::Diff;
use std::fmt::Write;

pub fn render(diff: &Diff) -> String {
    let report = &diff.report;
    let counts = report.counts();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Airlock parity: {} → {}\n",
        text(&report.from),
        text(&report.to)
    );
    let verdict = if diff.clean {
        "✅ **clean**: every difference is documented".to_owned()
    } else {
        format!("❌ **{} drift**", counts.drift)
    };
    let _ = writeln!(
        out,
        "{verdict} · {} same · {} documented · {} pending promotion · {} notes\n",
        counts.same, counts.documented, counts.pending, counts.notes
    );
    for dimension in Dimension::ALL {
        let rows = report.rows(dimension);
        if rows.is_empty() {
            continue;
        }
        let same = rows.iter().filter(|f| f.status == Status::Same).count();
        let _ = writeln!(out, "#### {}\n", text(dimension.title()));
        let shown: Vec<&&Finding> = rows.iter().filter(|f| f.status != Status::Same).collect();
        if !shown.is_empty() {
            let _ = writeln!(
                out,
                "| what | {} | {} | status |\n|---|---|---|---|",
                cell(&report.from),
                cell(&report.to)
            );
            let mut cited = Vec::new();
            for row in shown {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    cell(&row.what),
                    cell(&row.from),
                    cell(&row.to),
                    cell(&status_cell(row, &mut cited))
                );
            }
            out.push('\n');
        }
        if same > 0 {
            let _ = writeln!(out, "{same} the same.\n");
        }
    }
    for note in &report.notes {
        let _ = writeln!(out, "> note: {}\n", text(note));
    }
    for advice in drift_advice(report) {
        let _ = writeln!(out, "{}\n", text(&advice));
    }
    for status in diff.configuration.iter().filter(|s| s.differs()) {
        let _ = writeln!(
            out,
            "#### Configuration of {}\n\nIt runs `{}` (released); the working copy is `{}`. A configuration promotion (`airlock promote --config --to {}`) would change:\n",
            text(&status.environment),
            airlock_ops::short(status.released.as_deref().unwrap_or_default()),
            airlock_ops::short(&status.working),
            text(&status.environment),
        );
        let body: String = status
            .diff
            .iter()
            .map(|line| format!("{}{}\n", line.sign, line.text))
            .collect();
        let fence = fence_for(&body);
        let _ = writeln!(out, "{fence}diff\n{body}{fence}\n");
    }
    out
}

/// A table cell: markdown's punctuation escaped, `|` too (it ends a cell), and HTML's
/// `<`, `>`, `&` as entities; a line break as `<br>`, since a cell is one line.
pub fn cell(value: &str) -> String {
    text(value)
        .replace('|', "\\|")
        .replace("\r\n", "<br>")
        .replace(['\n', '\r'], "<br>")
}

/// Running text: the punctuation markdown may read as syntax mid-line (emphasis, code,
/// links, images, strike-through, math, headings) escaped with a backslash, a character
/// that would start a list at the start, and `<`, `>`, `&` as entities, so that what a value
/// says is what a reader sees.
pub fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '~' | '#' | '!' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '-' | '+' | '=' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// A code fence longer than any run of backticks in the block.
fn fence_for(body: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in body.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    "`".repeat((longest + 1).max(3))
}
