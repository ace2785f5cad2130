use crate::cli::Global;
use crate::error::CliError;
use airlock_core::diagnostic::Code;
use std::process::ExitCode;

pub fn run(global: &Global, code: &str) -> Result<ExitCode, CliError> {
    let Some(code) = Code::parse(code) else {
        return Err(CliError::usage(
            format!("unknown error code `{code}`"),
            Some(format!(
                "codes run from {} to {}",
                Code::ALL[0].as_str(),
                Code::ALL[Code::ALL.len() - 1].as_str()
            )),
        ));
    };
    if global.json {
        crate::output::json(&serde_json::json!({
            "code": code.as_str(),
            "title": code.title(),
            "explanation": code.explanation(),
        }));
    } else {
        outln!(
            "{}: {}\n\n{}",
            code.as_str(),
            code.title(),
            code.explanation()
        );
    }
    Ok(ExitCode::SUCCESS)
}
