//! What CI reads: GitHub Actions annotations for `validate`, JUnit XML for `test`, and a
//! markdown parity report for `diff`, which a bot posts on the pull request.

pub mod annotations;
pub mod junit;
pub mod markdown;
