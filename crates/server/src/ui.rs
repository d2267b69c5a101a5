//! The web UI: static files embedded in the binary at build time (no build step: the
//! page is plain HTML, CSS and JavaScript, with uPlot vendored as its built file).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "ui/"]
struct Assets;

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("txt") | Some("LICENSE") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn serve(path: &str) -> Response {
    match Assets::get(path) {
        Some(f) => (
            [
                (header::CONTENT_TYPE, content_type(path)),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            f.data.into_owned(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

pub(crate) async fn index() -> Response {
    serve("index.html")
}

/// The application's pages (`/`, `/dashboards`, Grafana's `/d/<uid>[/<slug>]`,
/// `/alerts`, `/silences`): one page that reads the rest from its address.
pub(crate) async fn app_page() -> Response {
    serve("app.html")
}

pub(crate) async fn asset(Path(path): Path<String>) -> Response {
    serve(&path)
}
