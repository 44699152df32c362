//! `herd run`'s HTTP endpoints, the same on every platform: `--metrics` and `--health` bound
//! (or handed over by a re-exec), and `--ready-min` checked against the pool.

use std::net::{IpAddr, SocketAddr, TcpListener, ToSocketAddrs};

use crate::cli::{RunArgs, Workers};
use crate::exit::Failure;
use crate::spec::{self, Address, BindSpec, Host, SocketKind};
use crate::supervisor::Supervisor;

/// `--ready-min`, checked: at most the pool's maximum (`--workers N`, or `default_workers`
/// without it) and, under `MIN..MAX`, at most MIN (autoscaling may keep the pool at MIN, where
/// a higher `--ready-min` would keep traffic, and so the load that scales up, away for good);
/// 1 unless given (0 with a pool of 0).
pub fn ready_min(args: &RunArgs, default_workers: usize) -> Result<usize, Failure> {
    let (max, auto_min) = match args.workers {
        Some(Workers::Fixed(n)) => (n, None),
        Some(Workers::Auto(min, max)) => (max, Some(min)),
        None => (default_workers, None),
    };
    let Some(given) = args.ready_min else {
        return Ok(max.min(1));
    };
    let given = given as usize;
    if given > max {
        return Err(Failure::Usage(format!(
            "--ready-min {given}: the pool has at most {max} workers, so /readyz could never \
             answer 200; give at most {max}, or more --workers"
        )));
    }
    if let Some(min) = auto_min.filter(|&min| given > min) {
        return Err(Failure::Usage(format!(
            "--ready-min {given}: autoscaling may keep the pool at {min} workers (--workers \
             {min}..{max}), where /readyz would answer 503 and no traffic would come to scale \
             it up; give at most {min}, or a higher MIN"
        )));
    }
    Ok(given)
}

/// Serves `--metrics` and `--health` (bound now unless a re-exec handed them over: `metrics`,
/// `health`) and sets `--ready-min` (see [`ready_min`]) and `--drain-delay`.
pub fn serve(
    args: &RunArgs,
    supervisor: &mut Supervisor,
    default_workers: usize,
    (metrics, health): (Option<TcpListener>, Option<TcpListener>),
) -> Result<(), Failure> {
    let ready_min = ready_min(args, default_workers)?;
    let takeover = args.takeover.is_some();
    // What this herd holds already, so that an address in use by herd itself is said so
    // rather than "stop the other server".
    let mut own: Vec<(String, SocketAddr)> = supervisor
        .listeners()
        .iter()
        .filter(|l| l.kind == SocketKind::Tcp)
        .filter_map(|l| {
            let addr = l.address.parse().ok()?;
            Some((format!("its socket '{}' (--bind)", l.name), addr))
        })
        .collect();
    let metrics = match (metrics, &args.metrics) {
        (Some(listener), _) => Some(listener),
        (None, Some(spec)) => Some(bind(spec, "--metrics", "metrics", takeover, &own)?),
        (None, None) => None,
    };
    if let Some(addr) = metrics.as_ref().and_then(|m| m.local_addr().ok()) {
        own.push(("--metrics".to_string(), addr));
    }
    let health = match (health, &args.health) {
        (Some(listener), _) => Some(listener),
        (None, Some(spec)) => Some(bind(spec, "--health", "health", takeover, &own)?),
        (None, None) => None,
    };
    if let Some(listener) = metrics {
        supervisor.set_metrics(listener);
    }
    if let Some(listener) = health {
        supervisor.set_health(listener);
    }
    supervisor.set_readiness(ready_min, args.drain_delay);
    Ok(())
}

/// Binds `spec` for `option`, to serve `what`; where it serves is logged once it does
/// ([`http::start`](crate::supervisor::http::start)). An address in use is said with the advice
/// of its error alone, and in a `takeover` with why: the old herd still serves its own. One
/// that herd itself holds (`own`: what, and where) is a usage error that names it.
fn bind(
    spec: &BindSpec,
    option: &str,
    what: &str,
    takeover: bool,
    own: &[(String, SocketAddr)],
) -> Result<TcpListener, Failure> {
    spec::bind_tcp(spec).map_err(|e| {
        let why = format!("{e:#}");
        if why.contains("already in use") {
            if let Some((holder, addr)) = held_by(spec, own) {
                return served_already(option, spec, holder, *addr);
            }
        }
        let advice = match (why.contains("already in use"), takeover) {
            (true, true) => format!(
                "; a takeover binds {option} anew while the old herd still serves its own: \
                 give this herd another port (or :0), or use 'herd upgrade' or 'herd reexec', \
                 which keep it"
            ),
            (true, false) => String::new(),
            (false, _) => "; choose another address".to_string(),
        };
        Failure::Runtime(anyhow::anyhow!(
            "cannot serve {what} on {} ({option}): {why}{advice}",
            spec.text
        ))
    })
}

/// The usage error of `option` (`spec`) at `addr`, which this herd serves already with
/// `holder`.
fn served_already(option: &str, spec: &BindSpec, holder: &str, addr: SocketAddr) -> Failure {
    let fix = match holder {
        "--metrics" => format!(
            "--metrics serves /healthz and /readyz too: drop {option}, or give it a port of \
             its own"
        ),
        _ => format!("give {option} a port of its own"),
    };
    Failure::Usage(format!(
        "{option} '{}': this herd serves {addr} already, with {holder}; {fix}",
        spec.text
    ))
}

/// Refuses, before anything is bound, `--metrics` or `--health` at an address this herd would
/// serve already (a `--bind`'s, or `--metrics`'s for `--health`), as far as the addresses
/// show it: those written as IP addresses (or every interface's); one a host name gives is
/// found when it is bound (no name is looked up here).
pub fn check_addresses(args: &RunArgs) -> Result<(), Failure> {
    let mut own: Vec<(String, Bound)> = (args.binds.iter())
        .filter_map(|b| {
            let bound = literal(b)?;
            let port = Some(bound.addr.port());
            let name = (b.name.clone()).unwrap_or_else(|| spec::default_name(&b.address, port));
            Some((format!("its socket '{name}' (--bind)"), bound))
        })
        .collect();
    for (option, spec) in [("--metrics", &args.metrics), ("--health", &args.health)] {
        let Some(bound) = spec.as_ref().and_then(|spec| Some((spec, literal(spec)?))) else {
            continue;
        };
        let (spec, bound) = bound;
        if let Some((holder, held)) = own.iter().find(|(_, held)| clash(*held, bound)) {
            return Err(served_already(option, spec, holder, held.addr));
        }
        own.push((option.to_string(), bound));
    }
    Ok(())
}

/// Where a spec binds, as the kernel tells binds apart: the address, and whether an IPv6 one
/// takes IPv6 alone (`v6only`; every interface's, `Host::Any`, is dual-stack `[::]`).
#[derive(Clone, Copy, Debug)]
struct Bound {
    addr: SocketAddr,
    v6only: bool,
}

/// Where `spec` binds, if it is a TCP address written as an IP address or every interface's,
/// with a port of its own (not 0).
fn literal(spec: &BindSpec) -> Option<Bound> {
    let Address::Tcp(hp) = &spec.address else {
        return None;
    };
    let ip = match &hp.host {
        Host::Any => IpAddr::from([0u8; 16]),
        Host::Ip(ip) => *ip,
        Host::Name(_) => return None,
    };
    let addr = SocketAddr::new(ip, hp.port);
    (hp.port != 0).then_some(Bound {
        addr,
        v6only: spec.options.v6only,
    })
}

/// Whether `b` cannot be bound while `a` is (Linux's rule): the same port, and in one family
/// the same address or either one every interface's; across families, only a dual-stack
/// `[::]` (not `v6only`) takes IPv4's too. An IPv4-mapped IPv6 address counts as IPv4.
fn clash(a: Bound, b: Bound) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if a.addr.port() != b.addr.port() {
        return false;
    }
    let dual = |bound: Bound, ip: IpAddr| ip.is_unspecified() && !bound.v6only;
    match (canonical(a.addr.ip()), canonical(b.addr.ip())) {
        (x @ IpAddr::V4(_), y @ IpAddr::V4(_)) | (x @ IpAddr::V6(_), y @ IpAddr::V6(_)) => {
            x == y || x.is_unspecified() || y.is_unspecified()
        }
        (x @ IpAddr::V6(_), IpAddr::V4(_)) => dual(a, x),
        (IpAddr::V4(_), y @ IpAddr::V6(_)) => dual(b, y),
    }
}

/// The first of `own` whose address `spec`'s would take (the same port; the same address, or
/// either of them every interface's), if any.
fn held_by<'a>(
    spec: &BindSpec,
    own: &'a [(String, SocketAddr)],
) -> Option<&'a (String, SocketAddr)> {
    let Address::Tcp(hp) = &spec.address else {
        return None;
    };
    if hp.port == 0 {
        return None;
    }
    let ips: Vec<IpAddr> = match &hp.host {
        Host::Any => vec![IpAddr::from([0u8; 16])],
        Host::Ip(ip) => vec![*ip],
        Host::Name(name) => (name.as_str(), hp.port)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .unwrap_or_default(),
    };
    own.iter().find(|(_, addr)| {
        addr.port() == hp.port
            && ips
                .iter()
                .any(|ip| *ip == addr.ip() || ip.is_unspecified() || addr.ip().is_unspecified())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn checked(options: &[&str]) -> Result<(), String> {
        let argv = ["herd", "run"].iter().chain(options);
        let cli = crate::cli::Cli::try_parse_from(argv.chain(&["--", "true"])).unwrap();
        let crate::cli::Command::Run(args) = cli.command else {
            panic!("not a run");
        };
        check_addresses(&args).map_err(|failure| format!("{failure:?}"))
    }

    /// As Linux tells binds apart: an IPv4 wildcard leaves IPv6 addresses free, and a
    /// `v6only` `[::]` IPv4's; every interface's (dual-stack) takes both.
    #[test]
    fn only_addresses_the_kernel_would_refuse_are_refused_before_binding() {
        for refused in [
            ["-b", "127.0.0.1:8000", "--metrics", "127.0.0.1:8000"],
            ["-b", ":8000", "--metrics", "127.0.0.1:8000"],
            ["-b", "0.0.0.0:8000", "--metrics", "127.0.0.1:8000"],
            ["-b", "[::]:8000", "--metrics", "127.0.0.1:8000"],
            ["-b", "[::1]:8000", "--metrics", "[::]:8000"],
            [
                "-b",
                "127.0.0.1:8000",
                "--metrics",
                "[::ffff:127.0.0.1]:8000",
            ],
        ] {
            let e = checked(&refused).unwrap_err();
            assert!(e.contains("this herd serves"), "{refused:?}: {e}");
        }
        for allowed in [
            ["-b", "0.0.0.0:8000", "--metrics", "[::1]:8000"],
            ["-b", "[::]:8000,v6only", "--metrics", "127.0.0.1:8000"],
            ["-b", "127.0.0.1:8000", "--metrics", "127.0.0.2:8000"],
            ["-b", "127.0.0.1:8000", "--metrics", "127.0.0.1:8001"],
            ["-b", "127.0.0.1:0", "--metrics", "127.0.0.1:0"],
            ["-b", "localhost:8000", "--metrics", "localhost:8000"],
        ] {
            assert_eq!(checked(&allowed), Ok(()), "{allowed:?}");
        }
        let both = [
            "-b",
            "127.0.0.1:0",
            "--metrics",
            ":9000",
            "--health",
            "127.0.0.1:9000",
        ];
        assert!(checked(&both).unwrap_err().contains("with --metrics"));
    }

    fn ready_min_of(options: &[&str]) -> Result<usize, String> {
        let argv = ["herd", "run", "-b", "127.0.0.1:0"].iter().chain(options);
        let cli = crate::cli::Cli::try_parse_from(argv.chain(&["--", "true"])).unwrap();
        let crate::cli::Command::Run(args) = cli.command else {
            panic!("not a run");
        };
        ready_min(&args, 3).map_err(|failure| format!("{failure:?}"))
    }

    #[test]
    fn ready_min_fits_the_smallest_pool_autoscaling_may_keep() {
        assert_eq!(ready_min_of(&[]), Ok(1));
        assert_eq!(ready_min_of(&["--ready-min", "3"]), Ok(3));
        assert_eq!(ready_min_of(&["-w", "2..8", "--ready-min", "2"]), Ok(2));
        assert_eq!(ready_min_of(&["-w", "1..8"]), Ok(1));
        let refused = ready_min_of(&["-w", "1..8", "--ready-min", "2"]).unwrap_err();
        assert!(
            refused.contains("give at most 1, or a higher MIN"),
            "{refused}"
        );
        let refused = ready_min_of(&["-w", "4", "--ready-min", "5"]).unwrap_err();
        assert!(refused.contains("at most 4 workers"), "{refused}");
    }
}
