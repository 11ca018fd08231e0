//! NBD URIs (the NBD project's `doc/uri.md`): `nbd://host[:port]/export` over TCP and
//! `nbd+unix:///export?socket=PATH` over a Unix socket; `nbds://` and `nbds+unix://` are the same
//! over TLS, with libnbd's query parameters `tls-certificates=DIR` (X.509 credentials: see
//! [`crate::tls`]) and `tls-hostname=NAME` (the name the server's certificate must carry; the
//! host by default, `localhost` over a Unix socket). `tls-psk-file=` is refused with the reason.

use std::fmt;
use std::path::PathBuf;

use crate::error::{NbdError, Result};

/// The port an `nbd://` URI without one means (IANA's for NBD).
pub const DEFAULT_PORT: u16 = 10809;

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP server.
    Tcp {
        /// Host name or address (an IPv6 address without its brackets).
        host: String,
        /// TCP port.
        port: u16,
    },
    /// A server on a Unix socket.
    Unix {
        /// The socket's path.
        socket: PathBuf,
    },
}

/// One export of one server: what an NBD URI names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdTarget {
    /// The server.
    pub endpoint: Endpoint,
    /// The export's name (empty: the server's default export).
    pub export: String,
    /// TLS settings, for `nbds://` and `nbds+unix://`.
    pub tls: Option<TargetTls>,
}

/// How an `nbds` URI asks for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTls {
    /// The credentials directory (`tls-certificates=`).
    pub certificates: PathBuf,
    /// The name the server's certificate must carry (`tls-hostname=`), when not the host.
    pub hostname: Option<String>,
}

impl NbdTarget {
    /// The name the server's certificate is checked against.
    pub fn tls_hostname(&self) -> String {
        match (&self.tls, &self.endpoint) {
            (
                Some(TargetTls {
                    hostname: Some(h), ..
                }),
                _,
            ) => h.clone(),
            (_, Endpoint::Tcp { host, .. }) => host.clone(),
            (_, Endpoint::Unix { .. }) => "localhost".to_string(),
        }
    }
}

/// The value of query parameter `key`, percent-decoded; Err for a bad escape.
fn query_value(query: Option<&str>, key: &str) -> std::result::Result<Option<String>, String> {
    let prefix = format!("{key}=");
    match query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix(prefix.as_str()))
    {
        None => Ok(None),
        Some(raw) => percent_decode(raw)
            .map(Some)
            .ok_or_else(|| format!("bad percent-escape in {key}=")),
    }
}

/// Query parameters each scheme understands; any other is refused rather than ignored.
fn check_query(query: Option<&str>, known: &[&str]) -> std::result::Result<(), String> {
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let key = pair.split_once('=').map_or(pair, |(key, _)| key);
        if key == "tls-psk-file" || key == "tls-username" {
            return Err(crate::tls::PSK_UNSUPPORTED.to_string());
        }
        if !known.contains(&key) {
            return Err(format!(
                "unknown query parameter {key:?} (this scheme takes {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    Ok(())
}

impl NbdTarget {
    /// True when `s` is meant as an NBD URI (it starts with an NBD scheme), so that a caller
    /// accepting a path or a URI knows which parser's error to report.
    pub fn looks_like_uri(s: &str) -> bool {
        [
            "nbd://",
            "nbd+unix://",
            "nbds://",
            "nbds+unix://",
            "nbd+vsock://",
        ]
        .iter()
        .any(|scheme| s.starts_with(scheme))
    }

    /// Parses `nbd://host[:port]/export` or `nbd+unix:///export?socket=PATH`.
    pub fn parse(uri: &str) -> Result<NbdTarget> {
        let bad = |reason: &str| NbdError::BadUri {
            uri: uri.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = uri
            .split_once("://")
            .ok_or_else(|| bad("no scheme (nbd:// or nbd+unix://)"))?;
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash + 1..]),
            None => (rest, ""),
        };
        let export =
            percent_decode(path).ok_or_else(|| bad("bad percent-escape in the export name"))?;
        if export.len() > crate::proto::MAX_STRING_BYTES {
            return Err(bad("export name longer than 4096 bytes"));
        }
        let tls_scheme = matches!(scheme, "nbds" | "nbds+unix");
        let (plain_scheme, known): (&str, &[&str]) = match scheme {
            "nbd" => ("nbd", &[]),
            "nbd+unix" => ("nbd+unix", &["socket"]),
            "nbds" => ("nbd", &["tls-certificates", "tls-hostname"]),
            "nbds+unix" => ("nbd+unix", &["socket", "tls-certificates", "tls-hostname"]),
            _ => {
                return Err(bad(
                    "unknown scheme (nbd://, nbd+unix://, nbds://, nbds+unix://)",
                ))
            }
        };
        check_query(query, known).map_err(|reason| bad(&reason))?;
        let endpoint = if plain_scheme == "nbd" {
            parse_authority(authority).map_err(bad)?
        } else {
            if !authority.is_empty() {
                return Err(bad(&format!(
                    "{scheme}:// takes no host: {scheme}:///export?socket=PATH"
                )));
            }
            let socket = query_value(query, "socket")
                .map_err(|reason| bad(&reason))?
                .ok_or_else(|| bad(&format!("{scheme}:// needs ?socket=PATH")))?;
            if socket.is_empty() {
                return Err(bad("empty socket path"));
            }
            Endpoint::Unix {
                socket: PathBuf::from(socket),
            }
        };
        let tls = if tls_scheme {
            let certificates = query_value(query, "tls-certificates")
                .map_err(|reason| bad(&reason))?
                .ok_or_else(|| {
                    bad(
                        "nbds needs ?tls-certificates=DIR (X.509 credentials: ca-cert.pem, \
                         client-cert.pem, client-key.pem)",
                    )
                })?;
            let hostname = query_value(query, "tls-hostname").map_err(|reason| bad(&reason))?;
            Some(TargetTls {
                certificates: PathBuf::from(certificates),
                hostname,
            })
        } else {
            None
        };
        Ok(NbdTarget {
            endpoint,
            export,
            tls,
        })
    }
}

fn parse_authority(authority: &str) -> std::result::Result<Endpoint, &'static str> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed [ in the host")?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or("junk after ]")?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("no host: nbd://host[:port]/export");
    }
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(port) => port
            .parse()
            .map_err(|_| "port is not a number from 0 to 65535")?,
    };
    Ok(Endpoint::Tcp {
        host: host.to_string(),
        port,
    })
}

/// `%XX` escapes decoded; None for a malformed escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl fmt::Display for NbdTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let export = percent_encode(&self.export);
        let s = if self.tls.is_some() { "s" } else { "" };
        let mut query = Vec::new();
        match &self.endpoint {
            Endpoint::Tcp { host, port } if host.contains(':') => {
                write!(f, "nbd{s}://[{host}]:{port}/{export}")?
            }
            Endpoint::Tcp { host, port } => write!(f, "nbd{s}://{host}:{port}/{export}")?,
            Endpoint::Unix { socket } => {
                write!(f, "nbd{s}+unix:///{export}")?;
                query.push(format!(
                    "socket={}",
                    percent_encode(&socket.to_string_lossy())
                ));
            }
        }
        if let Some(tls) = &self.tls {
            let dir = percent_encode(&tls.certificates.to_string_lossy());
            query.push(format!("tls-certificates={dir}"));
            if let Some(hostname) = &tls.hostname {
                query.push(format!("tls-hostname={}", percent_encode(hostname)));
            }
        }
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16, export: &str) -> NbdTarget {
        NbdTarget {
            endpoint: Endpoint::Tcp {
                host: host.into(),
                port,
            },
            export: export.into(),
            tls: None,
        }
    }

    #[test]
    fn parses_the_standard_forms() {
        assert_eq!(
            NbdTarget::parse("nbd://h/e").unwrap(),
            tcp("h", DEFAULT_PORT, "e")
        );
        assert_eq!(NbdTarget::parse("nbd://h:99/e").unwrap(), tcp("h", 99, "e"));
        assert_eq!(NbdTarget::parse("nbd://h:99").unwrap(), tcp("h", 99, ""));
        assert_eq!(
            NbdTarget::parse("nbd://[::1]:7/a%20b").unwrap(),
            tcp("::1", 7, "a b")
        );
        assert_eq!(
            NbdTarget::parse("nbd://h/a/b").unwrap(),
            tcp("h", DEFAULT_PORT, "a/b")
        );
        let unix = NbdTarget::parse("nbd+unix:///disk?socket=/tmp/s.sock").unwrap();
        assert_eq!(
            unix,
            NbdTarget {
                endpoint: Endpoint::Unix {
                    socket: "/tmp/s.sock".into()
                },
                export: "disk".into(),
                tls: None,
            }
        );
        let tls_unix =
            NbdTarget::parse("nbds+unix:///d?socket=/s&tls-certificates=/etc/pki/nbd").unwrap();
        assert_eq!(tls_unix.tls_hostname(), "localhost");
        let tls_tcp =
            NbdTarget::parse("nbds://h:9/d?tls-certificates=/c&tls-hostname=srv.example").unwrap();
        assert_eq!(
            tls_tcp.tls,
            Some(TargetTls {
                certificates: "/c".into(),
                hostname: Some("srv.example".into())
            })
        );
        assert_eq!(tls_tcp.tls_hostname(), "srv.example");
        for t in [
            tcp("h", 1, "x y"),
            tcp("::1", 2, ""),
            unix,
            tls_unix,
            tls_tcp,
        ] {
            assert_eq!(NbdTarget::parse(&t.to_string()).unwrap(), t);
        }
    }

    #[test]
    fn refuses_what_it_cannot_speak() {
        for bad in [
            "disk.img",
            "nbd://",
            "nbd://:80/x",
            "nbd://h:port/x",
            "nbd://h:99999/x",
            "nbd://h/x?socket=/s",
            "nbd+unix:///x",
            "nbd+unix://h/x?socket=/s",
            "nbds://h/x",
            "nbds://h/x?tls-psk-file=/k",
            "nbds://h/x?tls-certificates=/c&tls-verify-peer=false",
            "nbds+unix:///x?tls-certificates=/c",
            "nbd://h/%zz",
            "http://h/x",
        ] {
            assert!(
                matches!(NbdTarget::parse(bad), Err(NbdError::BadUri { .. })),
                "{bad}"
            );
        }
        assert!(NbdTarget::looks_like_uri("nbd://h/x"));
        assert!(!NbdTarget::looks_like_uri("./nbd.img"));
    }
}
