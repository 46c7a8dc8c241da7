#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    match connector_auth_operator::cli::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
