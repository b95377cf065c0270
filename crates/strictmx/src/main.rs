//! The strictmx binary: parses the command line and hands each command to its module.
//!
//! Kept thin: configuration is `strictmx-config`'s job, serving is `serve`, the queue commands
//! talk to the running server through `control`. Exit codes: 0 ok, 1 runtime failure, 64 bad
//! configuration or usage.

mod control;
mod logging;
mod metrics;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strictmx_config::Config;

/// Exit code for a configuration that does not validate (EX_USAGE, as linkerd and others use).
const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "strictmx",
    version,
    about = "A policy-enforcing outbound SMTP relay"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay: accept mail from submitters, deliver it to each recipient domain.
    Serve {
        /// Configuration file; without it the embedded defaults apply.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and print the effective configuration.
    CheckConfig {
        file: PathBuf,
        /// Only validate; print nothing when the file is valid.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Inspect and act on the queue of the running server.
    Queue {
        /// The server's configuration file (to find its control socket).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: control::QueueAction,
    },
    /// Read a password on standard input and print its argon2id hash for `[[auth.user]]`.
    HashPassword,
}

fn load(config: Option<&PathBuf>) -> Result<Config, ExitCode> {
    match config {
        None => Ok(Config::embedded_default()),
        Some(path) => Config::load(path).map_err(|errors| {
            eprintln!("{errors}");
            ExitCode::from(EXIT_CONFIG)
        }),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => match load(config.as_ref()) {
            Ok(config) => serve::run(config),
            Err(code) => code,
        },
        Command::CheckConfig { file, quiet } => match Config::load(&file) {
            Ok(config) => {
                if !quiet {
                    print!("{}", config.render());
                }
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Queue {
            config,
            json,
            action,
        } => match load(config.as_ref()) {
            Ok(config) => control::run_client(&config.control_socket, action, json),
            Err(code) => code,
        },
        Command::HashPassword => hash_password(),
    }
}

fn hash_password() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("cannot read the password from standard input: {e}");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("the password is empty");
        return ExitCode::from(EXIT_CONFIG);
    }
    println!("{}", strictmx_inbound::hash_password(password));
    ExitCode::SUCCESS
}
