//! Diagnostics for people: `path:line:col: message`, the offending line, a caret
//! under the exact span, and the hint. miette draws the snippet.

use airlock_core::diagnostic::Diagnostic as CoreDiagnostic;
use airlock_core::source::{NO_FILE, SourceFile};
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceCode};
use serde::Serialize;
use std::fmt;

/// How to draw.
#[derive(Debug, Clone, Copy)]
pub enum Style {
    /// ASCII, no colour: logs, pipes, snapshots.
    Plain,
    /// Unicode and colour, for a terminal.
    Fancy,
}

/// One diagnostic with its place resolved to path, line and column.
#[derive(Debug, Serialize)]
pub struct Located<'a> {
    pub code: &'static str,
    pub path: Option<&'a str>,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<&'a str>,
}

pub fn locate<'a>(diagnostic: &'a CoreDiagnostic, files: &'a [SourceFile]) -> Located<'a> {
    let file = (diagnostic.file != NO_FILE).then(|| &files[diagnostic.file]);
    let (line, column) = file.map_or((0, 0), |f| f.line_col(diagnostic.span.start));
    let (end_line, end_column) = file.map_or((0, 0), |f| f.line_col(diagnostic.span.end));
    Located {
        code: diagnostic.code.as_str(),
        path: file.map(|f| f.path.as_str()),
        line,
        column,
        end_line,
        end_column,
        message: &diagnostic.message,
        label: diagnostic.label.as_deref(),
        help: diagnostic.help.as_deref(),
    }
}

/// Renders one diagnostic as text.
pub fn render(diagnostic: &CoreDiagnostic, files: &[SourceFile], style: Style) -> String {
    let located = locate(diagnostic, files);
    let heading = match located.path {
        Some(path) => format!(
            "{path}:{}:{}: {} [{}]",
            located.line, located.column, located.message, located.code
        ),
        None => format!("{} [{}]", located.message, located.code),
    };
    let report = Report {
        heading,
        diagnostic,
        source: (diagnostic.file != NO_FILE).then(|| {
            let file = &files[diagnostic.file];
            NamedSource::new(file.path.clone(), file.text.clone())
        }),
    };
    let theme = match style {
        Style::Plain => GraphicalTheme::none(),
        Style::Fancy => GraphicalTheme::unicode(),
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        // One line per heading, whatever its length: `path:line:col: message` stays greppable.
        .with_width(usize::MAX / 2)
        .with_links(false)
        .with_context_lines(1);
    let mut out = String::new();
    if handler.render_report(&mut out, &report).is_err() {
        out = format!("{}\n", report.heading);
    }
    out
}

struct Report<'a> {
    heading: String,
    diagnostic: &'a CoreDiagnostic,
    source: Option<NamedSource<String>>,
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.heading)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.heading)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diagnostic
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.source.as_ref()?;
        let span = self.diagnostic.span;
        // A point still gets one caret.
        let len = span.len().max(1);
        let label = self
            .diagnostic
            .label
            .clone()
            .unwrap_or_else(|| self.diagnostic.code.title().to_owned());
        Some(Box::new(std::iter::once(LabeledSpan::new(
            Some(label),
            span.start,
            len,
        ))))
    }
}
