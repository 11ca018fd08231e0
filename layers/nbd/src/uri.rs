//! NBD URIs (the NBD project's `doc/uri.md`): `nbd://host[:port]/export` over TCP and
//! `nbd+unix:///export?socket=PATH` over a Unix socket. TLS (`nbds`, `nbds+unix`) is refused:
//! this client does not speak it.

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
        let endpoint = match scheme {
            "nbd" => {
                if query.is_some_and(|q| !q.is_empty()) {
                    return Err(bad("nbd:// takes no query (socket= is for nbd+unix://)"));
                }
                parse_authority(authority).map_err(bad)?
            }
            "nbd+unix" => {
                if !authority.is_empty() {
                    return Err(bad(
                        "nbd+unix:// takes no host: nbd+unix:///export?socket=PATH",
                    ));
                }
                let socket = query
                    .into_iter()
                    .flat_map(|q| q.split('&'))
                    .find_map(|pair| pair.strip_prefix("socket="))
                    .ok_or_else(|| bad("nbd+unix:// needs ?socket=PATH"))?;
                let socket = percent_decode(socket)
                    .ok_or_else(|| bad("bad percent-escape in the socket path"))?;
                if socket.is_empty() {
                    return Err(bad("empty socket path"));
                }
                Endpoint::Unix {
                    socket: PathBuf::from(socket),
                }
            }
            "nbds" | "nbds+unix" => return Err(bad("TLS (nbds) is not supported")),
            _ => return Err(bad("unknown scheme (nbd:// or nbd+unix://)")),
        };
        Ok(NbdTarget { endpoint, export })
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
        match &self.endpoint {
            Endpoint::Tcp { host, port } if host.contains(':') => {
                write!(f, "nbd://[{host}]:{port}/{export}")
            }
            Endpoint::Tcp { host, port } => write!(f, "nbd://{host}:{port}/{export}"),
            Endpoint::Unix { socket } => {
                let socket = percent_encode(&socket.to_string_lossy());
                write!(f, "nbd+unix:///{export}?socket={socket}")
            }
        }
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
            }
        );
        for t in [tcp("h", 1, "x y"), tcp("::1", 2, ""), unix] {
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
