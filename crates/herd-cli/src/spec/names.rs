//! Socket names for `LISTEN_FDNAMES` and `{fd:NAME}`: given with `NAME=`, or derived from the
//! address (`tcp-8080`, `udp-5353`, `unix-app.sock`).

use super::parse::{is_name_char, Address, BindSpec};
use super::ShmSpec;

/// Whether no name is given to two sockets (`--bind NAME=...`, `--shm NAME...`), so that
/// `{fd:NAME}` and `take_*("NAME")` mean one: a usage error, found before anything is bound,
/// that starts with the option of the second (placed at its key in a config file).
pub fn check(binds: &[BindSpec], shm: &[ShmSpec]) -> Result<(), String> {
    let binds = binds
        .iter()
        .filter_map(|b| Some(("--bind", b.name.as_deref()?)));
    let shm = shm.iter().map(|s| ("--shm", s.name.as_str()));
    let mut seen: Vec<&str> = Vec::new();
    for (option, name) in binds.chain(shm) {
        if seen.contains(&name) {
            return Err(format!(
                "{option}: the name '{name}' is given to more than one --bind or --shm; names \
                 must be unique"
            ));
        }
        seen.push(name);
    }
    Ok(())
}

/// The default name of a socket bound at `address`, whose real port is `port`.
pub fn default_name(address: &Address, port: Option<u16>) -> String {
    let raw = match address {
        Address::Tcp(_) | Address::Udp(_) => {
            format!("{}-{}", address.kind(), port.unwrap_or_default())
        }
        Address::UnixPath(path) => {
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("unix-{file}")
        }
        Address::UnixAbstract(name) => format!("unix-{name}"),
        Address::SystemdAll | Address::SystemdNamed(_) => "systemd".to_string(),
    };
    let mut name: String = raw
        .chars()
        .map(|c| if is_name_char(c) { c } else { '_' })
        .collect();
    name.truncate(200);
    name
}

/// Makes `candidate` unique among `taken` by appending `-2`, `-3`, ...
pub fn unique(candidate: String, taken: &[String]) -> String {
    if !taken.contains(&candidate) {
        return candidate;
    }
    (2..)
        .map(|n| format!("{candidate}-{n}"))
        .find(|name| !taken.contains(name))
        .unwrap_or(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names() {
        let spec = |t: &str| t.parse::<crate::spec::BindSpec>().unwrap().address;
        assert_eq!(default_name(&spec(":0"), Some(41000)), "tcp-41000");
        assert_eq!(default_name(&spec("udp://:53"), Some(53)), "udp-53");
        assert_eq!(
            default_name(&spec("unix:/run/my app.sock"), None),
            "unix-my_app.sock"
        );
        assert_eq!(
            default_name(&Address::UnixAbstract("herd".into()), None),
            "unix-herd"
        );
        let taken = vec!["tcp-80".to_string(), "tcp-80-2".to_string()];
        assert_eq!(unique("tcp-80".into(), &taken), "tcp-80-3");
        assert_eq!(unique("udp-80".into(), &taken), "udp-80");
    }
}
