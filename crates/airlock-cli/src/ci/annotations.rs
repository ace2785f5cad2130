//! GitHub Actions workflow commands (`::error file=…,line=…,col=…::message`): a problem of
//! `validate` shown on the pull request's changed line.
//!
//! The grammar is the runner's (`actions/toolkit`, `command.ts`): properties are
//! `key=value` joined by commas, and the runner unescapes `%25`, `%0D`, `%0A` in the
//! message and, in property values, `%3A` and `%2C` too.

use airlock_ops::validate::Problem;
use std::fmt::Write;

/// One `::error` line per problem. `prefix` is the project folder relative to the
/// repository's root (empty when they are the same), since the runner places annotations
/// by the path from there.
pub fn annotations(problems: &[Problem], prefix: &str) -> String {
    let mut out = String::new();
    for problem in problems {
        let mut properties = Vec::new();
        if let Some(path) = &problem.path {
            properties.push(("file", join(prefix, path)));
            if problem.line > 0 {
                properties.push(("line", problem.line.to_string()));
                properties.push(("col", problem.column.to_string()));
                if problem.end_line >= problem.line {
                    properties.push(("endLine", problem.end_line.to_string()));
                    // The runner reads a column range only on one line.
                    if problem.end_line == problem.line && problem.end_column > problem.column {
                        properties.push(("endColumn", problem.end_column.to_string()));
                    }
                }
            }
        }
        let title = match &problem.label {
            Some(label) => format!("{}: {label}", problem.code),
            None => problem.code.clone(),
        };
        properties.push(("title", title));
        let properties: Vec<String> = properties
            .into_iter()
            .map(|(key, value)| format!("{key}={}", escape_property(&value)))
            .collect();
        let mut message = problem.message.clone();
        if let Some(label) = &problem.label {
            let _ = write!(message, "\n{label}");
        }
        if let Some(help) = &problem.help {
            let _ = write!(message, "\nhelp: {help}");
        }
        let _ = writeln!(
            out,
            "::error {}::{}",
            properties.join(","),
            escape_data(&message)
        );
    }
    out
}

fn join(prefix: &str, path: &str) -> String {
    if prefix.is_empty() {
        path.to_owned()
    } else {
        format!("{}/{path}", prefix.trim_end_matches('/'))
    }
}

/// The message: `%`, CR and LF.
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A property's value: the message's escapes, and the separators `:` and `,`.
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(message: &str, help: Option<&str>) -> Problem {
        Problem {
            code: "AL0003".into(),
            path: Some("workflows/orders.yaml".into()),
            line: 4,
            column: 7,
            end_line: 4,
            end_column: 12,
            message: message.into(),
            label: Some("unknown key".into()),
            help: help.map(str::to_owned),
        }
    }

    #[test]
    fn a_problem_is_one_error_line_with_its_place() {
        let text = annotations(&[problem("unknown key `retires`", None)], "ops/airlock");
        assert_eq!(
            text,
            "::error file=ops/airlock/workflows/orders.yaml,line=4,col=7,endLine=4,endColumn=12,title=AL0003%3A unknown key::unknown key `retires`%0Aunknown key\n"
        );
    }

    #[test]
    fn separators_and_newlines_are_escaped_where_the_runner_unescapes_them() {
        let text = annotations(
            &[problem(
                "50% of a: b, c\nnext",
                Some("did you mean `retry`?"),
            )],
            "",
        );
        assert!(text.starts_with("::error file=workflows/orders.yaml,"));
        assert!(
            text.contains(
                "::50%25 of a: b, c%0Anext%0Aunknown key%0Ahelp: did you mean `retry`?\n"
            )
        );
        assert_eq!(text.lines().count(), 1);
    }
}
