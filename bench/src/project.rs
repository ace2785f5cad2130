//! The benchmark's project: a temporary folder with `airlock.yaml`, one workflow and the
//! schema of the SQLite file its `sql` connector writes.

use airlock_core::model::Workflow;
use airlock_core::project::{self, Project};
use airlock_core::source::SourceFile;
use std::path::Path;

/// Which workflow the runs execute.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Workload {
    /// map, sql insert, if, http POST (the issue's benchmark).
    FourStep,
    /// map, if, http POST (`/work/shared/bench/README.md`'s workload, minus
    /// the HTTP front: runs are accepted with `Store::enqueue`).
    Webhook,
}

impl Workload {
    /// The workflow's YAML: the four-step workload is the webhook workload with a
    /// durable SQL insert before the branch (`normalize`, `save_order`, `tier`, one POST).
    pub fn source(self) -> String {
        match self {
            Workload::FourStep => format!("{NORMALIZE}{SAVE_ORDER}{TIER}"),
            Workload::Webhook => format!("{NORMALIZE}{TIER}"),
        }
    }
}

/// The shared webhook workload's first step: normalise the order.
const NORMALIZE: &str = r#"name: order
trigger: manual
steps:
  - id: normalize
    map:
      order_id: "{{ trigger.body.id }}"
      total: "{{ trigger.body.amount | float }}"
      customer: "{{ trigger.body.customer }}"
"#;

/// The four-step workload's durable SQL insert, between normalising and branching.
const SAVE_ORDER: &str = r#"
  - id: save_order
    call: orders_db.insert
    with:
      table: orders
      values:
        id: "{{ steps.normalize.output.order_id }}"
        customer: "{{ steps.normalize.output.customer }}"
        total: "{{ steps.normalize.output.total }}"
"#;

/// Branch on the total and POST to the sink at `/high` or `/low`.
const TIER: &str = r#"
  - id: tier
    if: "steps.normalize.output.total > 100"
    then:
      - id: post_high
        call: sink.request
        with:
          method: POST
          path: /high
          json:
            orderId: "{{ steps.normalize.output.order_id }}"
            total: "{{ steps.normalize.output.total }}"
            customer: "{{ steps.normalize.output.customer }}"
            tier: high
    else:
      - id: post_low
        call: sink.request
        with:
          method: POST
          path: /low
          json:
            orderId: "{{ steps.normalize.output.order_id }}"
            total: "{{ steps.normalize.output.total }}"
            customer: "{{ steps.normalize.output.customer }}"
            tier: low
"#;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS orders (
    id       TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    total    REAL NOT NULL
);
";

/// The SQLite file the `sql` connector writes, relative to the project.
pub const ORDERS_DB: &str = "orders.db";

fn manifest(sink_base: &str, sink_host: &str) -> String {
    format!(
        r#"project: bench
connectors:
  sink:      {{ kind: http, description: "The counting sink" }}
  orders_db: {{ kind: sql,  description: "The order ledger" }}
environments:
  staging:
    egress: ["{sink_host}"]
    bindings:
      sink:
        base_url: "{sink_base}"
        timeout: 10s
      orders_db:
        url: "sqlite://{ORDERS_DB}"
        schema: orders.sql
"#
    )
}

/// Writes the project into `dir` and loads it (it must validate).
///
/// `orders_sync_normal` prepends `PRAGMA synchronous = NORMAL` to the schema the `sql`
/// connector runs when it opens `orders.db`: its inserts then no longer fsync one by one
/// (an experiment on where the time goes; SQLite's default, FULL, is the honest setting).
pub fn create(
    dir: &Path,
    workload: Workload,
    sink_base: &str,
    sink_host: &str,
    orders_sync_normal: bool,
) -> Result<(Project, Workflow), String> {
    let schema = if orders_sync_normal {
        format!("PRAGMA synchronous = NORMAL;\n{SCHEMA}")
    } else {
        SCHEMA.to_owned()
    };
    let files = [
        ("airlock.yaml", manifest(sink_base, sink_host)),
        ("workflows/order.yaml", workload.source()),
        ("orders.sql", schema),
    ];
    let mut sources = Vec::new();
    for (path, text) in files {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&full, &text).map_err(|e| format!("{}: {e}", full.display()))?;
        if path.ends_with(".yaml") {
            sources.push(SourceFile::new(path, text));
        }
    }
    let loaded = project::load(sources);
    if let Some(first) = loaded.diagnostics.first() {
        return Err(format!(
            "the benchmark project does not validate: {}",
            first.message
        ));
    }
    let workflow = loaded
        .project
        .workflow("order")
        .ok_or("the benchmark workflow is missing")?
        .workflow
        .clone();
    Ok((loaded.project, workflow))
}
