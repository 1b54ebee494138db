//! The pgshot REST API client, generated at build time by progenitor from the committed spec
//! (`openapi/openapi.json`, see `build.rs`). progenitor adds no auth header by itself: build the
//! `reqwest::Client` with an `X-API-Key` default header, as [`with_api_key`] does.

include!(concat!(env!("OUT_DIR"), "/client.rs"));

/// A client for `base_url` that sends `api_key` with every request.
pub fn with_api_key(base_url: &str, api_key: &str) -> Result<Client, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(api_key).map_err(|e| format!("API key: {e}"))?;
    value.set_sensitive(true);
    headers.insert("X-API-Key", value);
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    Ok(Client::new_with_client(base_url, http))
}
