//! The durable executor.
//!
//! `airlock_core::interpreter` decides, purely, what a run does next from its journal;
//! [`executor::Engine`] claims runs from the store, performs those decisions (the only
//! place with I/O), and journals every result before the run moves on. [`runtime`]
//! supplies the workflow versions and connectors (with secrets resolved from the
//! run's own environment) that runs need.

pub mod clock;
pub mod executor;
mod in_flight;
pub mod owners;
pub mod randomness;
pub mod runtime;
mod watch;

pub use clock::{Clock, SimulatedClock, Sleep, SystemClock};
pub use executor::{Accepted, Engine, EngineError, EngineOptions, Observer};
pub use randomness::{OsRandomness, Randomness, SeededRandomness};
pub use runtime::{ProjectRuntime, Runtime};

/// A new run id: time-ordered (UUIDv7), so ids sort by acceptance. From the system
/// clock and the operating system's randomness, for callers that hold no engine; an
/// engine's own ids ([`Engine::new_run_id`]) come from its injected ones.
pub fn new_run_id() -> String {
    airlock_core::ids::run_id(SystemClock.now(), OsRandomness.bits())
}
