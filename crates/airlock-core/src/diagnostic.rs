//! Diagnostics: what went wrong, where (file and byte span), and how to fix it.
//!
//! Every check in the core reports through [`Diagnostics`] and keeps going, so that a
//! user sees every error of a project at once rather than one per attempt.

use crate::source::FileId;
use serde::Serialize;

/// A byte range inside one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte; equal to `start` for a point.
    pub end: usize,
}

impl Span {
    /// The span from `start` to `end` (bytes).
    pub fn new(start: usize, end: usize) -> Self {
        Self {
            start,
            end: end.max(start),
        }
    }

    /// A sub-span `from..to` relative to this span's start.
    pub fn sub(self, from: usize, to: usize) -> Span {
        Span::new(self.start + from, self.start + to)
    }

    /// Length in bytes.
    pub fn len(self) -> usize {
        self.end - self.start
    }

    /// Whether the span covers no byte.
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

macro_rules! codes {
    ($( $variant:ident = $code:literal, $title:literal, $explain:literal; )*) => {
        /// A stable error code. Codes never change meaning; `airlock explain CODE` prints
        /// the explanation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(into = "&'static str")]
        pub enum Code { $( #[doc = $title] $variant, )* }

        impl Code {
            /// Every code, in order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as printed (`AL0001`).
            pub fn as_str(self) -> &'static str {
                match self { $( Code::$variant => $code, )* }
            }

            /// A one-line title.
            pub fn title(self) -> &'static str {
                match self { $( Code::$variant => $title, )* }
            }

            /// The cause and the fix, in a few sentences.
            pub fn explanation(self) -> &'static str {
                match self { $( Code::$variant => $explain, )* }
            }

            /// The code named by `text` (case-insensitive), if any.
            pub fn parse(text: &str) -> Option<Code> {
                Code::ALL.iter().copied().find(|c| c.as_str().eq_ignore_ascii_case(text.trim()))
            }
        }
    };
}

codes! {
    YamlSyntax = "AL0001", "YAML syntax error",
        "The file is not valid YAML. The position points at the first character the parser could not accept; the cause is often just before it (an unclosed bracket or quote, a tab used for indentation, a missing space after `:`).";
    YamlLimit = "AL0002", "YAML document over its limits",
        "The document expands to more nodes, aliases or nesting than Airlock accepts (for example an alias bomb such as the 'billion laughs'). Airlock refuses such files before building them, so memory stays bounded. Write the content out plainly; real workflow files are far below the limits.";
    UnknownKey = "AL0003", "unknown key",
        "The key is not part of this object. It is usually a typo: the hint names the closest known key. Unknown keys are errors rather than warnings because a misspelt `retry` would otherwise silently mean no retry.";
    MissingField = "AL0004", "missing required field",
        "The object needs this field. Add it; the message says what it is for.";
    WrongType = "AL0005", "wrong type",
        "The value has the wrong YAML type (for example a list where a string is expected). Quote a value to make it a string.";
    DuplicateStepId = "AL0006", "duplicate step id",
        "Two steps of one workflow share an id. Step ids name journal entries, idempotency keys and `steps.<id>` references, so they must be unique within the workflow, across branches and failure handlers.";
    UnknownStep = "AL0007", "unknown step",
        "A reference names a step that does not exist in this workflow (or that runs only later, so its output cannot be read yet).";
    UnknownConnector = "AL0008", "unknown connector",
        "A workflow, binding or difference names a connector that is not declared under `connectors:` in airlock.yaml.";
    UnknownEnvironment = "AL0009", "unknown environment",
        "A promotion policy or difference names an environment that is not declared under `environments:` in airlock.yaml.";
    UnknownSecret = "AL0010", "unknown secret",
        "A `${secret:NAME}` reference names a secret that this environment does not declare in its `secrets:` list. Secrets are scoped to one environment: another environment's secret of the same name is never used instead.";
    UnknownConnectorKind = "AL0011", "unknown connector kind",
        "The connector kind does not exist. Kinds are: http, chat_webhook, smtp, sql.";
    UnboundConnector = "AL0012", "connector not bound in an environment",
        "A workflow calls a connector that some environment does not bind. Every environment must bind every connector it may run, even if only in `mode: record`; Airlock never falls back to another environment's binding.";
    TemplateSyntax = "AL0013", "template or expression syntax error",
        "A `{{ ... }}` template or a condition does not parse. The position points inside the string, at the token the parser could not accept.";
    UnknownRoot = "AL0014", "expression reads an unknown name",
        "Templates and conditions may read only `trigger`, `steps`, `run`, `env`, `workflow`, `release` (and `error` inside `on_failure`). Anything else would always be undefined at run time.";
    BadCron = "AL0015", "bad cron expression",
        "The schedule is not a valid cron expression (five fields: minute hour day-of-month month day-of-week; an optional sixth leading seconds field) or names an unknown time zone.";
    BadDuration = "AL0016", "bad duration",
        "A duration is a number with a unit: `250ms`, `5s`, `2m`, `1h`, `1d`, or combinations such as `1h 30m`.";
    DanglingDifference = "AL0017", "difference names nothing",
        "A documented difference's `path` must name something that exists in airlock.yaml, such as `bindings.crm.base_url`, `egress`, `approvers` or `protected`. A difference that names nothing documents nothing.";
    ProtectedWithoutApprovers = "AL0018", "protected environment without approvers",
        "A protected environment changes only by promotion, which needs approvers. List at least one under `approvers:`.";
    DuplicateWorkflow = "AL0019", "duplicate workflow name",
        "Two workflow files declare the same `name`. Names identify workflows across environments, releases and history, so they must be unique.";
    InvalidValue = "AL0020", "invalid value",
        "The value has the right type but is not allowed here; the message says what is accepted.";
    RecordInProtected = "AL0021", "record mode in a protected environment",
        "A protected environment runs real work: a binding in `mode: record` would silently drop it. Bind the real endpoint through secrets.";
    UnknownAction = "AL0022", "unknown connector action",
        "The connector's kind has no such action. http: request; chat_webhook: post; smtp: send; sql: insert, upsert, query.";
    FileTooLarge = "AL0023", "file too large",
        "Project files are limited to 1 MiB each.";
    UnknownWorkflow = "AL0024", "unknown workflow",
        "A scenario names a workflow that does not exist; scenarios live in `tests/<workflow>/`.";
    ProjectLayout = "AL0025", "project layout",
        "The folder is not an Airlock project, or a file is where none is expected. A project has `airlock.yaml`, `workflows/*.yaml` and `tests/<workflow>/*.yaml`.";
    UnmeetableApprovals = "AL0026", "approval rule that cannot be met",
        "A promotion rule asks for more approvals than the target environment has approvers (a protected target asks for at least one, whatever the file says), so no request along it could ever pass. Add approvers to the target, or ask for fewer approvals. The author of a request never approves it, so a rule that asks for as many approvals as there are approvers cannot be met by a request one of them opens: `promote` says so for the author at hand.";
    NotInLanguage = "AL0027", "not part of the expression language",
        "Templates and conditions offer only what docs/files.md lists: the names `trigger`, `steps`, `run`, `env`, `workflow` (and `error` inside `on_failure`), the listed filters and tests, and `{% if %}`, `{% for %}`, `{% set %}`, `{% with %}`, `{% filter %}`. They call no function (`debug()`, `range()` …) and no method, and never read `self` or a name of the form `__name__`. Anything else is refused here and, as a last line, when the workflow runs.";
    UnsafeWebhookPath = "AL0028", "webhook path that only looks safe",
        "A webhook path is segments of letters, digits, `-`, `_` and `.` separated by single `/`. A `.` or `..` segment, an empty segment (`a//b`), a backslash or a percent-encoded character (`%2f`, `%2F`, `%5c` …) is refused: a proxy that normalises paths would route such a path somewhere else than Airlock does, for example `../production/orders` into another environment.";
    BadNotifyTarget = "AL0029", "notification target that cannot carry notifications",
        "An environment's `notify:` names where its notifications go: a connector of kind chat_webhook, smtp or http that the environment itself binds (notifications never travel through another environment's binding), with events from the list `airlock explain AL0029` ends with and people declared under `people:`. Events: promotion.requested, promotion.approved, promotion.rejected, release.released, release.rolled_back, step.waiting, step.timeout_approaching, run.failed, run.dead_lettered, release.failure_rate.";
    PagingOutsideProtected = "AL0030", "paging destination in an unprotected environment",
        "A binding marked `pages: true` wakes someone up. Staging and every other unprotected environment never page: their failures are expected while a change is tried. Remove `pages: true`, or bind a non-paging channel for this environment.";
}

impl From<Code> for &'static str {
    fn from(code: Code) -> Self {
        code.as_str()
    }
}

/// One finding, positioned in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The stable error code.
    pub code: Code,
    /// The file the span belongs to.
    #[serde(skip)]
    pub file: FileId,
    /// Where, in bytes.
    #[serde(skip)]
    pub span: Span,
    /// What went wrong, in one sentence.
    pub message: String,
    /// A short label printed under the caret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// How to fix it, when there is something useful to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with a code, a place and a message.
    pub fn new(code: Code, file: FileId, span: Span, message: impl Into<String>) -> Self {
        Self {
            code,
            file,
            span,
            message: message.into(),
            label: None,
            help: None,
        }
    }

    /// Adds the label printed under the caret.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Adds a hint.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Sets the label on a diagnostic already reported.
    pub fn set_label(&mut self, label: impl Into<String>) -> &mut Self {
        self.label = Some(label.into());
        self
    }

    /// Adds a hint only when there is one.
    pub fn with_help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

/// The collector every check reports into.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Records a finding.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    /// The finding pushed last.
    ///
    /// # Panics
    /// When nothing was pushed yet; callers push first.
    pub(crate) fn last_pushed_mut(&mut self) -> &mut Diagnostic {
        self.items.last_mut().expect("a diagnostic was just pushed")
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many findings.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The findings, sorted by file and position, duplicates removed.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items
            .sort_by_key(|d| (d.file, d.span.start, d.span.end, d.code.as_str()));
        self.items.dedup();
        self.items
    }
}

/// The known name closest to `unknown`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    unknown: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    known
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(unknown, candidate), candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// "did you mean `x`?" for the closest known name, if any.
pub fn suggestion<'a>(unknown: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    did_you_mean(unknown, known).map(|k| format!("did you mean `{k}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.as_str()), "{} twice", code.as_str());
            assert_eq!(Code::parse(&code.as_str().to_lowercase()), Some(*code));
        }
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("retyr", ["retry", "timeout"]), Some("retry"));
        assert_eq!(did_you_mean("zzz", ["retry", "timeout"]), None);
    }
}
