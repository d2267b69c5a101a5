//! OTLP/gRPC for traces: `opentelemetry.proto.collector.trace.v1.TraceService/Export` on
//! a listener of its own (`tracing_receiver.grpc_listen_address`, HTTP/2), served by
//! tonic's gRPC machinery (framing, status codes, message size limits) with a codec that
//! hands the message's bytes to the same decoder and store as `POST /v1/traces`, so both
//! transports accept and refuse exactly the same spans. The web configuration's
//! authentication, roles (a write: operators), rate limit and TLS (offering ALPN `h2`)
//! apply as on the main listener.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use bytes::{Buf, BufMut, Bytes};
use lookout_traces::{Error, TraceStore};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Request, Response, Status};

/// The Export method's path.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The message as bytes in (decoded by `lookout_traces::otlp`) and out (an encoded
/// `ExportTraceServiceResponse`).
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

#[derive(Debug, Clone, Copy, Default)]
struct RawEncoder;

#[derive(Debug, Clone, Copy, Default)]
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The Export method: decode, store, answer with the partial success.
#[derive(Clone)]
struct Export {
    traces: Arc<TraceStore>,
    max_bytes: usize,
}

impl tonic::server::UnaryService<Bytes> for Export {
    type Response = Vec<u8>;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Vec<u8>>, Status>> + Send>,
    >;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let (traces, max) = (Arc::clone(&self.traces), self.max_bytes);
        Box::pin(async move {
            let body = request.into_inner();
            let done = tokio::task::spawn_blocking(move || {
                crate::traces_api::ingest(&traces, &body, false, max)
            })
            .await;
            match done {
                Ok(Ok(d)) => Ok(Response::new(d.response(false))),
                Ok(Err(Error::Invalid(m))) => Err(Status::invalid_argument(m)),
                Ok(Err(e)) => Err(Status::internal(format!("storing the spans failed: {e}"))),
                Err(e) => Err(Status::internal(format!("internal error: {e}"))),
            }
        })
    }
}

/// The tower service routing Export to tonic's unary handling.
#[derive(Clone)]
struct ExportService(Export);

impl tower::Service<axum::extract::Request> for ExportService {
    type Response = axum::http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        let export = self.0.clone();
        let max = export.max_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .apply_max_message_size_config(Some(max), Some(max));
            Ok(grpc.unary(export, req).await)
        })
    }
}

/// Any other method: gRPC's `UNIMPLEMENTED`, named.
async fn unimplemented(uri: axum::http::Uri) -> axum::http::Response<tonic::body::Body> {
    Status::unimplemented(format!(
        "{} is not served here: this listener takes {EXPORT_PATH}",
        uri.path()
    ))
    .into_http()
}

/// The gRPC listener's routes over `traces`, requests of at most `max_bytes`.
pub fn router(traces: Arc<TraceStore>, max_bytes: usize) -> Router {
    Router::new()
        .route_service(EXPORT_PATH, ExportService(Export { traces, max_bytes }))
        .fallback(unimplemented)
}
