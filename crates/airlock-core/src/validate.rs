//! Checks that span files: references between workflows, connectors, environments,
//! secrets and scenarios, and every template and condition.

use crate::decode::Located;
use crate::diagnostic::{Code, Diagnostic, Diagnostics, Span, suggestion};
use crate::expr::{self, ERROR_ROOT, ROOTS};
use crate::model::manifest::ConnectorKind;
use crate::model::{BindingMode, Manifest, Step, StepKind, Trigger, Workflow};
use crate::project::Project;
use crate::source::{FileId, SourceFile};
use crate::yaml::{Node, Value, span_in_scalar};
use std::collections::HashMap;

/// Runs every cross-file check, reporting into `diagnostics`.
pub fn check(project: &Project, diagnostics: &mut Diagnostics) {
    let Some(manifest_file) = project.manifest_file else {
        return;
    };
    let mut checker = Checker {
        project,
        diagnostics,
    };
    checker.manifest(manifest_file);
    checker.workflows();
    checker.scenarios();
}

struct Checker<'a> {
    project: &'a Project,
    diagnostics: &'a mut Diagnostics,
}

/// Where a template is read, which decides the names it may use.
#[derive(Clone, Copy)]
struct Scope<'s> {
    /// Step ids that have run before this point (their outputs are readable).
    earlier: &'s [&'s str],
    /// Every step id of the workflow.
    all: &'s [&'s str],
    /// Inside an `on_failure` handler: `error` is readable.
    in_failure_handler: bool,
}

impl Checker<'_> {
    fn report(
        &mut self,
        file: FileId,
        code: Code,
        span: Span,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diagnostics
            .push(Diagnostic::new(code, file, span, message));
        self.diagnostics.last_pushed_mut()
    }

    fn manifest(&mut self, file: FileId) {
        let manifest = &self.project.manifest;
        let text = &self.project.files[file];
        for environment in &manifest.environments {
            if environment.protected && environment.approvers.is_empty() {
                self.report(
                    file,
                    Code::ProtectedWithoutApprovers,
                    environment.name.span,
                    format!(
                        "protected environment `{}` has no approvers",
                        environment.name.value
                    ),
                )
                .set_label("protected, but nobody can approve a promotion into it")
                .help = Some("add `approvers: [NAME, …]` to this environment".into());
            }
            for binding in &environment.bindings {
                let Some(connector) = manifest.connector(&binding.connector) else {
                    let help = suggestion(
                        &binding.connector,
                        manifest.connectors.iter().map(|c| c.name.as_str()),
                    );
                    self.report(
                        file,
                        Code::UnknownConnector,
                        binding.connector.span,
                        format!(
                            "environment `{}` binds unknown connector `{}`",
                            environment.name.value, binding.connector.value
                        ),
                    )
                    .help = help.or_else(|| Some("declare it under `connectors:`".into()));
                    continue;
                };
                if environment.protected && binding.mode.value == BindingMode::Record {
                    self.report(
                        file,
                        Code::RecordInProtected,
                        binding.mode.span,
                        format!(
                            "protected environment `{}` binds `{}` in record mode",
                            environment.name.value, connector.name.value
                        ),
                    )
                    .help = Some(
                        "bind the real endpoint, with its credential as `${secret:NAME}`".into(),
                    );
                }
                if !environment.protected
                    && let Some(pages) = binding.pages.as_ref().filter(|p| p.value)
                {
                    self.report(
                        file,
                        Code::PagingOutsideProtected,
                        pages.span,
                        format!(
                            "`{}` pages, but environment `{}` is not protected: it never pages",
                            connector.name.value, environment.name.value
                        ),
                    )
                    .set_label("a paging destination")
                    .help =
                        Some("remove `pages: true` here; bind a channel nobody is woken by".into());
                }
                for (_, value) in &binding.settings {
                    self.secret_references(text, file, value, environment, manifest);
                }
            }
            self.notify_targets(file, manifest, environment);
            for secret in &environment.secrets {
                if secret.is_empty()
                    || !secret
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    self.report(
                        file,
                        Code::InvalidValue,
                        secret.span,
                        format!(
                            "secret name `{}` may use only letters, digits and `_`",
                            secret.value
                        ),
                    );
                }
            }
        }
        self.differences(file, manifest);
        self.promotion(file, manifest);
    }

    /// An environment's `notify:` goes through its own bindings of a kind that carries
    /// notifications, for events that exist.
    fn notify_targets(
        &mut self,
        file: FileId,
        manifest: &Manifest,
        environment: &crate::model::Environment,
    ) {
        for target in &environment.notify {
            let name = &target.connector;
            let Some(connector) = manifest.connector(name) else {
                let help = suggestion(name, manifest.connectors.iter().map(|c| c.name.as_str()));
                self.report(
                    file,
                    Code::BadNotifyTarget,
                    name.span,
                    format!("notifications go to unknown connector `{}`", name.value),
                )
                .help = help.or_else(|| Some("declare it under `connectors:`".into()));
                continue;
            };
            // A connector of no known kind was reported where its kind is (AL0011): one
            // mistake, one problem.
            let Some(kind) = connector.kind else {
                continue;
            };
            if !matches!(
                kind,
                ConnectorKind::ChatWebhook | ConnectorKind::Smtp | ConnectorKind::Http
            ) {
                self.report(
                    file,
                    Code::BadNotifyTarget,
                    name.span,
                    format!(
                        "`{}` is a {} connector: notifications go through chat_webhook, smtp or http",
                        name.value,
                        kind.name()
                    ),
                );
                continue;
            }
            if environment.binding(name).is_none() {
                self.report(
                    file,
                    Code::BadNotifyTarget,
                    name.span,
                    format!(
                        "environment `{}` notifies through `{}`, which it does not bind",
                        environment.name.value, name.value
                    ),
                )
                .help = Some(format!(
                    "bind `{}` under this environment's `bindings:`; another environment's binding never carries its notifications",
                    name.value
                ));
            }
            for event in &target.events {
                if !crate::notify::EventKind::NAMES.contains(&event.as_str()) {
                    let help = suggestion(event, crate::notify::EventKind::NAMES.iter().copied());
                    self.report(
                        file,
                        Code::BadNotifyTarget,
                        event.span,
                        format!("event `{}` does not exist", event.value),
                    )
                    .help = help.or_else(|| {
                        Some(format!(
                            "events are: {}",
                            crate::notify::EventKind::NAMES.join(", ")
                        ))
                    });
                }
            }
            if !target.to.is_empty() && connector.kind != Some(ConnectorKind::Smtp) {
                self.report(
                    file,
                    Code::BadNotifyTarget,
                    target.to[0].span,
                    "`to:` is for a mail (smtp) target",
                );
            }
            if let Some(path) = &target.path
                && connector.kind != Some(ConnectorKind::Http)
            {
                self.report(
                    file,
                    Code::BadNotifyTarget,
                    path.span,
                    "`path:` is for an http target",
                );
            }
        }
    }

    /// Checks every `${secret:NAME}` inside a binding value against the environment's
    /// declared secrets. Never another environment's: secrets do not cross.
    fn secret_references(
        &mut self,
        source: &SourceFile,
        file: FileId,
        node: &Node,
        environment: &crate::model::Environment,
        manifest: &Manifest,
    ) {
        match &node.value {
            Value::Str(text) => {
                for (name, range) in secret_references(text) {
                    let span = span_in_scalar(source, node, range);
                    if name.is_empty() {
                        self.report(file, Code::InvalidValue, span, "empty secret reference")
                            .help = Some("write `${secret:NAME}`".into());
                        continue;
                    }
                    if environment.secrets.iter().any(|s| s.value == name) {
                        continue;
                    }
                    let elsewhere: Vec<&str> = manifest
                        .environments
                        .iter()
                        .filter(|e| e.secrets.iter().any(|s| s.value == name))
                        .map(|e| e.name.as_str())
                        .collect();
                    let help = suggestion(name, environment.secrets.iter().map(|s| s.as_str()))
                        .or_else(|| (!elsewhere.is_empty()).then(|| format!(
                            "`{name}` is declared in {} only; secrets never cross environments: declare it under `{}`'s `secrets:` and set it with `airlock secrets set {name} --env {}`",
                            elsewhere.join(", "), environment.name.value, environment.name.value
                        )))
                        .or_else(|| Some(format!("declare it under `secrets:` of environment `{}`", environment.name.value)));
                    self.report(
                        file,
                        Code::UnknownSecret,
                        span,
                        format!(
                            "unknown secret `{name}` in environment `{}`",
                            environment.name.value
                        ),
                    )
                    .help = help;
                }
            }
            Value::Seq(items) => {
                for item in items {
                    self.secret_references(source, file, item, environment, manifest);
                }
            }
            Value::Map(entries) => {
                for (_, value) in entries {
                    self.secret_references(source, file, value, environment, manifest);
                }
            }
            _ => {}
        }
    }

    fn differences(&mut self, file: FileId, manifest: &Manifest) {
        for difference in &manifest.differences {
            for environment in &difference.environments {
                self.environment_name(file, manifest, environment);
            }
            if let Err((range, why)) = difference_target(manifest, &difference.path) {
                let quote = usize::from(
                    self.project.files[file].text[difference.path.span.start..]
                        .starts_with(['"', '\'']),
                );
                let span = difference
                    .path
                    .span
                    .sub(quote + range.start, quote + range.end);
                self.report(
                    file,
                    Code::DanglingDifference,
                    span,
                    format!("difference `{}` names nothing: {why}", difference.path.value),
                )
                .help = Some("a path is `bindings.CONNECTOR.FIELD`, `bindings.CONNECTOR`, `egress`, `approvers`, `secrets` or `protected`".into());
            }
        }
    }

    fn environment_name(
        &mut self,
        file: FileId,
        manifest: &Manifest,
        name: &Located<String>,
    ) -> bool {
        if manifest.environment(name).is_some() {
            return true;
        }
        let help =
            suggestion(name, manifest.environments.iter().map(|e| e.name.as_str())).or_else(|| {
                Some(format!(
                    "environments are: {}",
                    manifest
                        .environments
                        .iter()
                        .map(|e| e.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            });
        self.report(
            file,
            Code::UnknownEnvironment,
            name.span,
            format!("unknown environment `{}`", name.value),
        )
        .help = help;
        false
    }

    fn promotion(&mut self, file: FileId, manifest: &Manifest) {
        for rule in &manifest.promotion {
            let from_ok = self.environment_name(file, manifest, &rule.from);
            let to_ok = self.environment_name(file, manifest, &rule.to);
            if from_ok && to_ok && rule.from.value == rule.to.value {
                self.report(
                    file,
                    Code::InvalidValue,
                    rule.to.span,
                    "a promotion goes from one environment to another",
                );
            }
            if to_ok {
                self.approvals_can_be_met(file, manifest, rule);
            }
        }
    }

    /// A rule asking, at some risk, for more approvals than its target has approvers can
    /// never pass, whoever asks.
    fn approvals_can_be_met(
        &mut self,
        file: FileId,
        manifest: &Manifest,
        rule: &crate::model::PromotionRule,
    ) {
        let Some(target) = manifest.environment(&rule.to.value) else {
            return;
        };
        let approvers: Vec<&str> = target.approvers.iter().map(|a| a.value.as_str()).collect();
        // A protected target without approvers is reported as such already.
        if target.protected && approvers.is_empty() {
            return;
        }
        let mut unmeetable: Vec<(u32, &str)> = Vec::new();
        for risk_name in crate::model::Risk::NAMES {
            let Some(risk) = crate::model::Risk::parse(risk_name) else {
                continue;
            };
            let required = crate::policy::with_floors(
                crate::policy::requirements(rule, risk),
                target.protected,
            )
            .approvals
            .unwrap_or(0);
            if required as usize > approvers.len() {
                unmeetable.push((required, risk_name));
            }
        }
        let Some(&(most, _)) = unmeetable.iter().max_by_key(|(n, _)| *n) else {
            return;
        };
        let risks: Vec<&str> = unmeetable.iter().map(|(_, r)| *r).collect();
        self.report(
            file,
            Code::UnmeetableApprovals,
            rule.to.span,
            format!(
                "promotion into `{}` asks for up to {most} approvals ({} risk) but `{}` has {} approver{}{}: no request could ever pass",
                rule.to.value,
                risks.join(", "),
                rule.to.value,
                approvers.len(),
                if approvers.len() == 1 { "" } else { "s" },
                if approvers.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", approvers.join(", "))
                }
            ),
        )
        .help = Some(format!(
            "add approvers to `environments.{}.approvers`, or ask for fewer approvals",
            rule.to.value
        ));
    }

    fn workflows(&mut self) {
        let mut seen: HashMap<&str, FileId> = HashMap::new();
        for entry in &self.project.workflows {
            let name = &entry.workflow.name;
            if let Some(first) = seen.get(name.as_str()) {
                let first_path = self.project.files[*first].path.clone();
                self.report(
                    entry.file,
                    Code::DuplicateWorkflow,
                    name.span,
                    format!("workflow `{}` is declared twice", name.value),
                )
                .help = Some(format!("`{first_path}` already declares it; rename one"));
            } else {
                seen.insert(name.as_str(), entry.file);
            }
            self.workflow(entry.file, &entry.workflow);
        }
    }

    fn workflow(&mut self, file: FileId, workflow: &Workflow) {
        let steps = workflow.all_steps();
        let mut ids: HashMap<&str, &Step> = HashMap::new();
        for step in &steps {
            if let Some(first) = ids.get(step.id.as_str()) {
                let (line, _) = self.project.files[file].line_col(first.id.span.start);
                self.report(
                    file,
                    Code::DuplicateStepId,
                    step.id.span,
                    format!("duplicate step id `{}`", step.id.value),
                )
                .set_label(format!("first used on line {line}"))
                .help = Some(
                    "step ids are unique within a workflow, across branches and handlers".into(),
                );
            } else {
                ids.insert(step.id.as_str(), step);
            }
        }
        let all: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        let manifest = &self.project.manifest;
        if let Some(Trigger::Webhook {
            signature: Some(signature),
            ..
        }) = &workflow.trigger
        {
            // The previous secret is checked like the current one: during a rotation
            // each environment holds both of its own keys, never another's.
            let names = std::iter::once((&signature.secret, signature.secret_span, "signing"))
                .chain(
                    signature
                        .previous_secret
                        .as_ref()
                        .map(|p| (p, signature.previous_secret_span, "previous signing")),
                );
            for (name, span, what) in names {
                for environment in &manifest.environments {
                    if !environment.secrets.iter().any(|s| s.value == *name) {
                        self.report(
                            file,
                            Code::UnknownSecret,
                            span,
                            format!(
                                "unknown secret `{}` in environment `{}`",
                                name, environment.name.value
                            ),
                        )
                        .help = Some(format!(
                            "each environment that runs this webhook declares its own {what} secret under `secrets:`; `{}` does not",
                            environment.name.value
                        ));
                    }
                }
            }
        }
        if let Some(Trigger::Webhook {
            idempotency_key: Some(key),
            idempotency_key_span,
            ..
        }) = &workflow.trigger
        {
            // Read when a delivery arrives, before any step has run.
            let scope = Scope {
                earlier: &[],
                all: &all,
                in_failure_handler: false,
            };
            let project = self.project;
            self.template(
                file,
                &project.files[file],
                &Located::new(key.clone(), *idempotency_key_span),
                scope,
            );
        }
        let mut earlier: Vec<&str> = Vec::new();
        self.steps(file, &workflow.steps, &all, &mut earlier, false);
        if let Some(output) = &workflow.output {
            // Rendered when the steps have run: it reads them as a last `map` would.
            let scope = Scope {
                earlier: &earlier,
                all: &all,
                in_failure_handler: false,
            };
            let project = self.project;
            self.templates_in(file, &project.files[file], output, scope);
        }
        let mut before_handler = all.clone();
        before_handler.retain(|id| !workflow.on_failure.iter().any(|s| s.id.as_str() == *id));
        let mut handler_earlier = before_handler;
        self.steps(file, &workflow.on_failure, &all, &mut handler_earlier, true);
    }

    fn steps<'w>(
        &mut self,
        file: FileId,
        steps: &'w [Step],
        all: &[&'w str],
        earlier: &mut Vec<&'w str>,
        in_failure_handler: bool,
    ) {
        for step in steps {
            {
                let scope = Scope {
                    earlier,
                    all,
                    in_failure_handler,
                };
                self.step(file, step, scope);
            }
            match &step.kind {
                StepKind::If {
                    then, otherwise, ..
                } => {
                    earlier.push(step.id.as_str());
                    let mut branch = earlier.clone();
                    self.steps(file, then, all, &mut branch, in_failure_handler);
                    let mut other = earlier.clone();
                    self.steps(file, otherwise, all, &mut other, in_failure_handler);
                    // After the branch, steps of either arm may have run.
                    for id in branch.into_iter().chain(other) {
                        if !earlier.contains(&id) {
                            earlier.push(id);
                        }
                    }
                }
                StepKind::Switch { cases, default, .. } => {
                    earlier.push(step.id.as_str());
                    let mut after = earlier.clone();
                    for arm in cases.iter().map(|(_, s)| s).chain(std::iter::once(default)) {
                        let mut branch = earlier.clone();
                        self.steps(file, arm, all, &mut branch, in_failure_handler);
                        for id in branch {
                            if !after.contains(&id) {
                                after.push(id);
                            }
                        }
                    }
                    *earlier = after;
                }
                _ => earlier.push(step.id.as_str()),
            }
            if !step.on_failure.is_empty() {
                let mut handler = earlier.clone();
                self.steps(file, &step.on_failure, all, &mut handler, true);
            }
        }
    }

    fn step(&mut self, file: FileId, step: &Step, scope: Scope<'_>) {
        let source = &self.project.files[file];
        match &step.kind {
            StepKind::Map { values } => self.templates_in(file, source, values, scope),
            StepKind::If { condition, .. } => self.condition(file, source, condition, scope),
            StepKind::Switch { value, .. } => self.condition(file, source, value, scope),
            StepKind::Call {
                target,
                connector,
                action,
                with,
                idempotency_key,
            } => {
                self.call(file, target, connector, action, with.as_ref());
                if let Some(with) = with {
                    self.templates_in(file, source, with, scope);
                }
                if let Some(key) = idempotency_key {
                    self.template(file, source, key, scope);
                }
            }
            StepKind::Approval { message, .. } => {
                if let Some(message) = message {
                    self.template(file, source, message, scope);
                }
            }
            StepKind::Fail { message } => self.template(file, source, message, scope),
            StepKind::Delay { .. } => {}
        }
    }

    fn call(
        &mut self,
        file: FileId,
        target: &Located<String>,
        connector: &str,
        action: &str,
        with: Option<&Node>,
    ) {
        if !self.project.manifest_parsed {
            return;
        }
        let Some((kind, connector_span)) = self.connector_action(file, target, connector, action)
        else {
            return;
        };
        for environment in &self.project.manifest.environments {
            if environment.binding(connector).is_none() {
                self.report(
                    file,
                    Code::UnboundConnector,
                    connector_span,
                    format!(
                        "connector `{connector}` is not bound in environment `{}`",
                        environment.name.value
                    ),
                )
                .help = Some(format!(
                    "add a binding for `{connector}` under environments.{}.bindings (use `mode: record` for a stand-in)",
                    environment.name.value
                ));
            }
        }
        let Some(kind) = kind else { return };
        self.arguments(file, target, kind, action, with);
    }

    fn arguments(
        &mut self,
        file: FileId,
        target: &Located<String>,
        kind: ConnectorKind,
        action: &str,
        with: Option<&Node>,
    ) {
        let spec = kind.action_arguments(action);
        let entries: &[(Node, Node)] = match with.map(|n| &n.value) {
            Some(Value::Map(entries)) => entries,
            Some(Value::Null) | None => &[],
            Some(other) => {
                let span = with.map_or(target.span, |n| n.span);
                self.report(
                    file,
                    Code::WrongType,
                    span,
                    format!(
                        "expected a mapping of arguments, found {}",
                        other.type_name()
                    ),
                );
                return;
            }
        };
        for (key, _) in entries {
            let name = crate::yaml::key_text(key);
            if !spec.iter().any(|(arg, _)| *arg == name) {
                let help = suggestion(&name, spec.iter().map(|(a, _)| *a)).or_else(|| {
                    Some(format!(
                        "`{}.{action}` takes: {}",
                        kind.name(),
                        spec.iter().map(|(a, _)| *a).collect::<Vec<_>>().join(", ")
                    ))
                });
                self.report(
                    file,
                    Code::UnknownKey,
                    key.span,
                    format!("unknown argument `{name}` for `{}`", target.value),
                )
                .help = help;
            }
        }
        for (arg, required) in spec {
            if *required && !entries.iter().any(|(k, _)| k.as_str() == Some(arg)) {
                self.report(
                    file,
                    Code::MissingField,
                    target.span,
                    format!("`{}` is missing required argument `{arg}`", target.value),
                )
                .help = Some(format!("add `{arg}:` under `with:`"));
            }
        }
    }

    fn templates_in(&mut self, file: FileId, source: &SourceFile, node: &Node, scope: Scope<'_>) {
        match &node.value {
            Value::Str(text) if expr::is_template(text) => {
                let located = Located::new(text.clone(), node.span);
                self.template_node(file, source, node, &located, scope);
            }
            Value::Seq(items) => items
                .iter()
                .for_each(|i| self.templates_in(file, source, i, scope)),
            Value::Map(entries) => entries
                .iter()
                .for_each(|(_, v)| self.templates_in(file, source, v, scope)),
            _ => {}
        }
    }

    fn template(
        &mut self,
        file: FileId,
        source: &SourceFile,
        text: &Located<String>,
        scope: Scope<'_>,
    ) {
        if !expr::is_template(text) {
            return;
        }
        let node = Node {
            span: text.span,
            value: Value::Str(text.value.clone()),
        };
        self.template_node(file, source, &node, text, scope);
    }

    fn template_node(
        &mut self,
        file: FileId,
        source: &SourceFile,
        node: &Node,
        text: &Located<String>,
        scope: Scope<'_>,
    ) {
        match expr::check_template(text) {
            Ok(checked) => {
                self.unlisted(file, source, node, checked.unlisted);
                self.references(file, source, node, checked.references, scope)
            }
            Err(error) => {
                let span = span_in_scalar(source, node, error.range.clone());
                self.report(
                    file,
                    Code::TemplateSyntax,
                    span,
                    format!("template syntax error: {}", error.message),
                )
                .set_label(error.message.clone());
            }
        }
    }

    fn condition(
        &mut self,
        file: FileId,
        source: &SourceFile,
        text: &Located<String>,
        scope: Scope<'_>,
    ) {
        let node = Node {
            span: text.span,
            value: Value::Str(text.value.clone()),
        };
        match expr::check_condition(text) {
            Ok(checked) => {
                self.unlisted(file, source, &node, checked.unlisted);
                self.references(file, source, &node, checked.references, scope)
            }
            Err(error) => {
                let span = span_in_scalar(source, &node, error.range.clone());
                self.report(
                    file,
                    Code::TemplateSyntax,
                    span,
                    format!("condition syntax error: {}", error.message),
                )
                .set_label(error.message.clone());
            }
        }
    }

    /// What a template uses outside the language, each at its place inside the string.
    fn unlisted(
        &mut self,
        file: FileId,
        source: &SourceFile,
        node: &Node,
        unlisted: Vec<expr::Unlisted>,
    ) {
        for found in unlisted {
            let span = span_in_scalar(source, node, found.range.clone());
            self.report(file, Code::NotInLanguage, span, found.message)
                .set_label("not offered by the expression language")
                .help = found.help;
        }
    }

    fn references(
        &mut self,
        file: FileId,
        source: &SourceFile,
        node: &Node,
        references: Vec<expr::Reference>,
        scope: Scope<'_>,
    ) {
        for reference in references {
            let root = reference.root();
            let root_span = span_in_scalar(
                source,
                node,
                reference.offset..reference.offset + root.len(),
            );
            let allowed = ROOTS.contains(&root) || (scope.in_failure_handler && root == ERROR_ROOT);
            if !allowed {
                let mut known: Vec<&str> = ROOTS.to_vec();
                if scope.in_failure_handler {
                    known.push(ERROR_ROOT);
                }
                let help = if root == ERROR_ROOT {
                    Some("`error` is readable only inside an `on_failure` handler".to_owned())
                } else {
                    suggestion(root, known.iter().copied())
                }
                .or_else(|| Some(format!("templates may read: {}", known.join(", "))));
                self.report(
                    file,
                    Code::UnknownRoot,
                    root_span,
                    format!("unknown name `{root}`"),
                )
                .set_label("not defined when the workflow runs")
                .help = help;
                continue;
            }
            if root == "steps" {
                let Some(step) = reference.path.get(1) else {
                    continue;
                };
                if scope.earlier.contains(&step.as_str()) {
                    continue;
                }
                let at = reference.offset + root.len() + 1;
                let span = span_in_scalar(source, node, at..at + step.len());
                if scope.all.contains(&step.as_str()) {
                    self.report(
                        file,
                        Code::UnknownStep,
                        span,
                        format!("step `{step}` has not run yet at this point"),
                    )
                    .set_label("runs only later")
                    .help = Some("a step can read the outputs of steps that run before it".into());
                } else {
                    let help = suggestion(step, scope.all.iter().copied()).or_else(|| {
                        Some(format!("steps of this workflow: {}", scope.all.join(", ")))
                    });
                    self.report(
                        file,
                        Code::UnknownStep,
                        span,
                        format!("unknown step `{step}`"),
                    )
                    .help = help;
                }
            }
        }
    }

    fn scenarios(&mut self) {
        for entry in &self.project.scenarios {
            let scenario = &entry.scenario;
            let file = entry.file;
            let Some(workflow) = self.project.workflow(&scenario.workflow) else {
                if self.workflow_file_failed(&scenario.workflow) {
                    // Its workflow has errors of its own; saying "unknown" would only add noise.
                    continue;
                }
                let help = suggestion(
                    &scenario.workflow,
                    self.project
                        .workflows
                        .iter()
                        .map(|w| w.workflow.name.as_str()),
                )
                .map(|s| format!("{s} (scenarios live in `tests/<workflow>/`)"))
                .or_else(|| {
                    Some(format!(
                        "scenarios live in `tests/<workflow>/`; workflows are named: {}",
                        self.project
                            .workflows
                            .iter()
                            .map(|w| w.workflow.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                });
                self.report(
                    file,
                    Code::UnknownWorkflow,
                    Span::default(),
                    format!("scenario for unknown workflow `{}`", scenario.workflow),
                )
                .help = help;
                continue;
            };
            let steps = workflow.workflow.all_steps();
            let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
            let step_exists = |checker: &mut Self, id: &Located<String>| {
                if !ids.contains(&id.as_str()) {
                    let help = suggestion(id, ids.iter().copied());
                    checker
                        .report(
                            file,
                            Code::UnknownStep,
                            id.span,
                            format!(
                                "workflow `{}` has no step `{}`",
                                scenario.workflow, id.value
                            ),
                        )
                        .help = help;
                }
            };
            for id in &scenario.expect.path {
                step_exists(self, id);
            }
            for (id, _) in &scenario.expect.outputs {
                step_exists(self, id);
            }
            for (id, _, _) in &scenario.approvals {
                step_exists(self, id);
            }
            let targets = scenario
                .stubs
                .iter()
                .map(|s| &s.target)
                .chain(scenario.expect.calls.iter().map(|c| &c.target))
                .chain(scenario.expect.not_called.iter());
            for target in targets {
                self.scenario_target(file, target);
            }
        }
    }

    /// Whether `workflows/<name>.yaml` exists but did not decode.
    fn workflow_file_failed(&self, name: &str) -> bool {
        self.project.files.iter().enumerate().any(|(id, f)| {
            f.path
                .strip_prefix("workflows/")
                .and_then(|p| p.strip_suffix(".yaml").or_else(|| p.strip_suffix(".yml")))
                == Some(name)
                // A file that decoded under another `name:` did not fail: the scenario is orphaned.
                && !self.project.workflows.iter().any(|w| w.file == id)
        })
    }

    /// Resolves `connector.action`, reporting an unknown connector or action at its own
    /// part of the text. Returns the connector's kind (when it names one) and the span of
    /// the connector part, or `None` when something is unknown.
    fn connector_action(
        &mut self,
        file: FileId,
        target: &Located<String>,
        connector: &str,
        action: &str,
    ) -> Option<(Option<ConnectorKind>, Span)> {
        let manifest = &self.project.manifest;
        let quote = usize::from(
            self.project.files[file].text[target.span.start..].starts_with(['"', '\'']),
        );
        let connector_span = target.span.sub(quote, quote + connector.len());
        let action_span = target
            .span
            .sub(quote + connector.len() + 1, quote + target.value.len());
        let Some(declared) = manifest.connector(connector) else {
            let names = || manifest.connectors.iter().map(|c| c.name.as_str());
            let help = suggestion(connector, names()).unwrap_or_else(|| {
                format!(
                    "declared connectors: {}",
                    names().collect::<Vec<_>>().join(", ")
                )
            });
            self.report(
                file,
                Code::UnknownConnector,
                connector_span,
                format!("unknown connector `{connector}`"),
            )
            .help = Some(help);
            return None;
        };
        if let Some(kind) = declared.kind
            && !kind.actions().contains(&action)
        {
            let help = suggestion(action, kind.actions().iter().copied()).unwrap_or_else(|| {
                format!(
                    "`{}` connectors offer: {}",
                    kind.name(),
                    kind.actions().join(", ")
                )
            });
            self.report(
                file,
                Code::UnknownAction,
                action_span,
                format!("`{connector}` ({}) has no action `{action}`", kind.name()),
            )
            .help = Some(help);
            return None;
        }
        Some((declared.kind, connector_span))
    }

    fn scenario_target(&mut self, file: FileId, target: &Located<String>) {
        let Some((connector, action)) = target.split_once('.') else {
            self.report(
                file,
                Code::InvalidValue,
                target.span,
                format!("`{}` is not `connector.action`", target.value),
            );
            return;
        };
        if !self.project.manifest_parsed {
            return;
        }
        self.connector_action(file, target, connector, action);
    }
}

/// Every `${secret:NAME}` in `text`: the name and its byte range.
pub fn secret_references(text: &str) -> Vec<(&str, std::ops::Range<usize>)> {
    const OPEN: &str = "${secret:";
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(OPEN) {
        let name_start = from + at + OPEN.len();
        let name_end = text[name_start..]
            .find('}')
            .map_or(text.len(), |i| name_start + i);
        found.push((&text[name_start..name_end], name_start..name_end));
        from = name_end;
    }
    found
}

/// Resolves a difference path against the manifest, or returns the part that names
/// nothing (a range inside the path) and why.
fn difference_target(
    manifest: &Manifest,
    path: &str,
) -> Result<(), (std::ops::Range<usize>, String)> {
    let parts: Vec<&str> = path.split('.').collect();
    let offset = |i: usize| parts[..i].iter().map(|p| p.len() + 1).sum::<usize>();
    let range = |i: usize| offset(i)..offset(i) + parts[i].len();
    match parts.as_slice() {
        ["egress" | "approvers" | "secrets" | "protected"] => Ok(()),
        ["bindings", connector, rest @ ..] => {
            let Some(declared) = manifest.connector(connector) else {
                return Err((range(1), format!("there is no connector `{connector}`")));
            };
            match rest {
                [] => Ok(()),
                [field, ..] => {
                    let known_by_kind = declared
                        .kind
                        .is_some_and(|k| k.binding_fields().iter().any(|f| f.name == *field));
                    let set_somewhere = manifest.environments.iter().any(|e| {
                        e.binding(connector).is_some_and(|b| {
                            b.setting(field).is_some()
                                || (*field == "mode")
                                || (*field == "responses" && !b.responses.is_empty())
                        })
                    });
                    if known_by_kind || set_somewhere {
                        Ok(())
                    } else {
                        Err((
                            range(2),
                            format!("no binding of `{connector}` has a field `{field}`"),
                        ))
                    }
                }
            }
        }
        [first, ..] => Err((
            range(0),
            format!("`{first}` is not something environments have"),
        )),
        [] => Err((0..0, "the path is empty".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_secret_references_with_ranges() {
        let text = "Bearer ${secret:CRM_TOKEN} and ${secret:}";
        let refs = secret_references(text);
        assert_eq!(refs[0].0, "CRM_TOKEN");
        assert_eq!(&text[refs[0].1.clone()], "CRM_TOKEN");
        assert_eq!(refs[1].0, "");
    }
    #[test]
    fn a_previous_signing_secret_is_checked_in_every_environment() {
        use crate::source::SourceFile;
        let manifest = "project: p\nconnectors: {}\nenvironments:\n  staging:\n    secrets: [HOOK_NEW, HOOK_OLD]\n    bindings: {}\n  production:\n    secrets: [HOOK_NEW]\n    bindings: {}\n";
        let workflow = "name: w\ntrigger:\n  webhook:\n    path: w\n    signature: { scheme: github, secret: HOOK_NEW, previous_secret: HOOK_OLD }\nsteps:\n  - id: a\n    map: { x: 1 }\n";
        let loaded = crate::project::load(vec![
            SourceFile::new("airlock.yaml", manifest),
            SourceFile::new("workflows/w.yaml", workflow),
        ]);
        let found: Vec<(Code, &str, &str)> = loaded
            .diagnostics
            .iter()
            .map(|d| {
                (
                    d.code,
                    &workflow[d.span.start..d.span.end],
                    d.message.as_str(),
                )
            })
            .collect();
        assert_eq!(
            found,
            [(
                Code::UnknownSecret,
                "HOOK_OLD",
                "unknown secret `HOOK_OLD` in environment `production`"
            )],
            "staging's HOOK_OLD does not stand in for production's"
        );
    }

    #[test]
    fn a_workflow_output_reads_the_steps_and_changes_the_hash_only_when_declared() {
        use crate::source::SourceFile;
        let manifest = "project: p\nconnectors: {}\nenvironments:\n  staging:\n    bindings: {}\n";
        let plain = "name: w\ntrigger: manual\nsteps:\n  - id: a\n    map: { x: 1 }\n";
        let with_output = format!("{plain}output:\n  x: \"{{{{ steps.a.output.x }}}}\"\n");
        let misspelt = format!("{plain}output:\n  x: \"{{{{ steps.b.output.x }}}}\"\n");
        let load = |workflow: &str| {
            crate::project::load(vec![
                SourceFile::new("airlock.yaml", manifest),
                SourceFile::new("workflows/w.yaml", workflow),
            ])
        };
        let hash = |loaded: &crate::project::Loaded| {
            crate::canonical::version_id(&loaded.project.workflows[0].workflow).0
        };
        let plain_loaded = load(plain);
        let output_loaded = load(&with_output);
        assert!(
            output_loaded.diagnostics.is_empty(),
            "{:?}",
            output_loaded.diagnostics
        );
        assert_ne!(hash(&plain_loaded), hash(&output_loaded));
        let bad = load(&misspelt);
        let found: Vec<(Code, &str)> = bad
            .diagnostics
            .iter()
            .map(|d| (d.code, &misspelt[d.span.start..d.span.end]))
            .collect();
        assert_eq!(
            found,
            [(Code::UnknownStep, "b")],
            "an unknown step in the output is reported at its place"
        );
    }
}
