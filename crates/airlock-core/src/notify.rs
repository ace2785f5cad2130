//! Notifications: what happened, who must hear of it, and the message each of an
//! environment's `notify:` targets carries. Pure: the store keeps the deliveries in its
//! outbox and the deliverer sends them (`airlock_ops::notify`).
//!
//! A message names the workflow, the short hash, the environment, who acted, and the exact
//! command and API call that acts on it. It is built only from names, ids and hashes the
//! event carries, never from a binding's settings, so it holds no credential; the
//! deliverer passes it through the environment's redactor all the same.

use crate::model::manifest::{ConnectorKind, Manifest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// A promotion request was opened: its target's approvers are asked.
    #[serde(rename = "promotion.requested")]
    PromotionRequested,
    /// An approver approved a request (it may still wait for more).
    #[serde(rename = "promotion.approved")]
    PromotionApproved,
    /// An approver rejected a request.
    #[serde(rename = "promotion.rejected")]
    PromotionRejected,
    /// A version became what the environment runs.
    #[serde(rename = "release.released")]
    Released,
    /// The environment went back to an earlier release.
    #[serde(rename = "release.rolled_back")]
    RolledBack,
    /// A run waits at an approval step.
    #[serde(rename = "step.waiting")]
    StepWaiting,
    /// An approval step's timeout is near, and nobody decided.
    #[serde(rename = "step.timeout_approaching")]
    StepTimeoutApproaching,
    /// A run of a release failed: its owner is told.
    #[serde(rename = "run.failed")]
    RunFailed,
    /// A run exhausted its retries and was dead-lettered.
    #[serde(rename = "run.dead_lettered")]
    RunDeadLettered,
    /// A release's runs fail more often than the previous release's did.
    #[serde(rename = "release.failure_rate")]
    FailureRate,
}

impl EventKind {
    /// Every kind, in order.
    pub const ALL: &'static [EventKind] = &[
        EventKind::PromotionRequested,
        EventKind::PromotionApproved,
        EventKind::PromotionRejected,
        EventKind::Released,
        EventKind::RolledBack,
        EventKind::StepWaiting,
        EventKind::StepTimeoutApproaching,
        EventKind::RunFailed,
        EventKind::RunDeadLettered,
        EventKind::FailureRate,
    ];

    /// Every kind as written in `notify: … events:`.
    pub const NAMES: &'static [&'static str] = &[
        "promotion.requested",
        "promotion.approved",
        "promotion.rejected",
        "release.released",
        "release.rolled_back",
        "step.waiting",
        "step.timeout_approaching",
        "run.failed",
        "run.dead_lettered",
        "release.failure_rate",
    ];

    /// The kind as written in files and stored.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|k| *k == self).unwrap_or(0)]
    }

    /// The kind written `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .position(|n| *n == text)
            .map(|i| Self::ALL[i])
    }
}

/// One thing that happened, with everything its message needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The environment it happened in (its targets carry it; no other environment's do).
    pub environment: String,
    /// The workflow.
    pub workflow: String,
    /// The full version id (the message shows its first 12 characters).
    pub version: String,
    /// Who acted (the requester, the approver, the releaser), or `airlock` for the engine.
    pub actor: String,
    /// Who must hear of it: identities, mapped to contacts by `people:`.
    pub recipients: Vec<String>,
    /// The request, release or run it is about.
    pub subject: String,
    /// The source environment of a promotion request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The approval step a run waits at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// A reason or an error, already redacted by whoever wrote it down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Event {
    /// The event's id: the same event reported twice (a retried operation, two deliverers)
    /// is one id, so it is delivered once per target. `discriminator` separates events of
    /// one kind about one subject (an approver's approval, a tick of a timeout).
    pub fn id(&self, discriminator: &str) -> String {
        let mut id = format!(
            "{}:{}:{}",
            self.kind.as_str(),
            self.environment,
            self.subject
        );
        if !discriminator.is_empty() {
            id.push(':');
            id.push_str(discriminator);
        }
        id
    }
}

/// When an approval step's timeout is near: once four fifths of it have passed (a one-hour
/// timeout is near 12 minutes before it ends, a week's 33.6 hours before). A fraction,
/// rather than a fixed lead, so that a short timeout is not "near" from its start and a
/// long one still leaves time to act.
pub fn timeout_near(waiting_since: i64, deadline: i64) -> i64 {
    deadline - deadline.saturating_sub(waiting_since).max(0) / 5
}

/// What tells one `step.timeout_approaching` of a run from another: the step and the
/// deadline of that wait (a retried run that waits again is another event).
pub fn timeout_discriminator(step: &str, deadline: i64) -> String {
    format!("{step}:{deadline}")
}

/// The run and the deadline a `step.timeout_approaching` delivery is about, read back
/// from its id (`EVENT_ID/TARGET`, the event's id built by [`Event::id`] with
/// [`timeout_discriminator`]): the deliverer sends it only while that run still waits
/// for that deadline.
pub fn timeout_of(delivery_id: &str) -> Option<(&str, i64)> {
    let (event, _target) = delivery_id.rsplit_once('/')?;
    let rest = event.strip_prefix(EventKind::StepTimeoutApproaching.as_str())?;
    let mut parts = rest.strip_prefix(':')?.split(':');
    let (_environment, run, _step, deadline) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((run, deadline.parse().ok()?))
}

/// A short hash, as messages print it.
pub fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

/// What a person reads: a subject line, the text, and how to act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// One line (a mail's subject).
    pub subject: String,
    /// What happened, in a sentence or two.
    pub text: String,
    /// The command and the API call that act on it.
    pub act: String,
}

/// The message of an event.
pub fn message(event: &Event) -> Message {
    let Event {
        workflow,
        environment: env,
        actor,
        subject: id,
        ..
    } = event;
    let hash = short(&event.version);
    let (subject, text, act) = match event.kind {
        EventKind::PromotionRequested => (
            format!("{workflow} {hash} waits for your approval into {env}"),
            format!(
                "{actor} asks to promote {workflow} {hash} from {} into {env} (request {id}).",
                event.from.as_deref().unwrap_or("?")
            ),
            format!(
                "airlock approve {id} (or airlock reject {id} --reason \"…\"); API: POST /api/v1/promotions/{id}/approve"
            ),
        ),
        EventKind::PromotionApproved => (
            format!("{workflow} {hash} approved by {actor} for {env}"),
            format!("{actor} approved request {id}: {workflow} {hash} into {env}."),
            format!("airlock promotions --env {env}; API: GET /api/v1/promotions"),
        ),
        EventKind::PromotionRejected => (
            format!("{workflow} {hash} rejected by {actor} for {env}"),
            format!(
                "{actor} rejected request {id}: {workflow} {hash} into {env}{}.",
                reason(event)
            ),
            format!(
                "fix it and promote again: airlock promote {workflow} --to {env}; API: POST /api/v1/workflows/{workflow}/promotions"
            ),
        ),
        EventKind::Released => (
            format!("{workflow} {hash} released to {env}"),
            format!("{env} runs {workflow} {hash} from now on (release {id}, by {actor})."),
            format!(
                "to undo: airlock rollback {workflow} --env {env}; API: POST /api/v1/environments/{env}/workflows/{workflow}/rollback"
            ),
        ),
        EventKind::RolledBack => (
            format!("{workflow} rolled back to {hash} in {env}"),
            format!("{actor} rolled {env} back: it runs {workflow} {hash} again (release {id})."),
            format!(
                "airlock releases {workflow} --env {env}; API: GET /api/v1/environments/{env}/workflows/{workflow}/releases"
            ),
        ),
        EventKind::StepWaiting | EventKind::StepTimeoutApproaching => {
            let step = event.step.as_deref().unwrap_or("?");
            let soon = event.kind == EventKind::StepTimeoutApproaching;
            (
                if soon {
                    format!("{workflow} run {id} times out soon at step {step} in {env}")
                } else {
                    format!("{workflow} run {id} waits for approval at step {step} in {env}")
                },
                format!(
                    "Run {id} of {workflow} {hash} in {env} waits at approval step {step}{}.",
                    if soon {
                        format!(
                            "; its timeout is near{}",
                            event
                                .detail
                                .as_deref()
                                .map(|d| format!(" ({d})"))
                                .unwrap_or_default()
                        )
                    } else {
                        String::new()
                    }
                ),
                format!(
                    "airlock approve-step {id} {step} (or --reject); API: POST /api/v1/runs/{id}/steps/{step}/approve"
                ),
            )
        }
        EventKind::RunFailed | EventKind::RunDeadLettered => {
            let dead = event.kind == EventKind::RunDeadLettered;
            (
                format!(
                    "{workflow} {hash} run {id} {} in {env}",
                    if dead { "dead-lettered" } else { "failed" }
                ),
                format!(
                    "Run {id} of {workflow} {hash} in {env} {}{}.",
                    if dead {
                        "exhausted its retries and was dead-lettered"
                    } else {
                        "failed"
                    },
                    event
                        .detail
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                ),
                format!(
                    "airlock runs show {id}; airlock runs retry {id}; API: GET /api/v1/runs/{id}, POST /api/v1/runs/{id}/retry"
                ),
            )
        }
        EventKind::FailureRate => (
            format!("{workflow} {hash} fails more than the release before it in {env}"),
            format!(
                "Runs of {workflow} {hash} in {env} fail more often than the previous release's{}.",
                event
                    .detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
            format!(
                "airlock rollback {workflow} --env {env}; API: POST /api/v1/environments/{env}/workflows/{workflow}/rollback"
            ),
        ),
    };
    Message { subject, text, act }
}

fn reason(event: &Event) -> String {
    event
        .detail
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default()
}

/// One message to one target: the connector, its action and the action's arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The connector of the event's environment that carries it.
    pub target: String,
    /// `post` (chat_webhook), `send` (smtp) or `request` (http).
    pub action: String,
    /// The action's arguments, as a workflow's `with:` would give them.
    pub args: Value,
}

/// Every delivery of `event`: one per `notify:` target of its environment that carries
/// its kind. Only the event's own environment's targets: staging's notifications never
/// reach production's channels. A mail target with nobody to write to (no recipient with
/// an e-mail, no fixed `to:`) gets none.
pub fn deliveries(manifest: &Manifest, event: &Event) -> Vec<Delivery> {
    let Some(environment) = manifest.environment(&event.environment) else {
        return Vec::new();
    };
    let message = message(event);
    let people: Vec<_> = event
        .recipients
        .iter()
        .map(|id| (id.as_str(), manifest.person(id)))
        .collect();
    let mut out = Vec::new();
    for target in &environment.notify {
        if !target.carries(event.kind.as_str()) {
            continue;
        }
        let Some(kind) = manifest.connector(&target.connector).and_then(|c| c.kind) else {
            continue;
        };
        let (action, args) = match kind {
            ConnectorKind::ChatWebhook => {
                let mentions: Vec<String> = people
                    .iter()
                    .map(|(id, person)| {
                        person
                            .and_then(|p| p.chat.as_ref())
                            .map_or_else(|| (*id).to_owned(), |h| h.value.clone())
                    })
                    .collect();
                let mut text =
                    format!("*{}*\n{}\n→ {}", message.subject, message.text, message.act);
                if !mentions.is_empty() {
                    text.push_str(&format!("\ncc {}", mentions.join(" ")));
                }
                ("post", json!({ "text": text }))
            }
            ConnectorKind::Smtp => {
                let mut to: Vec<String> = target.to.iter().map(|t| t.value.clone()).collect();
                for (_, person) in &people {
                    if let Some(email) = person.and_then(|p| p.email.as_ref())
                        && !to.contains(&email.value)
                    {
                        to.push(email.value.clone());
                    }
                }
                if to.is_empty() {
                    continue;
                }
                let body = format!(
                    "{}\n\nTo act: {}\n\nWorkflow: {}\nVersion: {}\nEnvironment: {}\nBy: {}\n",
                    message.text,
                    message.act,
                    event.workflow,
                    event.version,
                    event.environment,
                    event.actor
                );
                (
                    "send",
                    json!({ "to": to, "subject": format!("[airlock] {}", message.subject), "body": body }),
                )
            }
            ConnectorKind::Http => {
                let recipients: Vec<Value> = people
                    .iter()
                    .map(|(id, person)| {
                        json!({
                            "id": id,
                            "chat": person.and_then(|p| p.chat.as_ref()).map(|c| c.value.clone()),
                            "email": person.and_then(|p| p.email.as_ref()).map(|e| e.value.clone()),
                        })
                    })
                    .collect();
                (
                    "request",
                    json!({
                        "method": "POST",
                        "path": target.path.as_ref().map_or("/", |p| p.value.as_str()),
                        "json": {
                            "event": event.kind.as_str(),
                            "environment": event.environment,
                            "workflow": event.workflow,
                            "version": event.version,
                            "actor": event.actor,
                            "subject": event.subject,
                            "recipients": recipients,
                            "message": message,
                        },
                    }),
                )
            }
            ConnectorKind::Sql => continue,
        };
        out.push(Delivery {
            target: target.connector.value.clone(),
            action: action.to_owned(),
            args,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    const MANIFEST: &str = r#"
project: p
connectors:
  chat: { kind: chat_webhook }
  mail: { kind: smtp }
  hook: { kind: http }
environments:
  staging:
    notify:
      - { connector: chat, events: [run.failed] }
    bindings:
      chat: { mode: record }
      mail: { mode: record }
      hook: { mode: record }
  production:
    protected: true
    approvers: [ana, bo]
    notify:
      - { connector: chat }
      - { connector: mail, to: ["ops@acme.example"] }
      - { connector: hook, path: /events, events: [promotion.requested] }
    bindings:
      chat: { url: "https://chat.example/hook", pages: true }
      mail: { host: smtp.example, from: "a@acme.example" }
      hook: { base_url: "https://hooks.example" }
people:
  ana: { chat: "@ana", email: "ana@acme.example" }
  bo: { email: "bo@acme.example" }
"#;

    fn manifest() -> Manifest {
        let loaded = crate::project::load(vec![SourceFile::new("airlock.yaml", MANIFEST)]);
        assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
        loaded.project.manifest
    }

    fn requested() -> Event {
        Event {
            kind: EventKind::PromotionRequested,
            environment: "production".into(),
            workflow: "order-intake".into(),
            version: "0123456789abcdef0123".into(),
            actor: "cy".into(),
            recipients: vec!["ana".into(), "bo".into()],
            subject: "req_1".into(),
            from: Some("staging".into()),
            step: None,
            detail: None,
        }
    }

    #[test]
    fn kinds_read_back_as_written() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(*kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                json!(kind.as_str()),
                "stored as written"
            );
        }
        assert_eq!(EventKind::NAMES.len(), EventKind::ALL.len());
    }

    #[test]
    fn a_request_reaches_every_target_that_carries_it_with_the_command_to_act() {
        let found = deliveries(&manifest(), &requested());
        let targets: Vec<&str> = found.iter().map(|d| d.target.as_str()).collect();
        assert_eq!(targets, ["chat", "mail", "hook"]);
        let text = found[0].args["text"].as_str().unwrap();
        for part in [
            "order-intake",
            "0123456789ab",
            "production",
            "cy",
            "airlock approve req_1",
            "POST /api/v1/promotions/req_1/approve",
            "@ana",
            "bo",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        assert!(!text.contains("0123456789abc"), "the short hash: {text}");
        assert_eq!(
            found[1].args["to"],
            json!(["ops@acme.example", "ana@acme.example", "bo@acme.example"])
        );
        assert_eq!(found[2].args["path"], json!("/events"));
        assert_eq!(found[2].args["json"]["event"], json!("promotion.requested"));
    }

    #[test]
    fn an_environment_notifies_through_its_own_targets_only() {
        let mut event = requested();
        event.environment = "staging".into();
        assert!(
            deliveries(&manifest(), &event).is_empty(),
            "staging carries run.failed only"
        );
        event.kind = EventKind::RunFailed;
        let found = deliveries(&manifest(), &event);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].target, "chat");
    }

    #[test]
    fn every_kind_names_workflow_hash_environment_and_how_to_act() {
        for kind in EventKind::ALL {
            let mut event = requested();
            event.kind = *kind;
            event.step = Some("approve_refund".into());
            let m = message(&event);
            let all = format!("{} {} {}", m.subject, m.text, m.act);
            for part in [
                "order-intake",
                "0123456789ab",
                "production",
                "airlock ",
                "API: ",
            ] {
                assert!(all.contains(part), "{kind:?}: {part} in {all}");
            }
        }
    }

    #[test]
    fn a_timeout_is_near_at_four_fifths_and_its_delivery_names_the_wait() {
        let hour = 3_600_000;
        assert_eq!(timeout_near(0, hour), 48 * 60_000);
        assert_eq!(
            timeout_near(10, 10),
            10,
            "a deadline already come is near at once"
        );
        let mut event = requested();
        event.kind = EventKind::StepTimeoutApproaching;
        event.subject = "0190f2a1-run".into();
        let id = event.id(&timeout_discriminator("sign_off", 1_234));
        assert_eq!(
            timeout_of(&format!("{id}/chat")),
            Some(("0190f2a1-run", 1_234))
        );
        assert_eq!(timeout_of(&format!("{}/chat", requested().id(""))), None);
        assert_eq!(timeout_of("step.timeout_approaching:e:r:s:nope/chat"), None);
    }

    #[test]
    fn an_event_id_is_the_same_for_the_same_event() {
        assert_eq!(requested().id(""), requested().id(""));
        assert_ne!(requested().id("ana"), requested().id("bo"));
    }
}
