//! The pages the consent callback shows the person in the browser, the same in both modes.

use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::record::ConsentError;

/// A small HTML page for the person in the browser (consent callbacks).
pub fn page(status: StatusCode, title: &str, detail: &str) -> axum::response::Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>{t}</h1><p>{d}</p></body></html>",
        t = esc(title),
        d = esc(detail)
    );
    (status, axum::response::Html(body)).into_response()
}

/// The page for the result of completing a consent, the same in both adapters.
pub fn consent_result_page(
    result: &Result<Result<super::record::Outcome, super::record::ConsentError>, super::record::PassError>,
    what: &str,
) -> axum::response::Response {
    match result {
        Err(e) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Could not save the tokens",
            &format!("{e}; try the link again"),
        ),
        Ok(Err(e @ ConsentError::NotPending)) => {
            page(StatusCode::CONFLICT, "Consent link already used", &e.to_string())
        }
        Ok(Err(ConsentError::Engine(e))) => page(
            StatusCode::BAD_GATEWAY,
            "The provider did not issue tokens",
            &e.to_string(),
        ),
        Ok(Ok(_)) => page(
            StatusCode::OK,
            "Connected",
            &format!("{what} is authorized. You can close this window."),
        ),
    }
}
