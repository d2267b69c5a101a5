//! `/api/v1/lookout/dashboards`: the dashboard library over HTTP (list, one dashboard in
//! Grafana's `{dashboard, meta}` shape, import).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lookout_dashboards::Error as DashError;

use crate::AppState;
use crate::api::{ApiError, api_error, ok, ok_value};

fn status_of(e: &DashError) -> (StatusCode, &'static str) {
    match e {
        DashError::Invalid(_) | DashError::TooLarge { .. } | DashError::Pattern { .. } => {
            (StatusCode::BAD_REQUEST, "bad_data")
        }
        DashError::Provisioned { .. } => (StatusCode::CONFLICT, "bad_data"),
        DashError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        DashError::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

fn dash_error(e: DashError) -> ApiError {
    let (status, kind) = status_of(&e);
    api_error(status, kind, &e.to_string())
}

/// Runs library work (file reads, an fsynced write) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        )
    })
}

/// `GET /api/v1/lookout/dashboards`: every dashboard (`uid`, `title`, `tags`, `source`,
/// and `path`/`error` for files), served or not.
pub(crate) async fn list(State(st): State<AppState>) -> Result<Response, ApiError> {
    let lib = st.dashboards.clone();
    let entries = blocking(move || lib.list()).await?;
    Ok(ok(
        &serde_json::to_string(&entries).expect("entries serialize")
    ))
}

/// `GET /api/v1/lookout/dashboards/{uid}`: `{dashboard, meta}` as Grafana's
/// `/api/dashboards/uid/{uid}` answers, `meta` carrying the source and the scrape
/// interval `$__rate_interval` assumes.
pub(crate) async fn get(
    State(st): State<AppState>,
    Path(uid): Path<String>,
) -> Result<Response, ApiError> {
    let lib = st.dashboards.clone();
    let key = uid.clone();
    let found = blocking(move || lib.get_with_source(&key)).await?;
    let Some((d, source)) = found else {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no dashboard with uid {uid:?}"),
        ));
    };
    let scrape = st.dashboards.scrape_interval();
    Ok(ok_value(&serde_json::json!({
        "dashboard": *d,
        "meta": {
            "source": source,
            "scrapeInterval": lookout_model::format_duration(scrape),
            "slug": slug(d["title"].as_str().unwrap_or_default()),
        },
    })))
}

/// `POST /api/v1/lookout/dashboards`: imports dashboard JSON (a dashboard or Grafana's
/// `{"dashboard": …}`), kept in the data directory; 400 names what is wrong, 409 when a
/// provisioned file owns the uid.
pub(crate) async fn import(State(st): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let lib = st.dashboards.clone();
    let entry = blocking(move || lib.import(&body))
        .await?
        .map_err(dash_error)?;
    Ok((
        StatusCode::OK,
        ok(&serde_json::to_string(&entry).expect("entry serializes")),
    )
        .into_response())
}

/// Grafana's URL slug of a title: lower case, runs of other characters as one `-`.
fn slug(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs_follow_grafana() {
        assert_eq!(super::slug("Host overview"), "host-overview");
        assert_eq!(
            super::slug("  PostgreSQL / Replication!! "),
            "postgresql-replication"
        );
    }
}
