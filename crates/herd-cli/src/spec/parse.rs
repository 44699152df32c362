//! Parsing `--bind [NAME=]ADDRESS[,OPTION...]` into a [`BindSpec`].

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// One `--bind` argument, parsed and checked, not yet bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindSpec {
    /// The argument as the user wrote it, for messages.
    pub text: String,
    /// The name given with `NAME=`, if any.
    pub name: Option<String>,
    /// Where to bind.
    pub address: Address,
    /// Socket options.
    pub options: BindOptions,
}

/// The address part of a bind spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A TCP listener.
    Tcp(HostPort),
    /// A UDP socket.
    Udp(HostPort),
    /// A Unix stream listener at a filesystem path.
    UnixPath(PathBuf),
    /// A Unix stream listener in Linux's abstract namespace (`unix:@NAME`).
    UnixAbstract(String),
    /// Every socket systemd passed to herd itself (`systemd`).
    SystemdAll,
    /// The socket systemd passed to herd under this name (`fd:NAME`).
    SystemdNamed(String),
}

/// A host and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// The host part.
    pub host: Host,
    /// The port; 0 asks the kernel for a free one.
    pub port: u16,
    /// The IPv6 scope (interface index) of `[fe80::1%eth0]`; 0 for none.
    pub scope: u32,
}

/// The host part of an IP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// Empty host (`:PORT`): every interface, IPv6 and IPv4 where the system allows.
    Any,
    /// A literal address.
    Ip(IpAddr),
    /// A name to resolve.
    Name(String),
}

/// Options after the address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindOptions {
    /// `backlog=N`: the accept queue's length (stream sockets).
    pub backlog: Option<u32>,
    /// `v6only`: an IPv6 socket that does not accept IPv4.
    pub v6only: bool,
    /// `nodelay`: `TCP_NODELAY`, inherited by accepted connections.
    pub nodelay: bool,
    /// `nonblocking`: `O_NONBLOCK` on the shared open file description.
    pub nonblocking: bool,
    /// `mode=OCTAL`: permissions of a Unix socket file.
    pub mode: Option<u32>,
    /// `stdin`: the socket is also the worker's fd 0 (inetd's convention).
    pub stdin: bool,
}

/// Characters allowed in a socket name given on the command line.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

const FORMS: &str = "HOST:PORT, :PORT, [V6ADDR]:PORT, tcp://HOST:PORT, udp://HOST:PORT, \
                     unix:PATH, unix:@NAME, systemd or fd:NAME";
const OPTIONS: &str = "backlog=N, v6only, nodelay, nonblocking, mode=OCTAL, stdin";
/// The longest Unix socket path, in bytes (`sun_path` holds 108 including the NUL).
pub const MAX_UNIX_PATH: usize = 107;

impl FromStr for BindSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<BindSpec, String> {
        let (address, options) = match text.split_once(',') {
            Some((address, options)) => (address, Some(options)),
            None => (text, None),
        };
        let (name, address) = split_name(address)?;
        if address.is_empty() {
            return Err(format!("missing address; expected one of {FORMS}"));
        }
        let address = parse_address(address)?;
        let options = match options {
            Some(options) => parse_options(options, &address)?,
            None => BindOptions::default(),
        };
        Ok(BindSpec {
            text: text.to_string(),
            name,
            address,
            options,
        })
    }
}

fn split_name(text: &str) -> Result<(Option<String>, &str), String> {
    match text.split_once('=') {
        Some((name, rest)) if !name.is_empty() && name.chars().all(is_name_char) => {
            if name.len() > 255 {
                return Err("the socket name is longer than 255 characters".to_string());
            }
            Ok((Some(name.to_string()), rest))
        }
        Some(("", _)) => Err("empty socket name before '='".to_string()),
        // No address form has '=' before a ':', '/' or '[': this was meant as a name.
        Some((name, _)) if !name.contains([':', '/', '[']) => Err(format!(
            "invalid socket name '{name}': a name is 1 to 255 ASCII letters, digits, '.', '_' \
             or '-' (e.g. http=:8080)"
        )),
        _ => Ok((None, text)),
    }
}

fn parse_address(text: &str) -> Result<Address, String> {
    if text == "systemd" {
        return Ok(Address::SystemdAll);
    }
    if let Some(name) = text.strip_prefix("fd:") {
        herd_core::validate_name(name)?;
        return Ok(Address::SystemdNamed(name.to_string()));
    }
    if let Some(rest) = text.strip_prefix("tcp://") {
        return Ok(Address::Tcp(parse_host_port(rest)?));
    }
    if let Some(rest) = text.strip_prefix("udp://") {
        return Ok(Address::Udp(parse_host_port(rest)?));
    }
    if let Some(rest) = text.strip_prefix("unix:") {
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        if let Some(name) = rest.strip_prefix('@') {
            if !cfg!(any(target_os = "linux", target_os = "android")) {
                return Err("abstract Unix sockets (unix:@NAME) exist only on Linux".to_string());
            }
            if name.is_empty() {
                return Err("empty abstract socket name after 'unix:@'".to_string());
            }
            if name.len() + 1 > MAX_UNIX_PATH + 1 {
                return Err(format!(
                    "abstract socket name is {} bytes; the limit is {MAX_UNIX_PATH}",
                    name.len()
                ));
            }
            return Ok(Address::UnixAbstract(name.to_string()));
        }
        if rest.is_empty() {
            return Err("empty path after 'unix:'".to_string());
        }
        if rest.len() > MAX_UNIX_PATH {
            return Err(format!(
                "Unix socket path is {} bytes; the limit is {MAX_UNIX_PATH}: use a shorter path",
                rest.len()
            ));
        }
        return Ok(Address::UnixPath(PathBuf::from(rest)));
    }
    for scheme in ["tcp", "udp"] {
        if let Some(rest) = text.strip_prefix(scheme).and_then(|t| t.strip_prefix(':')) {
            if !rest.starts_with("//") && rest.contains(':') {
                return Err(format!("write {scheme}://{rest} ('{scheme}:' needs '//')"));
            }
        }
    }
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(format!(
            "unknown scheme '{scheme}://'; expected one of {FORMS}"
        ));
    }
    Ok(Address::Tcp(parse_host_port(text)?))
}

fn parse_host_port(text: &str) -> Result<HostPort, String> {
    let mut scope = 0;
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in '{text}'; write [V6ADDR]:PORT"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("missing ':PORT' after '[{v6}]'"))?;
        let (v6, zone) = match v6.split_once('%') {
            Some((v6, zone)) => (v6, Some(zone)),
            None => (v6, None),
        };
        let ip = v6
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("'{v6}' is not an IPv6 address"))?;
        scope = match zone {
            Some(zone) => parse_scope(zone, v6, port)?,
            None if is_link_local(&ip) => {
                return Err(format!(
                    "{ip} is a link-local address, which needs a scope: name its interface, \
                     e.g. [{ip}%eth0]:{port}"
                ))
            }
            None => 0,
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or_else(|| {
            if text.chars().all(|c| c.is_ascii_digit()) {
                format!("missing host; write :{text} for all interfaces or 127.0.0.1:{text}")
            } else {
                format!("missing port in '{text}'; expected one of {FORMS}")
            }
        })?;
        let host = if host.is_empty() {
            Host::Any
        } else if host.contains(':') {
            return Err(format!(
                "IPv6 addresses need brackets: write [{host}]:{port}"
            ));
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            Host::Ip(ip)
        } else if host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            Host::Name(host.to_string())
        } else {
            return Err(format!("'{host}' is not a valid host name or IP address"));
        };
        (host, port)
    };
    if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("port '{port}' is not a number from 0 to 65535"));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("port {port} is out of range (0 to 65535)"))?;
    Ok(HostPort { host, port, scope })
}

/// Whether `ip` is in `fe80::/10`: the same address exists on every link, so binding it needs
/// the interface.
fn is_link_local(ip: &std::net::Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// The interface of `%ZONE` in `[V6%ZONE]:PORT`: a name (`eth0`) or an index (`2`).
fn parse_scope(zone: &str, v6: &str, port: &str) -> Result<u32, String> {
    if let Ok(index) = zone.parse::<u32>() {
        return Ok(index);
    }
    match interface_index(zone) {
        Some(index) => Ok(index),
        None => Err(format!(
            "'{zone}' in [{v6}%{zone}]:{port} is not a network interface of this machine; \
             name one that 'ip link' lists, or give its index"
        )),
    }
}

/// The index of the network interface `name`, if this machine has one by that name.
#[cfg(unix)]
fn interface_index(name: &str) -> Option<u32> {
    herd_sys::socket::interface_index(name).ok().flatten()
}

/// The index of the network interface `name`, if this machine has one by that name.
#[cfg(windows)]
fn interface_index(name: &str) -> Option<u32> {
    herd_sys::wsa::interface_index(name).ok().flatten()
}

fn parse_options(text: &str, address: &Address) -> Result<BindOptions, String> {
    let mut options = BindOptions::default();
    let mut seen: Vec<&str> = Vec::new();
    for option in text.split(',') {
        let (key, value) = match option.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (option, None),
        };
        if seen.contains(&key) {
            return Err(format!("option '{key}' is given twice"));
        }
        seen.push(key);
        let flag = |value: Option<&str>| match value {
            None => Ok(true),
            Some(v) => Err(format!("option '{key}' takes no value (got '{key}={v}')")),
        };
        match key {
            "backlog" => {
                let value = need_value(key, value, "backlog=1024")?;
                let max = i32::MAX as u32;
                let digits = value.bytes().all(|b| b.is_ascii_digit());
                let n = match value.parse::<u32>() {
                    Ok(n) if (1..=max).contains(&n) => n,
                    Ok(0) => return Err(format!("backlog '{value}' is not a positive number")),
                    _ if digits && !value.is_empty() => {
                        return Err(format!(
                            "backlog '{value}' is too large: the maximum is {max}"
                        ))
                    }
                    _ => return Err(format!("backlog '{value}' is not a positive number")),
                };
                options.backlog = Some(n);
            }
            "v6only" => options.v6only = flag(value)?,
            "nodelay" => options.nodelay = flag(value)?,
            "nonblocking" => options.nonblocking = flag(value)?,
            "stdin" => options.stdin = flag(value)?,
            "mode" => {
                let value = need_value(key, value, "mode=0660")?;
                let mode = u32::from_str_radix(value, 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| {
                        format!("mode '{value}' is not an octal permission from 0 to 0777")
                    })?;
                options.mode = Some(mode);
            }
            "" => return Err("empty option (a stray ',')".to_string()),
            other => return Err(format!("unknown option '{other}'; known: {OPTIONS}")),
        }
    }
    check_options(&options, address)?;
    Ok(options)
}

fn need_value<'a>(key: &str, value: Option<&'a str>, example: &str) -> Result<&'a str, String> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(format!("option '{key}' needs a value, e.g. {example}")),
    }
}

/// Rejects options that make no sense for the address kind.
fn check_options(options: &BindOptions, address: &Address) -> Result<(), String> {
    if matches!(address, Address::SystemdAll | Address::SystemdNamed(_)) {
        return Err(
            "options do not apply to sockets passed by systemd: set them in the .socket unit"
                .to_string(),
        );
    }
    let kind = address.kind();
    let tcp = matches!(address, Address::Tcp(_));
    let ip = matches!(address, Address::Tcp(_) | Address::Udp(_));
    if options.backlog.is_some() && matches!(address, Address::Udp(_)) {
        return Err("option 'backlog' applies to stream sockets, not UDP".to_string());
    }
    if options.nodelay && !tcp {
        return Err(format!("option 'nodelay' applies to TCP, not {kind}"));
    }
    if options.v6only {
        let v6_capable = match address {
            Address::Tcp(hp) | Address::Udp(hp) => !matches!(hp.host, Host::Ip(IpAddr::V4(_))),
            _ => false,
        };
        if !ip || !v6_capable {
            return Err(
                "option 'v6only' applies to IPv6 addresses ([::]:PORT or :PORT)".to_string(),
            );
        }
        if let Address::Tcp(hp) | Address::Udp(hp) = address {
            if let Host::Ip(IpAddr::V6(v6)) = hp.host {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    // The kernel refuses the bind (EINVAL): such an address is IPv4's.
                    return Err(format!(
                        "option 'v6only' cannot apply to {v6}, an IPv4-mapped address (an IPv4 \
                         address, {v4}): drop v6only, or bind {v4} itself"
                    ));
                }
            }
        }
    }
    if options.mode.is_some() && !matches!(address, Address::UnixPath(_)) {
        return Err(format!(
            "option 'mode' applies to Unix socket paths, not {kind}"
        ));
    }
    Ok(())
}

impl Address {
    /// `tcp`, `udp` or `unix`.
    pub fn kind(&self) -> &'static str {
        match self {
            Address::Tcp(_) => "tcp",
            Address::Udp(_) => "udp",
            Address::UnixPath(_) | Address::UnixAbstract(_) => "unix",
            Address::SystemdAll | Address::SystemdNamed(_) => "inherited",
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Any => Ok(()),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests;
