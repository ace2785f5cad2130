//! The frame around every page: the header with the navigation and who is signed in,
//! and the small pieces pages share (times, hashes, badges, the CSRF field).

use crate::Refusal;
use airlock_ops::access::Session;
use axum::response::Html;
use maud::{DOCTYPE, Markup, html};

/// A rendered page as the answer's body.
pub(crate) fn html(markup: Markup) -> Html<String> {
    Html(markup.into_string())
}

/// A page: the frame, its title and its content.
pub(crate) fn page(title: &str, session: Option<&Session>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Airlock" }
                link rel="stylesheet" href="/console.css";
            }
            body {
                header {
                    strong { "Airlock" }
                    @if let Some(session) = session {
                        nav aria-label="Console" {
                            a href="/" { "Environments" }
                            a href="/inbox" { "Inbox" }
                            a href="/runs" { "Runs" }
                            a href="/releases" { "Releases" }
                            a href="/parity" { "Parity" }
                            a href="/readiness" { "Readiness" }
                            a href="/audit" { "Audit" }
                            a href="/records" { "Records" }
                        }
                        span.who {
                            (session.caller.name) " · " (session.caller.grant.role.to_string())
                            " in " (session.caller.grant.environment) " "
                            form method="post" action="/sign-out" {
                                (csrf(session))
                                button.quiet type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { h1 { (title) } (content) }
            }
        }
    }
}

/// The page a refusal is shown as.
pub(crate) fn refusal(refusal: &Refusal) -> Markup {
    let title = match refusal.status.as_u16() {
        403 => "Not allowed",
        404 => "Not found",
        400 => "Not understood",
        409 => "Not now",
        _ => "Unavailable",
    };
    page(
        title,
        refusal.session.as_ref(),
        html! {
            section.error role="alert" {
                p { (refusal.message) }
                @if let Some(help) = &refusal.help { p.muted { (help) } }
            }
        },
    )
}

/// The hidden field every form carries.
pub(crate) fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A time as people read it (UTC).
pub(crate) fn when(at: i64) -> String {
    let text = airlock_core::time::rfc3339(at);
    // `2026-12-02T10:00:00.000Z` → `2026-12-02 10:00:00`.
    text.get(..19).map_or(text.clone(), |t| t.replace('T', " "))
}

/// A version id's first twelve characters.
pub(crate) fn short(version: &str) -> &str {
    airlock_ops::short(version)
}

/// A coloured word.
pub(crate) fn badge(class: &str, text: &str) -> Markup {
    html! { span class={"badge " (class)} { (text) } }
}

/// A milliseconds duration, short.
pub(crate) fn took(ms: i64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// JSON, indented, as text (escaped by the template like everything else).
pub(crate) fn json(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}
