//! The shared vocabulary of mosn-rs: the [`Headers`] view every protocol's head offers, the
//! [`Protocol`]s, the [`StreamInfo`] record, [`LocalReply`], the stream filter phases and registry
//! ([`filter`]), the data-path error and the response flags it carries, and metric primitives.
//!
//! Source: Envoy access-log response flags
//! (<https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage>),
//! which mosn-rs prints instead of MOSN's bare true/false.

#![forbid(unsafe_code)]

pub mod filter;
mod headers;
pub mod metrics;
mod stream;
pub mod transcode;

pub use filter::{
    Decision, FilterConfigError, FilterCx, FilterMetrics, FilterOverrides, FilterRegistry, Phase,
    StreamFilter,
};
pub use headers::{HeaderVec, Headers};
pub use stream::{LocalReply, PoolMode, Protocol, StreamInfo, UpstreamRef};

use http::StatusCode;

/// Why a response did not come from the upstream as asked, in Envoy's short form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseFlag {
    /// `NR`: no route matched.
    NoRoute,
    /// `UH`: no healthy upstream host.
    NoHealthyUpstream,
    /// `UF`: upstream connection failure (refused, failed, timed out connecting).
    UpstreamConnectionFailure,
    /// `UC`: upstream connection closed or reset mid-request.
    UpstreamConnectionTermination,
    /// `UT`: upstream request timeout.
    UpstreamRequestTimeout,
    /// `UO`: upstream overflow (circuit breaker).
    UpstreamOverflow,
    /// `URX`: upstream retry limit exceeded.
    UpstreamRetryLimitExceeded,
    /// `DC`: downstream connection terminated.
    DownstreamConnectionTermination,
    /// `DPE`: downstream protocol error.
    DownstreamProtocolError,
    /// `FI`: the `fault` filter aborted the request.
    FaultInjected,
    /// `DI`: the `fault` filter delayed the request.
    DelayInjected,
    /// `RBAC`: an access filter (`ip_access`) denied the request.
    AccessDenied,
    /// `TF`: a transcoder could not convert the request (400) or the response (500); MOSN's
    /// `RequestTranscodeFail`.
    TranscodeFailed,
}

impl ResponseFlag {
    /// Envoy's short flag, e.g. `"UF"`.
    pub fn short(self) -> &'static str {
        match self {
            ResponseFlag::NoRoute => "NR",
            ResponseFlag::NoHealthyUpstream => "UH",
            ResponseFlag::UpstreamConnectionFailure => "UF",
            ResponseFlag::UpstreamConnectionTermination => "UC",
            ResponseFlag::UpstreamRequestTimeout => "UT",
            ResponseFlag::UpstreamOverflow => "UO",
            ResponseFlag::UpstreamRetryLimitExceeded => "URX",
            ResponseFlag::DownstreamConnectionTermination => "DC",
            ResponseFlag::DownstreamProtocolError => "DPE",
            ResponseFlag::FaultInjected => "FI",
            ResponseFlag::DelayInjected => "DI",
            ResponseFlag::AccessDenied => "RBAC",
            ResponseFlag::TranscodeFailed => "TF",
        }
    }
}

impl std::fmt::Display for ResponseFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.short())
    }
}

/// Where a data-path failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The client side.
    Downstream,
    /// The upstream host or the way to it.
    Upstream,
    /// mosn-rs itself (routing, limits).
    Internal,
}

/// A failure on the data path: where it came from, whether a retry may help, and how it is shown.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{flag} ({source_kind:?}): {detail}")]
pub struct ProxyError {
    /// Where it came from.
    pub source_kind: ErrorSource,
    /// True when another try (possibly on another host) may succeed.
    pub retryable: bool,
    /// The response flag for the access log.
    pub flag: ResponseFlag,
    /// Human-readable detail for logs.
    pub detail: String,
}

impl ProxyError {
    /// Builds an error; `retryable` and the source follow from the flag.
    pub fn new(flag: ResponseFlag, detail: impl Into<String>) -> Self {
        let (source_kind, retryable) = match flag {
            ResponseFlag::UpstreamConnectionFailure => (ErrorSource::Upstream, true),
            ResponseFlag::UpstreamConnectionTermination => (ErrorSource::Upstream, true),
            ResponseFlag::UpstreamRequestTimeout => (ErrorSource::Upstream, false),
            ResponseFlag::UpstreamRetryLimitExceeded => (ErrorSource::Upstream, false),
            ResponseFlag::DownstreamConnectionTermination
            | ResponseFlag::DownstreamProtocolError => (ErrorSource::Downstream, false),
            ResponseFlag::NoRoute
            | ResponseFlag::NoHealthyUpstream
            | ResponseFlag::UpstreamOverflow
            | ResponseFlag::FaultInjected
            | ResponseFlag::DelayInjected
            | ResponseFlag::AccessDenied
            | ResponseFlag::TranscodeFailed => (ErrorSource::Internal, false),
        };
        ProxyError {
            source_kind,
            retryable,
            flag,
            detail: detail.into(),
        }
    }

    /// The status the client sees: 404 no route, 503 no healthy host or overflow, 502 connect
    /// failure or reset, 504 timeout, 400 bad request.
    pub fn status(&self) -> StatusCode {
        match self.flag {
            ResponseFlag::NoRoute => StatusCode::NOT_FOUND,
            ResponseFlag::NoHealthyUpstream | ResponseFlag::UpstreamOverflow => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ResponseFlag::UpstreamConnectionFailure
            | ResponseFlag::UpstreamConnectionTermination
            | ResponseFlag::UpstreamRetryLimitExceeded => StatusCode::BAD_GATEWAY,
            ResponseFlag::UpstreamRequestTimeout => StatusCode::GATEWAY_TIMEOUT,
            ResponseFlag::DownstreamConnectionTermination
            | ResponseFlag::DownstreamProtocolError
            | ResponseFlag::TranscodeFailed => StatusCode::BAD_REQUEST,
            ResponseFlag::FaultInjected | ResponseFlag::DelayInjected => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ResponseFlag::AccessDenied => StatusCode::FORBIDDEN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_flag() {
        let s = |f| ProxyError::new(f, "x").status().as_u16();
        assert_eq!(s(ResponseFlag::NoRoute), 404);
        assert_eq!(s(ResponseFlag::NoHealthyUpstream), 503);
        assert_eq!(s(ResponseFlag::UpstreamOverflow), 503);
        assert_eq!(s(ResponseFlag::UpstreamConnectionFailure), 502);
        assert_eq!(s(ResponseFlag::UpstreamRequestTimeout), 504);
        assert!(ProxyError::new(ResponseFlag::UpstreamConnectionFailure, "").retryable);
        assert!(!ProxyError::new(ResponseFlag::UpstreamRequestTimeout, "").retryable);
        assert_eq!(ResponseFlag::UpstreamRetryLimitExceeded.to_string(), "URX");
    }
}
