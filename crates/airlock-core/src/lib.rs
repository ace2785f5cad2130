//! Airlock's model and rules. Pure: no I/O, no async, no clock.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod authz;
pub mod bundle;
pub mod canonical;
pub mod config;
pub mod decode;
pub mod diagnostic;
pub mod duration;
pub mod expr;
pub mod ids;
pub mod interpreter;
pub mod model;
pub mod notify;
pub mod parity;
pub mod policy;
pub mod project;
pub mod readiness;
pub mod release;
pub mod run;
pub mod scaffold;
pub mod schedule;
pub mod schema;
pub mod source;
pub mod suite;
pub mod time;
pub mod validate;
pub mod webhook;
pub mod yaml;
