//! The model of a project: what users write, decoded and positioned.

pub mod manifest;
pub mod scenario;
pub mod workflow;

pub use manifest::{
    Binding, BindingMode, Connector, ConnectorKind, Difference, Environment, FreezeWindow,
    Manifest, PromotionRule, Requirements, Risk, StagingRuns,
};
pub use scenario::{Expectations, ExpectedCall, MatchMode, Scenario, Stub, StubReply};
pub use workflow::{Retry, RetryOn, Step, StepKind, Trigger, Workflow};
