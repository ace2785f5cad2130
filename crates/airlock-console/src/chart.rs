//! The releases chart: failure rate before and after each release, drawn here as SVG
//! (inline in the page, so no script and no chart service; `img-src` is not involved).

use airlock_ops::promotion::ReleaseRow;
use maud::{Markup, html};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 40.0;
const BOTTOM: f64 = 36.0;

fn percent(rate: Option<f64>) -> String {
    rate.map_or("–".to_owned(), |r| format!("{:.0}%", r * 100.0))
}

fn rate(failed: usize, runs: usize) -> Option<f64> {
    (runs > 0).then(|| failed as f64 / runs as f64)
}

/// Two bars per release, oldest on the left: before (grey) and after (coloured by how it
/// compares), with the release's short id below; a release with no runs in a window
/// has no bar there, and says so in the title.
pub(crate) fn failure_rates(workflow: &str, rows: &[ReleaseRow]) -> Markup {
    let oldest_first: Vec<&ReleaseRow> = rows.iter().rev().collect();
    let n = oldest_first.len().max(1) as f64;
    let slot = (WIDTH - LEFT) / n;
    let bar = (slot / 3.0).min(28.0);
    let plot = HEIGHT - BOTTOM;
    let y = |r: f64| plot - r * (plot - 10.0);
    html! {
        svg.chart viewBox={"0 0 " (WIDTH) " " (HEIGHT)} width=(WIDTH) height=(HEIGHT)
            role="img" aria-label={"Failure rate before and after each release of " (workflow)}
            xmlns="http://www.w3.org/2000/svg" {
            title { "Failure rate before and after each release of " (workflow) }
            line x1=(LEFT) y1=(plot) x2=(WIDTH) y2=(plot) stroke="#8892a2" {}
            line x1=(LEFT) y1="10" x2=(LEFT) y2=(plot) stroke="#8892a2" {}
            text x="2" y="16" font-size="11" fill="#5b6474" { "100%" }
            text x="14" y=(plot) font-size="11" fill="#5b6474" { "0%" }
            @for (i, row) in oldest_first.iter().enumerate() {
                @let x = LEFT + slot * i as f64 + slot / 2.0 - bar;
                @let before = rate(row.failed_before, row.runs_before);
                @let after = rate(row.failed_after, row.runs_after);
                @let worse = matches!((before, after), (Some(b), Some(a)) if a > b);
                @if let Some(b) = before {
                    rect x=(x) y=(y(b)) width=(bar) height=((plot - y(b)).max(1.0)) fill="#aab3c2" {
                        title { "before " (row.release) ": " (row.failed_before) " of " (row.runs_before) " failed" }
                    }
                }
                @if let Some(a) = after {
                    rect x=(x + bar + 2.0) y=(y(a)) width=(bar) height=((plot - y(a)).max(1.0))
                        fill=(if worse { "#b3261e" } else { "#1f7a3d" }) {
                        title { "after " (row.release) ": " (row.failed_after) " of " (row.runs_after) " failed" }
                    }
                }
                // Ids begin with their time: the end tells releases apart.
                text x=(x) y=(HEIGHT - 12.0) font-size="11" fill="#1d2330" {
                    (row.release.get(row.release.len().saturating_sub(6)..).unwrap_or(&row.release))
                }
                text x=(x) y=(HEIGHT - 1.0) font-size="10" fill="#5b6474" {
                    (percent(before)) " → " (percent(after))
                }
            }
        }
    }
}
