//! `strictmx sendmail`, and the binary run under the name `sendmail`: the entry point local
//! programs (cron, PHP's `mail()`, scripts) expect. It reads a message on standard input and
//! submits it over SMTP to the running server's first relay listener, so it is queued, signed
//! and delivered like any other submission. Exit codes follow sysexits(3).
//!
//! The options are the ones those programs pass: `-t`, `-i`/`-oi`, `-f`, `-F`, `-N`, `-R`, `-V`,
//! `-B`, `-C`; other `-o` and `-od`/`-oe` options and `-v` are accepted and ignored. Parsing and
//! preparing the message are pure (`parse_args`, `prepare`); only `run` does I/O.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use mail_parser::MessageParser;
use strictmx_config::Config;
use strictmx_delivery::transport::Capabilities;
use strictmx_inbound::Role;
use strictmx_protocol::{
    BodyType, DotStuffer, DsnRet, MailFrom, MailParams, Notify, RcptParams, Reply, ReplyParse,
    is_8bit, mail_command, needs_smtputf8, rcpt_command,
};

/// sysexits(3).
pub const EX_USAGE: u8 = 64;
pub const EX_DATAERR: u8 = 65;
pub const EX_NOUSER: u8 = 67;
pub const EX_UNAVAILABLE: u8 = 69;
pub const EX_IOERR: u8 = 74;
pub const EX_TEMPFAIL: u8 = 75;
pub const EX_PROTOCOL: u8 = 76;
pub const EX_CONFIG: u8 = 78;

/// How long to wait for each reply of the local server.
const REPLY_WAIT: Duration = Duration::from_secs(120);

/// What the command line asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invocation {
    /// `-t`: recipients from the To, Cc and Bcc fields (added to those on the command line).
    pub from_headers: bool,
    /// `-i`, `-oi`: a line with a single dot does not end the message.
    pub ignore_dots: bool,
    /// `-f ADDR` (or `-r`): the envelope sender.
    pub sender: Option<String>,
    /// `-F NAME`: the full name for a `From:` field this command adds.
    pub full_name: Option<String>,
    /// `-N never|success,failure,delay`: RFC 3461 NOTIFY for every recipient.
    pub notify: Option<Notify>,
    /// `-R full|hdrs`: RFC 3461 RET.
    pub ret: Option<DsnRet>,
    /// `-V ENVID`: RFC 3461 ENVID.
    pub envid: Option<String>,
    /// `-B 8BITMIME|7BIT`.
    pub body: Option<BodyType>,
    /// `-C FILE` or `--config FILE`.
    pub config: Option<PathBuf>,
    /// Addresses on the command line (each argument may hold a comma-separated list).
    pub recipients: Vec<String>,
}

/// Why the command line cannot be used (exit 64).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("option {0} needs a value")]
    MissingValue(String),
    #[error("option {0} is not supported (strictmx sendmail only submits mail)")]
    Unsupported(String),
    #[error("-N takes never, or a comma-separated list of success, failure and delay: {0:?}")]
    BadNotify(String),
    #[error("-R takes full or hdrs: {0:?}")]
    BadRet(String),
    #[error("-B takes 7BIT or 8BITMIME: {0:?}")]
    BadBody(String),
}

/// Parses sendmail's command line (without the program name).
pub fn parse_args(args: &[String]) -> Result<Invocation, UsageError> {
    let mut inv = Invocation::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            inv.recipients
                .extend(rest.by_ref().flat_map(|a| split_list(a)));
            break;
        }
        if arg == "--config" {
            inv.config = Some(value("--config", "", &mut rest)?.into());
            continue;
        }
        let Some(option) = arg.strip_prefix('-').filter(|o| !o.is_empty()) else {
            inv.recipients.extend(split_list(arg));
            continue;
        };
        let (flag, attached) = option.split_at(1);
        let name = format!("-{flag}");
        match flag {
            "t" if attached.is_empty() => inv.from_headers = true,
            "i" if attached.is_empty() => inv.ignore_dots = true,
            "v" | "m" if attached.is_empty() => {}
            "o" => match attached {
                "i" => inv.ignore_dots = true,
                // Delivery mode (-odi, -odb), error mode (-oem, -oee) and the rest: the server
                // decides those.
                "" => {
                    value(&name, attached, &mut rest)?;
                }
                _ => {}
            },
            // -bm (read mail from standard input) is what this does; other modes are not.
            "b" if attached == "m" => {}
            "b" => return Err(UsageError::Unsupported(arg.clone())),
            "f" | "r" => inv.sender = Some(value(&name, attached, &mut rest)?),
            "F" => inv.full_name = Some(value(&name, attached, &mut rest)?),
            "C" => inv.config = Some(value(&name, attached, &mut rest)?.into()),
            "V" => inv.envid = Some(value(&name, attached, &mut rest)?),
            "N" => {
                let text = value(&name, attached, &mut rest)?;
                inv.notify = Some(parse_notify(&text).ok_or(UsageError::BadNotify(text))?);
            }
            "R" => {
                let text = value(&name, attached, &mut rest)?;
                inv.ret = Some(match text.to_ascii_lowercase().as_str() {
                    "full" => DsnRet::Full,
                    "hdrs" => DsnRet::Headers,
                    _ => return Err(UsageError::BadRet(text)),
                });
            }
            "B" => {
                let text = value(&name, attached, &mut rest)?;
                inv.body = Some(match text.to_ascii_uppercase().as_str() {
                    "8BITMIME" => BodyType::EightBitMime,
                    "7BIT" => BodyType::SevenBit,
                    _ => return Err(UsageError::BadBody(text)),
                });
            }
            _ => return Err(UsageError::Unsupported(arg.clone())),
        }
    }
    Ok(inv)
}

/// An option's value: attached (`-fme@x`) or the next argument (`-f me@x`).
fn value<'a>(
    name: &str,
    attached: &str,
    rest: &mut impl Iterator<Item = &'a String>,
) -> Result<String, UsageError> {
    if !attached.is_empty() {
        return Ok(attached.to_owned());
    }
    rest.next()
        .cloned()
        .ok_or_else(|| UsageError::MissingValue(name.to_owned()))
}

fn split_list(arg: &str) -> Vec<String> {
    arg.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_notify(text: &str) -> Option<Notify> {
    let mut notify = Notify::default();
    for word in text.split(',').map(|w| w.trim().to_ascii_lowercase()) {
        match word.as_str() {
            "never" => notify.never = true,
            "success" => notify.success = true,
            "failure" => notify.failure = true,
            "delay" => notify.delay = true,
            _ => return None,
        }
    }
    let any_other = notify.success || notify.failure || notify.delay;
    (notify.never != any_other).then_some(notify)
}

/// The message as it goes to the server, and its recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub recipients: Vec<String>,
    /// CRLF line ends, `Bcc:` removed, `From:` added when missing.
    pub message: Vec<u8>,
}

/// Why the message cannot be sent (exit 65, or 64 for no recipient).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("no recipient addresses (give them as arguments, or use -t with To, Cc or Bcc fields)")]
    NoRecipients,
    #[error("the message is empty")]
    Empty,
}

/// Standard input as read: line ends made CRLF, cut at a lone `.` line unless `-i`.
pub fn normalise_input(raw: &[u8], ignore_dots: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for line in raw.split_inclusive(|b| *b == b'\n') {
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if !ignore_dots && content == b"." {
            break;
        }
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The recipients and the message to submit, from what was read (already normalised).
pub fn prepare(inv: &Invocation, input: &[u8], sender: &str) -> Result<Prepared, MessageError> {
    if input.is_empty() {
        return Err(MessageError::Empty);
    }
    let (head_len, body_start) = header_section(input);
    let head = &input[..head_len];
    let mut recipients = inv.recipients.clone();
    if inv.from_headers {
        let mut header_block = head.to_vec();
        header_block.extend_from_slice(b"\r\n");
        if let Some(parsed) = MessageParser::default().parse_headers(&header_block[..]) {
            for field in [parsed.to(), parsed.cc(), parsed.bcc()]
                .into_iter()
                .flatten()
            {
                recipients.extend(
                    field
                        .iter()
                        .filter_map(|addr| addr.address())
                        .map(str::to_owned),
                );
            }
        }
    }
    recipients.retain(|r| !r.is_empty());
    let mut seen = std::collections::HashSet::new();
    recipients.retain(|r| seen.insert(r.to_ascii_lowercase()));
    if recipients.is_empty() {
        return Err(MessageError::NoRecipients);
    }
    let fields = unfolded_fields(head);
    let has_from = fields
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("from"));
    let mut message = Vec::with_capacity(input.len() + 64);
    if !has_from {
        let from = match inv.full_name.as_deref().map(quoted_name) {
            Some(name) => format!("From: {name} <{sender}>\r\n"),
            None => format!("From: {sender}\r\n"),
        };
        message.extend_from_slice(from.as_bytes());
    }
    // RFC 5322 §3.6.3: Bcc recipients get the message, the field itself is not sent.
    for (name, raw) in &fields {
        if !name.eq_ignore_ascii_case("bcc") {
            message.extend_from_slice(raw);
        }
    }
    message.extend_from_slice(&input[body_start.min(input.len())..]);
    if body_start > input.len() {
        message.extend_from_slice(b"\r\n");
    }
    Ok(Prepared {
        recipients,
        message,
    })
}

/// (length of the header section, where the body starts after the empty line). A message
/// without an empty line is all header section.
fn header_section(input: &[u8]) -> (usize, usize) {
    if input.starts_with(b"\r\n") {
        return (0, 0);
    }
    match input.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => (at + 2, at + 2),
        None => (input.len(), input.len() + 1),
    }
}

/// The header fields with their raw lines (continuations included), by name.
fn unfolded_fields(head: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
    for line in head.split_inclusive(|b| *b == b'\n') {
        match (line.first(), fields.last_mut()) {
            (Some(b' ' | b'\t'), Some((_, raw))) => raw.extend_from_slice(line),
            _ => {
                let name = line
                    .iter()
                    .position(|b| *b == b':')
                    .map(|colon| String::from_utf8_lossy(&line[..colon]).trim().to_owned())
                    .unwrap_or_default();
                fields.push((name, line.to_vec()));
            }
        }
    }
    fields
}

/// A display name as an RFC 5322 quoted-string when it needs one.
fn quoted_name(name: &str) -> String {
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-')
    {
        return name;
    }
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The envelope sender when `-f` is not given: the login name at the server's host name.
fn default_sender(hostname: &str) -> String {
    let login = ["LOGNAME", "USER"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
        .unwrap_or_else(|| "root".to_owned());
    format!("{login}@{hostname}")
}

/// Where the running server takes mail from this host: its first relay listener, at loopback
/// when it listens on every address.
fn server_address(config: &Config) -> Option<SocketAddr> {
    let listener = config
        .inbound
        .listeners
        .iter()
        .find(|l| l.role == Role::Relay)?;
    let ip = match listener.address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Some(SocketAddr::new(ip, listener.address.port()))
}

/// `strictmx sendmail ARGS` (or `sendmail ARGS`): reads, prepares, submits.
pub fn run(args: &[String]) -> ExitCode {
    let inv = match parse_args(args) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("sendmail: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let location = crate::location::Location::of_process(inv.config.as_deref());
    let config = match location.load() {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("sendmail: {errors}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let limit = config.inbound.limits.max_message_size;
    let mut raw = Vec::new();
    let read = std::io::stdin()
        .lock()
        .take(limit.saturating_add(1))
        .read_to_end(&mut raw);
    if let Err(e) = read {
        eprintln!("sendmail: cannot read the message: {e}");
        return ExitCode::from(EX_IOERR);
    }
    if u64::try_from(raw.len()).unwrap_or(u64::MAX) > limit {
        eprintln!("sendmail: the message is larger than the server's limit of {limit} octets");
        return ExitCode::from(EX_DATAERR);
    }
    let sender = inv
        .sender
        .clone()
        .unwrap_or_else(|| default_sender(&config.hostname));
    let input = normalise_input(&raw, inv.ignore_dots);
    let prepared = match prepare(&inv, &input, &sender) {
        Ok(prepared) => prepared,
        Err(e @ MessageError::NoRecipients) => {
            eprintln!("sendmail: {e}");
            return ExitCode::from(EX_USAGE);
        }
        Err(e) => {
            eprintln!("sendmail: {e}");
            return ExitCode::from(EX_DATAERR);
        }
    };
    let Some(server) = server_address(&config) else {
        eprintln!("sendmail: the configuration has no relay listener to submit to");
        return ExitCode::from(EX_CONFIG);
    };
    match submit(server, &config.hostname, &inv, &sender, &prepared) {
        Ok(refused) if refused.is_empty() => ExitCode::SUCCESS,
        Ok(refused) => {
            for (address, reply) in refused {
                eprintln!("sendmail: <{address}> refused: {reply}");
            }
            ExitCode::from(EX_NOUSER)
        }
        Err((code, why)) => {
            eprintln!("sendmail: {why}");
            ExitCode::from(code)
        }
    }
}

/// One SMTP transaction with the local server. Ok: the message was accepted for some
/// recipients, with the refused ones and their replies.
fn submit(
    server: SocketAddr,
    hostname: &str,
    inv: &Invocation,
    sender: &str,
    prepared: &Prepared,
) -> Result<Vec<(String, String)>, (u8, String)> {
    let stream = TcpStream::connect_timeout(&server, Duration::from_secs(10)).map_err(|e| {
        (
            EX_TEMPFAIL,
            format!("cannot reach the strictmx server at {server} (is it running?): {e}"),
        )
    })?;
    let mut smtp = Smtp::new(stream).map_err(io_failure)?;
    expect(&smtp.read()?, 220, "greeting")?;
    let ehlo = smtp.command(&format!("EHLO {hostname}"))?;
    expect(&ehlo, 250, "EHLO")?;
    let caps = Capabilities::from_ehlo(&ehlo);
    let params = MailParams {
        body: inv.body.unwrap_or(BodyType::SevenBit),
        ret: inv.ret,
        envid: inv.envid.clone(),
        ..MailParams::default()
    };
    let rcpt_params = RcptParams {
        notify: inv.notify,
        orcpt: None,
    };
    let line = mail_command(
        &caps.extensions(),
        &MailFrom {
            reverse_path: sender,
            params: &params,
            content_len: prepared.message.len(),
            eight_bit: is_8bit(&prepared.message),
            smtputf8: needs_smtputf8(
                std::iter::once(sender).chain(prepared.recipients.iter().map(String::as_str)),
            ),
        },
    )
    .map_err(|e| {
        (
            EX_DATAERR,
            format!("the sender <{sender}> cannot be sent: {e}"),
        )
    })?;
    expect(&smtp.command(&line)?, 250, "MAIL FROM")?;
    let mut refused = Vec::new();
    for address in &prepared.recipients {
        let line = rcpt_command(&caps.extensions(), address, &rcpt_params)
            .map_err(|e| (EX_DATAERR, format!("<{address}> cannot be sent: {e}")))?;
        let reply = smtp.command(&line)?;
        if reply.code != 250 && reply.code != 251 {
            if reply.is_transient() {
                return Err((EX_TEMPFAIL, format!("<{address}>: {}", one_line(&reply))));
            }
            refused.push((address.clone(), one_line(&reply)));
        }
    }
    if refused.len() == prepared.recipients.len() {
        smtp.quit();
        return Ok(refused);
    }
    expect(&smtp.command("DATA")?, 354, "DATA")?;
    let mut stuffed = Vec::with_capacity(prepared.message.len() + 64);
    let mut stuffer = DotStuffer::default();
    stuffer.push(&prepared.message, &mut stuffed);
    stuffer.finish(&mut stuffed);
    stuffed.extend_from_slice(b".\r\n");
    smtp.send(&stuffed)?;
    expect(&smtp.read()?, 250, "the end of the message")?;
    smtp.quit();
    Ok(refused)
}

fn one_line(reply: &Reply) -> String {
    crate::terminal::escape(reply.to_string().trim_end()).replace("\\r\\n", " / ")
}

/// The reply must have `code`; otherwise the exit code its class calls for.
fn expect(reply: &Reply, code: u16, what: &str) -> Result<(), (u8, String)> {
    if reply.code == code {
        return Ok(());
    }
    let exit = if reply.is_transient() {
        EX_TEMPFAIL
    } else if reply.is_permanent() {
        EX_UNAVAILABLE
    } else {
        EX_PROTOCOL
    };
    Err((
        exit,
        format!("the server refused {what}: {}", one_line(reply)),
    ))
}

fn io_failure(e: std::io::Error) -> (u8, String) {
    (EX_TEMPFAIL, format!("talking to the server failed: {e}"))
}

/// A blocking SMTP client connection with bounded reply reading.
struct Smtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Smtp {
    fn new(stream: TcpStream) -> std::io::Result<Smtp> {
        stream.set_read_timeout(Some(REPLY_WAIT))?;
        stream.set_write_timeout(Some(REPLY_WAIT))?;
        Ok(Smtp {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        })
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), (u8, String)> {
        self.writer.write_all(bytes).map_err(io_failure)
    }

    fn command(&mut self, line: &str) -> Result<Reply, (u8, String)> {
        self.send(format!("{line}\r\n").as_bytes())?;
        self.read()
    }

    fn read(&mut self) -> Result<Reply, (u8, String)> {
        let mut buffer = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = (&mut self.reader)
                .take(strictmx_protocol::MAX_LINE as u64 * 4)
                .read_until(b'\n', &mut line)
                .map_err(io_failure)?;
            if n == 0 {
                return Err((EX_TEMPFAIL, "the server closed the connection".to_owned()));
            }
            buffer.extend_from_slice(&line);
            match Reply::parse(&buffer) {
                Ok(ReplyParse::Complete { reply, .. }) => return Ok(reply),
                Ok(ReplyParse::Incomplete) if buffer.len() < 64 * 1024 => {}
                _ => return Err((EX_PROTOCOL, "the server's reply is malformed".to_owned())),
            }
        }
    }

    fn quit(mut self) {
        let _ = self.command("QUIT");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn the_options_cron_php_and_scripts_pass_are_understood() {
        let php = parse_args(&args("-t -i")).expect("php");
        assert!(php.from_headers && php.ignore_dots && php.recipients.is_empty());
        let cron = parse_args(&args("-FCronDaemon -i -B8BITMIME -oem root")).expect("cron");
        assert_eq!(cron.full_name.as_deref(), Some("CronDaemon"));
        assert_eq!(cron.body, Some(BodyType::EightBitMime));
        assert_eq!(cron.recipients, ["root"]);
        let detailed = parse_args(&args(
            "-f app@x.example -oi -odi -N failure,delay -R hdrs -V env1 -C /etc/s.toml -v a@y.example,b@y.example -- -c@y.example",
        ))
        .expect("detailed");
        assert_eq!(detailed.sender.as_deref(), Some("app@x.example"));
        assert!(detailed.ignore_dots);
        let notify = detailed.notify.expect("notify");
        assert!(notify.failure && notify.delay && !notify.success && !notify.never);
        assert_eq!(detailed.ret, Some(DsnRet::Headers));
        assert_eq!(detailed.envid.as_deref(), Some("env1"));
        assert_eq!(detailed.config, Some(PathBuf::from("/etc/s.toml")));
        assert_eq!(
            detailed.recipients,
            ["a@y.example", "b@y.example", "-c@y.example"]
        );
        assert_eq!(
            parse_args(&args("-rme@x")).expect("r").sender.as_deref(),
            Some("me@x")
        );
        assert_eq!(
            parse_args(&args("-bm a@x")).expect("bm").recipients,
            ["a@x"]
        );
    }

    #[test]
    fn options_it_cannot_honour_are_usage_errors() {
        let rows = [
            ("-bp", UsageError::Unsupported("-bp".into())),
            ("-bs", UsageError::Unsupported("-bs".into())),
            ("-q", UsageError::Unsupported("-q".into())),
            ("-f", UsageError::MissingValue("-f".into())),
            ("-N sometimes", UsageError::BadNotify("sometimes".into())),
            (
                "-N never,success",
                UsageError::BadNotify("never,success".into()),
            ),
            ("-R body", UsageError::BadRet("body".into())),
            ("-B 9BIT", UsageError::BadBody("9BIT".into())),
        ];
        for (line, expected) in rows {
            assert_eq!(parse_args(&args(line)), Err(expected), "{line}");
        }
    }

    #[test]
    fn a_lone_dot_ends_the_input_unless_dash_i() {
        let raw = b"Subject: x\n\nline\n.\nafter\n";
        assert_eq!(normalise_input(raw, false), b"Subject: x\r\n\r\nline\r\n");
        assert_eq!(
            normalise_input(raw, true),
            b"Subject: x\r\n\r\nline\r\n.\r\nafter\r\n"
        );
        // CRLF input stays as it is; a last line without a line end gets one.
        assert_eq!(normalise_input(b"a\r\nb", true), b"a\r\nb\r\n");
    }

    #[test]
    fn dash_t_takes_to_cc_and_bcc_and_the_bcc_field_is_not_sent() {
        let inv = Invocation {
            from_headers: true,
            recipients: vec!["extra@z.example".into()],
            ..Invocation::default()
        };
        let input = normalise_input(
            b"To: Ann <ann@x.example>, bob@x.example\nCc: \"Carl, C.\" <carl@y.example>\nBcc: dora@y.example,\n  eve@y.example\nSubject: hi\n\nbody\n",
            true,
        );
        let prepared = prepare(&inv, &input, "app@src.example").expect("prepared");
        assert_eq!(
            prepared.recipients,
            [
                "extra@z.example",
                "ann@x.example",
                "bob@x.example",
                "carl@y.example",
                "dora@y.example",
                "eve@y.example"
            ]
        );
        let text = String::from_utf8(prepared.message).expect("text");
        assert!(!text.to_ascii_lowercase().contains("bcc"), "{text}");
        assert!(!text.contains("eve@"), "{text}");
        assert!(
            text.starts_with("From: app@src.example\r\nTo: Ann"),
            "{text}"
        );
        assert!(text.ends_with("Subject: hi\r\n\r\nbody\r\n"), "{text}");
    }

    #[test]
    fn a_from_field_is_added_only_when_missing() {
        let inv = Invocation {
            recipients: vec!["a@x.example".into()],
            full_name: Some("Cron \"Daemon\"".into()),
            ..Invocation::default()
        };
        let added = prepare(&inv, b"Subject: x\r\n\r\nhi\r\n", "root@relay.example").expect("ok");
        assert!(
            added.message.starts_with(
                b"From: \"Cron \\\"Daemon\\\"\" <root@relay.example>\r\nSubject: x\r\n"
            )
        );
        let kept = prepare(
            &inv,
            b"from: me@x.example\r\n\r\nhi\r\n",
            "root@relay.example",
        )
        .expect("ok");
        assert_eq!(kept.message, b"from: me@x.example\r\n\r\nhi\r\n");
        // A message with no header section at all gets the field and an empty line.
        let bare = prepare(&inv, b"\r\nhi\r\n", "r@x").expect("ok");
        assert!(bare.message.starts_with(b"From: \"Cron"));
        assert!(
            bare.message.ends_with(b">\r\n\r\nhi\r\n"),
            "{:?}",
            String::from_utf8_lossy(&bare.message)
        );
    }

    #[test]
    fn no_recipient_or_no_message_is_refused() {
        let inv = Invocation::default();
        assert_eq!(
            prepare(&inv, b"Subject: x\r\n\r\n", "a@b"),
            Err(MessageError::NoRecipients)
        );
        let to = Invocation {
            recipients: vec!["a@x".into()],
            ..Invocation::default()
        };
        assert_eq!(prepare(&to, b"", "a@b"), Err(MessageError::Empty));
    }
}
