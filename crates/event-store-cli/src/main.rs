//! The `event-store` command. Its subcommands (`init`, `append`, `read`, `tail`, `stats`,
//! `export`, `import`, `demo`, …) arrive with the SQLite/CLI issue; until then it only says so.

fn main() -> std::process::ExitCode {
    eprintln!(
        "event-store {}: the command-line tool is not implemented yet; use the `event-store` library",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::FAILURE
}
