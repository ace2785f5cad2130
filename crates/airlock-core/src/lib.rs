//! Airlock's model and rules. Pure: no I/O, no async, no clock.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod authz;
pub mod canonical;
pub mod decode;
pub mod diagnostic;
pub mod duration;
pub mod expr;
pub mod model;
pub mod parity;
pub mod policy;
pub mod project;
pub mod readiness;
pub mod scaffold;
pub mod schedule;
pub mod source;
pub mod validate;
pub mod webhook;
pub mod yaml;
