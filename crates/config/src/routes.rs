//! `[[route]]` → `strictmx_delivery::transport::Route`: which recipient domains go to a fixed
//! next hop (exact, `*.suffix` or the catch-all `*`), where that next hop is, and the login a
//! smarthost wants (`auth_user` with the password read from `auth_password_file`).
//!
//! Matching routes to domains and sending AUTH are `strictmx-delivery`'s; that a route with a
//! login needs a verified next hop is `strictmx-policy`'s. The password is never taken inline
//! from the TOML, so the config file can be shared, printed and committed without it.

use std::fmt::Write;
use std::path::Path;

use strictmx_delivery::transport::{Route, RouteCredentials};

use crate::error::Source;
use crate::files::warn_if_world_readable;
use crate::raw::RawRoute;
use crate::validate::path_in;
use crate::values;

pub(crate) fn build(raw: &[RawRoute], src: &mut Source<'_>, base: Option<&Path>) -> Vec<Route> {
    let mut routes: Vec<Route> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = |name: &str| format!("route[{i}].{name}");
        let domain = values::route_domain(r.domain.get_ref())
            .map_err(|m| src.error(r.domain.span(), key("domain"), m))
            .ok();
        let hop = values::next_hop(r.next_hop.get_ref())
            .map_err(|m| src.error(r.next_hop.span(), key("next_hop"), m))
            .ok();
        let credentials = credentials(r, i, src, base);
        let (Some(domain), Some((host, port)), Ok(credentials)) = (domain, hop, credentials) else {
            continue;
        };
        if routes.iter().any(|route| route.domain == domain) {
            src.error(
                r.domain.span(),
                key("domain"),
                format!("`{domain}` already has a route"),
            );
            continue;
        }
        routes.push(Route {
            domain,
            host,
            port,
            credentials,
        });
    }
    routes
}

/// `auth_user` and `auth_password_file` come together; the file's first line is the password.
fn credentials(
    r: &RawRoute,
    i: usize,
    src: &mut Source<'_>,
    base: Option<&Path>,
) -> Result<Option<RouteCredentials>, ()> {
    let key = |name: &str| format!("route[{i}].{name}");
    let (user, file) = match (&r.auth_user, &r.auth_password_file) {
        (None, None) => return Ok(None),
        (Some(user), Some(file)) => (user, file),
        (Some(user), None) => {
            src.error(
                user.span(),
                key("auth_password_file"),
                "auth_user needs auth_password_file: the file that holds the password",
            );
            return Err(());
        }
        (None, Some(file)) => {
            src.error(
                file.span(),
                key("auth_user"),
                "auth_password_file needs auth_user: the user name the next hop knows",
            );
            return Err(());
        }
    };
    let name = user.get_ref();
    if name.is_empty() || name.chars().any(char::is_control) {
        src.error(
            user.span(),
            key("auth_user"),
            "a user name must not be empty or hold control characters",
        );
        return Err(());
    }
    let path = path_in(base)(file.get_ref())
        .map_err(|m| src.error(file.span(), key("auth_password_file"), m))?;
    warn_if_world_readable(src, file.span(), &key("auth_password_file"), &path);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        src.error(
            file.span(),
            key("auth_password_file"),
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    // The first line, without its line end: `echo secret > file` works as expected.
    let password = text.lines().next().unwrap_or("");
    if password.is_empty() || password.chars().any(char::is_control) {
        src.error(
            file.span(),
            key("auth_password_file"),
            format!(
                "{} must hold the password on its first line (not empty, no control characters)",
                path.display()
            ),
        );
        return Err(());
    }
    Ok(Some(RouteCredentials {
        user: name.clone(),
        password: password.to_owned(),
        password_file: path,
    }))
}

/// The routes in effective-config form; a login shows its user and password file, never the
/// password.
pub(crate) fn render(routes: &[Route], out: &mut String) {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    for route in routes {
        let host = if route.host.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("[{}]", route.host)
        } else {
            route.host.clone()
        };
        let _ = writeln!(
            out,
            "[[route]]\ndomain = {}\nnext_hop = {}",
            q(&route.domain),
            q(&format!("{host}:{}", route.port))
        );
        if let Some(credentials) = &route.credentials {
            let _ = writeln!(
                out,
                "auth_user = {}\nauth_password_file = {}",
                q(&credentials.user),
                q(&credentials.password_file.display().to_string())
            );
        }
        out.push('\n');
    }
}
