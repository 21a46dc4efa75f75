//! Which `Host` the admin listener answers: the guard against DNS
//! rebinding. A page on an attacker's name that re-resolves to 127.0.0.1
//! reaches a loopback listener from the victim's browser, as the same
//! origin, with `Host: <the attacker's name>`. A name the operator did not
//! list is therefore refused, as Vite's and webpack's dev servers do
//! (`allowedHosts`): loopback names, IP literals (an IP origin is the
//! listener itself, never a rebound name) and the names configured in
//! `admin_hosts` pass.

/// The names besides loopback and IP literals that a listener answers.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    /// Lowercase; one with a leading `.` also allows every subdomain.
    names: Vec<String>,
}

impl AllowedHosts {
    /// `names` as configured; `Err` names the first that is not a host
    /// name (optionally `.`-prefixed).
    pub fn new(names: &[String]) -> Result<Self, String> {
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let bare = n.strip_prefix('.').unwrap_or(n);
            let ok = !bare.is_empty()
                && bare.len() <= 253
                && (bare.bytes()).all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ok {
                return Err(n.clone());
            }
            out.push(n.to_ascii_lowercase());
        }
        Ok(Self { names: out })
    }

    /// Whether a request whose `Host` (or `:authority`) is `authority`
    /// may be answered.
    pub fn allows(&self, authority: &str) -> bool {
        let host = host_of(authority).trim_end_matches('.');
        if host.parse::<std::net::IpAddr>().is_ok() {
            return true;
        }
        let host = host.to_ascii_lowercase();
        if host == "localhost" || host.ends_with(".localhost") {
            return true;
        }
        self.names.iter().any(|n| match n.strip_prefix('.') {
            Some(domain) => host == domain || host.ends_with(n.as_str()),
            None => host == *n,
        })
    }
}

/// The host of an authority (`name:port`, `[v6]:port`, `name`), without
/// its port or brackets.
pub fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_ips_and_listed_names_pass_and_nothing_else() {
        let allowed =
            AllowedHosts::new(&["headgate-admin".into(), ".corp.example".into()]).unwrap();
        for yes in [
            "127.0.0.1:9090",
            "127.0.0.1",
            "[::1]:9090",
            "10.0.0.7:9090",
            "localhost:9090",
            "LOCALHOST",
            "app.localhost:9090",
            "headgate-admin:9090",
            "Headgate-Admin",
            "corp.example",
            "ops.corp.example:9090",
            "localhost.:9090",
        ] {
            assert!(allowed.allows(yes), "{yes}");
        }
        for no in [
            "rebind.evil.test:9090",
            "localhost.evil.test",
            "headgate-admin.evil.test",
            "evilcorp.example",
            "127.0.0.1.nip.io:9090",
            "",
        ] {
            assert!(!allowed.allows(no), "{no}");
        }
    }

    #[test]
    fn a_name_that_is_not_a_host_name_is_refused() {
        assert_eq!(
            AllowedHosts::new(&["ok".into(), "bad name".into()]).unwrap_err(),
            "bad name"
        );
        assert!(AllowedHosts::new(&[".".into()]).is_err());
    }
}
