//! Which [`Refusal`] a Pingora error becomes, and how it is counted. Timeouts are 504,
//! every other upstream failure 502; client-side failures get no answer when the client
//! is gone, 408 when the client was too slow and 400 when it broke the framing. Client
//! faults are never logged as errors (the access line records them).

use pingora::{Error, ErrorSource, ErrorType};

use crate::refusal::Refusal;

/// The outcome of a failed proxy attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// Answer the client with this refusal; `kind` labels upstream errors in metrics.
    Respond {
        refusal: Refusal,
        upstream_kind: Option<&'static str>,
    },
    /// The client went away or broke the protocol mid-way: nothing can be answered.
    ClientGone,
    /// The client sent something unreadable (bad framing): 400.
    BadClientRequest,
}

/// The error type of an upstream answer the gateway refuses to pass on (see
/// [`Refusal::UnfilterableAnswer`]).
pub const UNFILTERABLE: ErrorType = ErrorType::Custom("unfilterable_answer");

pub fn classify(e: &Error) -> Failure {
    use ErrorType::*;
    if e.etype() == &UNFILTERABLE {
        return Failure::Respond {
            refusal: Refusal::UnfilterableAnswer,
            upstream_kind: Some("unfilterable"),
        };
    }
    match e.esource() {
        ErrorSource::Upstream => {
            let (refusal, kind) = match e.etype() {
                ConnectTimedout => (Refusal::UpstreamTimeout, "connect_timeout"),
                TLSHandshakeTimedout => (Refusal::UpstreamTimeout, "tls_timeout"),
                ReadTimedout => (Refusal::UpstreamTimeout, "read_timeout"),
                WriteTimedout => (Refusal::UpstreamTimeout, "write_timeout"),
                ConnectRefused => (Refusal::UpstreamUnreachable, "connect_refused"),
                ConnectNoRoute | ConnectError | BindError | SocketError => {
                    (Refusal::UpstreamUnreachable, "connect")
                }
                TLSHandshakeFailure | InvalidCert | TLSWantX509Lookup => {
                    (Refusal::UpstreamUnreachable, "tls")
                }
                ConnectionClosed | ReadError | WriteError => {
                    (Refusal::UpstreamUnreachable, "connection")
                }
                _ => (Refusal::UpstreamUnreachable, "protocol"),
            };
            Failure::Respond {
                refusal,
                upstream_kind: Some(kind),
            }
        }
        ErrorSource::Downstream => match e.etype() {
            // Too slow sending its body (Pingora's per-read timeout): 408 if still possible.
            ReadTimedout => Failure::Respond {
                refusal: Refusal::BodyTimeout,
                upstream_kind: None,
            },
            ReadError | WriteError | ConnectionClosed | WriteTimedout => Failure::ClientGone,
            _ => Failure::BadClientRequest,
        },
        ErrorSource::Internal | ErrorSource::Unset => match e.etype() {
            // Pingora marks connect failures raised before a peer exists as internal.
            ConnectTimedout => Failure::Respond {
                refusal: Refusal::UpstreamTimeout,
                upstream_kind: Some("connect_timeout"),
            },
            ConnectRefused | ConnectNoRoute | ConnectError => Failure::Respond {
                refusal: Refusal::UpstreamUnreachable,
                upstream_kind: Some("connect"),
            },
            _ => Failure::Respond {
                refusal: Refusal::Internal,
                upstream_kind: None,
            },
        },
    }
}

/// A failure the client caused (it left, stalled or broke the framing): worth an access
/// line, not an ERROR line.
pub fn is_client_fault(e: &Error) -> bool {
    matches!(e.esource(), ErrorSource::Downstream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(t: ErrorType) -> Box<Error> {
        Error::new_up(t)
    }

    #[test]
    fn timeouts_are_504_and_others_502() {
        assert_eq!(
            classify(&upstream(ErrorType::ReadTimedout)),
            Failure::Respond {
                refusal: Refusal::UpstreamTimeout,
                upstream_kind: Some("read_timeout")
            }
        );
        assert_eq!(
            classify(&upstream(ErrorType::ConnectRefused)),
            Failure::Respond {
                refusal: Refusal::UpstreamUnreachable,
                upstream_kind: Some("connect_refused")
            }
        );
    }

    #[test]
    fn unfilterable_answers_are_502_whatever_their_source() {
        for e in [Error::new_up(UNFILTERABLE), Error::new(UNFILTERABLE)] {
            assert_eq!(
                classify(&e),
                Failure::Respond {
                    refusal: Refusal::UnfilterableAnswer,
                    upstream_kind: Some("unfilterable")
                }
            );
        }
    }

    #[test]
    fn client_failures_are_not_answered() {
        let e = Error::new_down(ErrorType::ConnectionClosed);
        assert_eq!(classify(&e), Failure::ClientGone);
        assert!(is_client_fault(&e));
    }

    #[test]
    fn slow_or_broken_clients_get_408_or_400_and_no_error_line() {
        let slow = Error::new_down(ErrorType::ReadTimedout);
        assert_eq!(
            classify(&slow),
            Failure::Respond {
                refusal: Refusal::BodyTimeout,
                upstream_kind: None
            }
        );
        assert!(is_client_fault(&slow));
        let broken = Error::new_down(ErrorType::new("InvalidChunk"));
        assert_eq!(classify(&broken), Failure::BadClientRequest);
        assert!(is_client_fault(&broken));
        assert!(!is_client_fault(&upstream(ErrorType::ReadTimedout)));
    }
}
