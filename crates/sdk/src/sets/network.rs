//! Network metrics: gRPC under go-grpc-prometheus's names, HTTP under the OpenTelemetry
//! semantic conventions' names as Prometheus translates them, connections and bytes.
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `grpc_server_started_total`, `grpc_client_started_total` | counter | `grpc_type`, `grpc_service`, `grpc_method` |
//! | `grpc_server_handled_total`, `grpc_client_handled_total` | counter | the same and `grpc_code` (`OK`, `NotFound`, …) |
//! | `grpc_server_handling_seconds`, `grpc_client_handling_seconds` | histogram | `grpc_type`, `grpc_service`, `grpc_method` |
//! | `http_server_request_duration_seconds` | histogram | `http_request_method`, `http_route`, `http_response_status_code` |
//! | `http_client_request_duration_seconds` | histogram | `http_request_method`, `server_address`, `http_response_status_code` |
//! | `network_connections_open` | gauge | `direction` (`inbound`, `outbound`) |
//! | `network_received_bytes_total`, `network_sent_bytes_total` | counter | |
//!
//! A gRPC method's handle ([`NetworkMetrics::grpc_server`]) creates its series for every
//! status code up front, as go-grpc-prometheus does, so recording never allocates; HTTP
//! status codes are resolved when recorded. With [`crate::Options::time_one_in`], the gRPC
//! handling histograms hold the sampled calls ([`GrpcCall::stopwatch`]) while
//! `grpc_*_handled_total` counts every one; HTTP requests are always timed (the OpenTelemetry
//! histogram is their only count).

use crate::Counter;
use crate::Gauge;
use prometheus_client::metrics::family::Family;

use super::{
    LatencyFamily, LatencyHistogram, Pairs, handle, latency_family, observe_latency, pairs,
};
use crate::{Metrics, Stopwatch, Timing};

/// gRPC's status codes, in their numeric order, as go-grpc-prometheus names them.
pub const GRPC_CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

#[derive(Debug, Clone)]
struct GrpcSide {
    started: Family<Pairs, Counter>,
    handled: Family<Pairs, Counter>,
    seconds: LatencyFamily,
    timing: Timing,
}

impl GrpcSide {
    fn new(m: &Metrics, side: &str) -> Self {
        Self {
            started: m.shared(
                &format!("grpc_{side}_started"),
                &format!("RPCs started on the {side}"),
                Family::default,
            ),
            handled: m.shared(
                &format!("grpc_{side}_handled"),
                &format!("RPCs completed on the {side}, by status code"),
                Family::default,
            ),
            seconds: m.shared(
                &format!("grpc_{side}_handling_seconds"),
                &format!("RPC latency on the {side}"),
                latency_family,
            ),
            timing: m.timing(),
        }
    }

    fn call(&self, kind: &str, service: &str, method: &str) -> GrpcCall {
        let base = pairs(&[
            ("grpc_type", kind),
            ("grpc_service", service),
            ("grpc_method", method),
        ]);
        let handled = GRPC_CODES.map(|code| {
            let mut l = base.clone();
            l.push(("grpc_code".into(), code.into()));
            self.handled.get_or_create(&l).clone()
        });
        GrpcCall {
            started: self.started.get_or_create(&base).clone(),
            handled,
            seconds: self.seconds.get_or_create(&base).clone(),
            timing: self.timing,
        }
    }
}

/// One gRPC method's series; record each call with [`GrpcCall::start`] and
/// [`GrpcCall::handled`].
#[derive(Debug, Clone)]
#[repr(C)]
pub struct GrpcCall {
    /// First: read on every call, beside the counters (`repr(C)`).
    timing: Timing,
    started: Counter,
    handled: [Counter; 17],
    seconds: LatencyHistogram,
}

impl GrpcCall {
    /// A call started.
    #[inline]
    pub fn start(&self) {
        self.started.inc();
    }

    /// Starts timing a call, if it is in the sample ([`crate::Options::time_one_in`]).
    #[inline]
    pub fn stopwatch(&self) -> Stopwatch {
        self.timing.start()
    }

    /// A call finished with status `code` (0 = OK … 16 = Unauthenticated) after `seconds`
    /// (`None`: counted in `grpc_*_handled_total`, not timed).
    #[inline]
    pub fn handled(&self, code: u8, seconds: impl Into<Option<f64>>) {
        self.handled[usize::from(code.min(16))].inc();
        observe_latency(&self.seconds, seconds.into());
    }
}

/// One HTTP route's series.
#[derive(Debug, Clone)]
pub struct HttpCall {
    family: LatencyFamily,
    base: Pairs,
}

impl HttpCall {
    /// A request answered with `status` after `seconds`.
    pub fn record(&self, status: u16, seconds: f64) {
        let mut l = self.base.clone();
        l.push(("http_response_status_code".into(), status.to_string()));
        observe_latency(&self.family.get_or_create(&l), Some(seconds));
    }
}

/// The network metric set.
#[derive(Debug, Clone)]
pub struct NetworkMetrics {
    server: GrpcSide,
    client: GrpcSide,
    http_server: LatencyFamily,
    http_client: LatencyFamily,
    inbound: Gauge,
    outbound: Gauge,
    received: Counter,
    sent: Counter,
}

impl NetworkMetrics {
    pub(crate) fn new(m: &Metrics) -> Self {
        let http_server = m.shared(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests",
            latency_family,
        );
        let http_client = m.shared(
            "http_client_request_duration_seconds",
            "Duration of HTTP client requests",
            latency_family,
        );
        let conns = m.shared(
            "network_connections_open",
            "Open connections, by direction",
            Family::<Pairs, Gauge>::default,
        );
        Self {
            server: GrpcSide::new(m, "server"),
            client: GrpcSide::new(m, "client"),
            http_server,
            http_client,
            inbound: handle(&conns, &[("direction", "inbound")]),
            outbound: handle(&conns, &[("direction", "outbound")]),
            received: m.counter("network_received_bytes", "Bytes received from the network"),
            sent: m.counter("network_sent_bytes", "Bytes sent to the network"),
        }
    }

    /// The series of a server-side gRPC method (`kind`: `unary`, `client_stream`,
    /// `server_stream`, `bidi_stream`).
    pub fn grpc_server(&self, kind: &str, service: &str, method: &str) -> GrpcCall {
        self.server.call(kind, service, method)
    }

    /// The series of a client-side gRPC method.
    pub fn grpc_client(&self, kind: &str, service: &str, method: &str) -> GrpcCall {
        self.client.call(kind, service, method)
    }

    /// The series of an HTTP route served.
    pub fn http_server(&self, method: &str, route: &str) -> HttpCall {
        HttpCall {
            family: self.http_server.clone(),
            base: pairs(&[("http_request_method", method), ("http_route", route)]),
        }
    }

    /// The series of HTTP requests made to `server`.
    pub fn http_client(&self, method: &str, server: &str) -> HttpCall {
        HttpCall {
            family: self.http_client.clone(),
            base: pairs(&[("http_request_method", method), ("server_address", server)]),
        }
    }

    /// A connection opened (`inbound` true: accepted; false: dialled).
    #[inline]
    pub fn connection_opened(&self, inbound: bool) {
        if inbound {
            &self.inbound
        } else {
            &self.outbound
        }
        .inc();
    }

    /// A connection closed.
    #[inline]
    pub fn connection_closed(&self, inbound: bool) {
        if inbound {
            &self.inbound
        } else {
            &self.outbound
        }
        .dec();
    }

    /// Bytes received.
    #[inline]
    pub fn received(&self, bytes: u64) {
        self.received.inc_by(bytes);
    }

    /// Bytes sent.
    #[inline]
    pub fn sent(&self, bytes: u64) {
        self.sent.inc_by(bytes);
    }
}
