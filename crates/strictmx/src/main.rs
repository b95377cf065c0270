//! The strictmx binary: parses the command line and hands each command to its module.
//!
//! Kept thin: which file is the configuration is `location`'s choice (`--config`,
//! `STRICTMX_CONFIG`, /etc/strictmx/strictmx.toml, or the embedded defaults), reading it is
//! `strictmx-config`'s job, serving is `serve`, the queue commands and `reload` talk to the
//! running server through `control`, `explain` and `audit` ask the server or work in-process.
//! Exit codes: 0 ok, 1 runtime failure, 64 bad configuration or usage; `explain` also 75 for
//! DEFER and 69 for BOUNCE.

mod audit_cmd;
mod bulk;
mod control;
mod drain;
mod explain;
mod json_log;
mod location;
mod log_output;
mod logging;
mod metrics;
mod policy_cmd;
mod reload;
mod sd_notify;
mod selector;
mod sendmail;
mod serve;
mod shadow_cmd;
mod terminal;
mod tlsrpt_cmd;
mod webhook;
mod xfer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strictmx_config::Config;

use crate::location::Location;

/// Exit code for a configuration that does not validate (EX_USAGE, as linkerd and others use).
pub(crate) const EXIT_CONFIG: u8 = 64;

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
        /// Configuration file; default: $STRICTMX_CONFIG, else /etc/strictmx/strictmx.toml if
        /// it exists, else the embedded defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Retire this node: accept no new mail (no listener opens; the control socket does),
        /// deliver what can be delivered now, and exit with 0 once the queue is empty.
        #[arg(long)]
        drain: bool,
        /// With --drain: transfer what delivery cannot take now to this strictmx node
        /// (HOST:PORT), which must list this node in its trusted networks.
        #[arg(long, value_name = "HOST:PORT", requires = "drain")]
        to: Option<String>,
    },
    /// Retire the running server: it closes its listeners, delivers what it can now, transfers
    /// the rest with --to, and exits once its queue is empty (like `serve --drain`).
    Drain {
        /// The server's configuration file (to find its control socket).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Transfer what delivery cannot take now to this strictmx node (HOST:PORT).
        #[arg(long, value_name = "HOST:PORT")]
        to: Option<String>,
    },
    /// Validate a configuration file and print the effective configuration.
    CheckConfig {
        /// The file (the same as --config).
        file: Option<PathBuf>,
        /// Configuration file; default: $STRICTMX_CONFIG, else /etc/strictmx/strictmx.toml if
        /// it exists, else the embedded defaults.
        #[arg(long, short, conflicts_with = "file")]
        config: Option<PathBuf>,
        /// Only validate; print nothing but warnings when the file is valid.
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
    /// Look a destination up now and show the plan a message to it would get, and why.
    Explain {
        /// The recipient domain.
        domain: String,
        /// The envelope sender (rules can match on it); default: the null sender.
        #[arg(long)]
        from: Option<String>,
        /// Plan as for a message submitted with REQUIRETLS (RFC 8689).
        #[arg(long)]
        requiretls: bool,
        /// Plan as for a message with this TLS floor: encrypted, verified or dane (an HTTP
        /// submission's `require_tls`, an SMTP user's `require_tls`).
        #[arg(long)]
        require_tls: Option<strictmx_spool::TlsFloor>,
        /// Print the facts and the decision as JSON.
        #[arg(long)]
        json: bool,
        /// The configuration file (the running server's control socket is found through it).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Make the running server re-read its configuration file and apply the new policy (rules,
    /// default TLS, TLS-Required permission) without touching the queue.
    Reload {
        /// The server's configuration file (to find its control socket).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// TLSRPT (RFC 8460) reports of the running server: preview or send a day's reports.
    Tlsrpt {
        /// The server's configuration file (to find its control socket).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: tlsrpt_cmd::TlsrptAction,
    },
    /// What destinations publish: the ones whose policy weakened, from the running server.
    Policy {
        /// The server's configuration file (to find its control socket).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: policy_cmd::PolicyAction,
    },
    /// Shadow rules of the running server: what they would have stopped.
    Shadow {
        /// The server's configuration file (to find its control socket).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: shadow_cmd::ShadowAction,
    },
    /// The audit trail: what became of recipients that left the queue, and the security each
    /// got. Asks the running server, or reads the spool itself when none runs.
    Audit {
        /// The configuration file (the running server's control socket and spool are found
        /// through it).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: audit_cmd::AuditAction,
    },
    /// Read a password on standard input and print its argon2id hash for `[[auth.user]]`.
    HashPassword,
    /// Submit a message read on standard input to the running server, as sendmail(8) does for
    /// local programs (also run as `sendmail` through a symlink): `-t`, `-i`, `-f FROM`,
    /// `-F NAME`, `-N`, `-R`, `-V`, `-B`, `-C FILE` or `--config FILE`, then recipients.
    Sendmail {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Print a shell completion script: `strictmx completions bash > /etc/bash_completion.d/strictmx`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (strictmx.1 and one per command, strictmx-queue.1 ...) into DIR.
    Man {
        /// Where to write them, e.g. /usr/local/share/man/man1.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

/// The configuration the command's `--config` (or the process) points at. A client command
/// without a file says so, since it then looks for the embedded defaults' control socket.
fn load(flag: Option<&PathBuf>) -> Result<Config, ExitCode> {
    let location = Location::of_process(flag.map(PathBuf::as_path));
    if location.path().is_none() {
        eprintln!("note: {location}");
    }
    location.load().map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn main() -> ExitCode {
    // Installed as a symlink named sendmail, the binary takes sendmail's command line.
    let argv: Vec<String> = std::env::args().collect();
    let called = argv.first().map(|name| {
        std::path::Path::new(name)
            .file_name()
            .unwrap_or_default()
            .to_owned()
    });
    if called.as_deref() == Some(std::ffi::OsStr::new("sendmail")) {
        return sendmail::run(&argv[1..]);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, drain, to } => {
            if let Some(to) = to.as_deref()
                && let Err(e) = xfer::check_peer(to)
            {
                eprintln!("serve --drain: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
            let location = Location::of_process(config.as_deref());
            let order = drain.then_some(drain::Order { to });
            match location.load() {
                Ok(config) => serve::run(config, &location, order),
                Err(errors) => {
                    eprintln!("{errors}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::CheckConfig {
            file,
            config,
            quiet,
        } => check_config(&Location::of_process(file.or(config).as_deref()), quiet),
        Command::Queue {
            config,
            json,
            action,
        } => match load(config.as_ref()) {
            Ok(config) => control::run_client(&config.control_socket, action, json),
            Err(code) => code,
        },
        Command::Explain {
            domain,
            from,
            requiretls,
            require_tls,
            json,
            config,
        } => match load(config.as_ref()) {
            Ok(config) => {
                let question = explain::Question {
                    domain,
                    from: from.unwrap_or_default(),
                    requiretls,
                    require_tls,
                };
                explain::run(&config, question, json)
            }
            Err(code) => code,
        },
        // The server validates the file; the client only needs to find its socket, also in a
        // file that no longer validates, so the server can refuse it and say why.
        Command::Reload { config } => {
            let location = Location::of_process(config.as_deref());
            let socket = match location.path() {
                None => {
                    eprintln!("note: {location}");
                    Ok(Config::embedded_default().control_socket)
                }
                Some(path) => Config::control_socket_of(path),
            };
            match socket {
                Ok(socket) => control::run_reload(&socket),
                Err(errors) => {
                    eprintln!("{errors}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::Tlsrpt {
            config,
            json,
            action,
        } => match load(config.as_ref()) {
            Ok(config) => control::run_tlsrpt(&config.control_socket, action, json),
            Err(code) => code,
        },
        Command::Policy {
            config,
            json,
            action,
        } => match load(config.as_ref()) {
            Ok(config) => policy_cmd::run(&config.control_socket, action, json),
            Err(code) => code,
        },
        Command::Shadow {
            config,
            json,
            action,
        } => match load(config.as_ref()) {
            Ok(config) => shadow_cmd::run(&config.control_socket, action, json),
            Err(code) => code,
        },
        Command::Audit {
            config,
            json,
            action,
        } => load(config.as_ref()).map_or_else(|code| code, |c| audit_cmd::run(&c, action, json)),
        Command::Drain { config, to } => match load(config.as_ref()) {
            Ok(config) => control::run_request(
                &config.control_socket,
                control::Request::Drain { to },
                false,
            ),
            Err(code) => code,
        },
        Command::HashPassword => hash_password(),
        Command::Sendmail { args } => sendmail::run(&args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "strictmx", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { dir } => {
            match clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), &dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cannot write the manual pages into {}: {e}", dir.display());
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Validates the configuration and prints it as in force; every problem goes to standard error
/// (exit 64), and so does the warning that no file was found.
fn check_config(location: &Location, quiet: bool) -> ExitCode {
    match location {
        Location::Embedded { .. } => eprintln!("warning: {location}"),
        Location::Environment(_) | Location::DefaultPath(_) => eprintln!("checking the {location}"),
        Location::Flag(_) => {}
    }
    match location.load() {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            if !quiet {
                print!("{}", config.render());
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(EXIT_CONFIG)
        }
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
