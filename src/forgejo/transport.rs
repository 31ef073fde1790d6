//! Why a request got no answer: the cause behind a transport error, told
//! apart so that each gets its fix named, and so that what the next run
//! cannot cure (a certificate the trust store cannot verify, TLS spoken to
//! a plain-HTTP port) is configuration (78), not a temporary failure (75).

/// What kept a request from its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cause {
    /// The connect or request deadline passed.
    Timeout,
    /// The answer is larger than the client reads.
    TooLarge,
    /// Nobody listens at that address and port (or a firewall said no).
    Refused,
    /// The host name does not resolve.
    UnknownHost,
    /// The server's certificate cannot be verified: unknown issuer,
    /// expired, another name. The text says which.
    Certificate(String),
    /// What came back is not TLS: a plain-HTTP port spoken to with https.
    NotTls,
    /// Another TLS failure (no common protocol version, a refused handshake).
    Tls(String),
    /// Anything else: reset, closed, a reply lost.
    Other,
}

/// The cause of `e`.
pub(super) fn cause(e: &ureq::Error) -> Cause {
    match e {
        ureq::Error::Timeout(_) => Cause::Timeout,
        ureq::Error::BodyExceedsLimit(_) => Cause::TooLarge,
        ureq::Error::HostNotFound => Cause::UnknownHost,
        ureq::Error::Rustls(tls) => tls_cause(tls),
        ureq::Error::Tls(why) => Cause::Tls((*why).to_string()),
        ureq::Error::Pem(why) => Cause::Certificate(why.to_string()),
        ureq::Error::Io(io) => io_cause(io),
        _ => Cause::Other,
    }
}

fn io_cause(io: &std::io::Error) -> Cause {
    use std::io::ErrorKind;
    if let Some(tls) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        return tls_cause(tls);
    }
    match io.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Cause::Timeout,
        ErrorKind::ConnectionRefused => Cause::Refused,
        // getaddrinfo's failures have no kind of their own in std.
        _ if io.to_string().starts_with("failed to lookup address") => Cause::UnknownHost,
        _ => Cause::Other,
    }
}

fn tls_cause(e: &rustls::Error) -> Cause {
    match e {
        rustls::Error::InvalidCertificate(why) => Cause::Certificate(format!("{why:?}")),
        // A plain-HTTP server answers the TLS hello with "HTTP/1.1 400 ...":
        // not a TLS record at all.
        rustls::Error::InvalidMessage(_) => Cause::NotTls,
        other => Cause::Tls(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn causes_are_told_apart() {
        let io_err = |e: io::Error| cause(&ureq::Error::Io(e));
        assert_eq!(
            io_err(io::Error::from(io::ErrorKind::ConnectionRefused)),
            Cause::Refused
        );
        assert_eq!(
            io_err(io::Error::other(
                "failed to lookup address information: Name or service not known"
            )),
            Cause::UnknownHost
        );
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(
            io_err(io::Error::new(io::ErrorKind::InvalidData, unknown)),
            Cause::Certificate("UnknownIssuer".into())
        );
        let plain = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert_eq!(
            io_err(io::Error::new(io::ErrorKind::InvalidData, plain)),
            Cause::NotTls
        );
        assert_eq!(
            io_err(io::Error::from(io::ErrorKind::ConnectionReset)),
            Cause::Other
        );
        assert_eq!(cause(&ureq::Error::HostNotFound), Cause::UnknownHost);
    }
}
