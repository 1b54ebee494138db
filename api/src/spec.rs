//! The spec as published: poem-openapi's document, finished where poem-openapi cannot say what
//! the API does. Every change here is to the document's shape, not to what it describes:
//!
//! - the request body is `ScreenshotRequest`: `pgshot_job::ScreenshotOptions` with `url`
//!   required, while bulk `defaults` and `options` use `ScreenshotOptions` without `url` (one type
//!   parses both; the bulk item carries the URL);
//! - a property that refers to another schema is a plain `$ref` (poem-openapi wraps it in an
//!   `allOf` to give it a description, which client generators read as a composition and drop
//!   or mistype); the referenced schema carries the description;
//! - each action of the `Action` union is one flat object with its `type`, instead of an `allOf`
//!   of the discriminator and the action's fields;
//! - `Base64Result`, what a result download answers for a BASE64 job, is in the components;
//! - the webhooks a job or bulk sends are `callbacks` of the operations that set `webhookUrl`,
//!   with their schemas (poem-openapi has no callbacks);
//! - optional request fields are `nullable` (a `null` is read as not set);
//! - `servers`, the license, and examples of the request bodies.

use poem_openapi::registry::Registry;
use poem_openapi::types::Type;
use serde_json::{json, Map, Value};

use crate::schema::{Base64Result, BulkWebhook, JobWebhook};

const SCHEMAS: &str = "#/components/schemas/";

/// The finished spec, from poem-openapi's.
pub fn finish(raw: &str) -> String {
    let mut spec: Value = serde_json::from_str(raw).expect("poem-openapi writes JSON");
    register_webhooks(&mut spec);
    let schemas = spec["components"]["schemas"].as_object_mut().expect("the spec has schemas");
    split_request(schemas);
    flatten_actions(schemas);
    plain_refs(&mut spec);
    nullable_options(&mut spec);
    request_bodies(&mut spec);
    callbacks(&mut spec);
    spec["servers"] = json!([{
        "url": "/",
        "description": "The pgshot-api that serves this document at /openapi.json (run locally, \
                        http://localhost:8080)"
    }]);
    spec["info"]["license"] = json!({"name": "MIT OR Apache-2.0", "url": "https://spdx.org/licenses/"});
    serde_json::to_string_pretty(&spec).expect("JSON serialises")
}

/// The schemas no operation's media type refers to: the webhook bodies, and the JSON a result
/// download answers for a BASE64 job (see `result.rs`).
fn register_webhooks(spec: &mut Value) {
    let mut registry = Registry::new();
    JobWebhook::register(&mut registry);
    BulkWebhook::register(&mut registry);
    Base64Result::register(&mut registry);
    let schemas = spec["components"]["schemas"].as_object_mut().expect("the spec has schemas");
    for (name, schema) in registry.schemas {
        if !schemas.contains_key(&name) {
            schemas.insert(name, serde_json::to_value(schema).expect("schemas serialise"));
        }
    }
}

fn split_request(schemas: &mut Map<String, Value>) {
    let options = schemas.get_mut("ScreenshotOptions").expect("ScreenshotOptions is in the spec");
    let mut request = options.clone();
    options["properties"].as_object_mut().expect("an object schema").remove("url");
    options["title"] = json!("ScreenshotOptions");
    options["description"] = json!(
        "The options of a screenshot request without its url: a bulk request's `defaults`, and each \
         bulk URL's `options`."
    );
    request["title"] = json!("ScreenshotRequest");
    request["description"] = json!("A screenshot request: the page's url and how to capture it.");
    let required = request["required"].as_array_mut().map(std::mem::take).unwrap_or_default();
    request["required"] = Value::Array([vec![json!("url")], required].concat());
    schemas.insert("ScreenshotRequest".into(), request);
}

/// `Action_ClickAction` (an `allOf` of `{type: click}` and `ClickAction`) becomes `ClickAction`,
/// one object with both.
fn flatten_actions(schemas: &mut Map<String, Value>) {
    let Some(mapping) = schemas["Action"]["discriminator"]["mapping"].as_object().cloned() else { return };
    let mut one_of = Vec::new();
    let mut new_mapping = Map::new();
    for (tag, reference) in mapping {
        let wrapper_name = reference.as_str().and_then(|r| r.strip_prefix(SCHEMAS)).expect("a schema ref").to_string();
        let wrapper = schemas.remove(&wrapper_name).expect("the mapping's schema exists");
        let parts = wrapper["allOf"].as_array().expect("poem-openapi's discriminator wrapper");
        let tag_part = parts.iter().find(|p| p.get("properties").is_some()).expect("the type property");
        let inner_name = parts
            .iter()
            .find_map(|p| p["$ref"].as_str())
            .and_then(|r| r.strip_prefix(SCHEMAS))
            .expect("the action's own schema")
            .to_string();
        let mut action = schemas[&inner_name].clone();
        let mut properties = Map::new();
        let mut type_property = tag_part["properties"]["type"].clone();
        type_property["description"] = json!(format!("Always `{tag}`."));
        properties.insert("type".into(), type_property);
        properties.extend(action["properties"].as_object().cloned().unwrap_or_default());
        action["properties"] = Value::Object(properties);
        let required = action["required"].as_array().cloned().unwrap_or_default();
        action["required"] = Value::Array([vec![json!("type")], required].concat());
        schemas.insert(inner_name.clone(), action);
        let reference = format!("{SCHEMAS}{inner_name}");
        one_of.push(json!({"$ref": reference}));
        new_mapping.insert(tag, json!(reference));
    }
    schemas["Action"]["oneOf"] = Value::Array(one_of);
    schemas["Action"]["discriminator"]["mapping"] = Value::Object(new_mapping);
}

/// `{"allOf": [{"$ref": X}, {"description": ...}], "description": ...}` becomes `{"$ref": X}`.
fn plain_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let single_ref = map.get("allOf").and_then(Value::as_array).and_then(|parts| {
                let refs: Vec<&Value> = parts.iter().filter(|p| p.get("$ref").is_some()).collect();
                let rest_is_description_only = parts
                    .iter()
                    .filter(|p| p.get("$ref").is_none())
                    .all(|p| p.as_object().is_some_and(|o| o.keys().all(|k| k == "description")));
                (refs.len() == 1 && rest_is_description_only).then(|| refs[0].clone())
            });
            if let Some(reference) = single_ref {
                *value = reference;
                return;
            }
            for child in map.values_mut() {
                plain_refs(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(plain_refs),
        _ => {}
    }
}

/// Requests may send `null` for any optional field, meaning "not set", as the official SDKs do
/// for a field set to None (serde reads `null` into an `Option` as `None`); the spec says so.
/// A field with a default (a cookie's value, say) takes a string, not `null`.
fn nullable_options(spec: &mut Value) {
    let schemas = spec["components"]["schemas"].as_object_mut().expect("the spec has schemas");
    let mut pending = ["ScreenshotRequest", "ScreenshotOptions", "BulkRequest"].map(String::from).to_vec();
    let mut seen = std::collections::BTreeSet::new();
    let mut nullable = Vec::new();
    while let Some(name) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(schema) = schemas.get(&name) else { continue };
        let mut refs = Vec::new();
        collect_refs(schema, &mut refs);
        pending.extend(refs);
        let required: Vec<Value> = schema["required"].as_array().cloned().unwrap_or_default();
        for (field, property) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
            if !required.contains(&json!(field)) && property.get("default").is_none() {
                nullable.push((name.clone(), field.clone()));
            }
        }
    }
    for (name, field) in nullable {
        let property = &schemas[&name]["properties"][&field];
        let updated = match property.get("$ref").and_then(Value::as_str) {
            // OpenAPI 3.0 reads no sibling of a $ref: the reference goes into an allOf, beside
            // the type that `nullable` needs.
            Some(reference) => {
                let target = reference.strip_prefix(SCHEMAS).and_then(|n| schemas.get(n));
                let ty = target.and_then(|t| t.get("type")).cloned().unwrap_or(json!("object"));
                json!({"type": ty, "nullable": true, "allOf": [{"$ref": reference}]})
            }
            None => {
                let mut property = property.clone();
                property["nullable"] = json!(true);
                property
            }
        };
        schemas.get_mut(&name).and_then(|s| s.get_mut("properties")).expect("collected above")[&field] = updated;
    }
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix(SCHEMAS)) {
                refs.push(name.to_string());
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

fn request_bodies(spec: &mut Value) {
    let example = json!({
        "url": "https://example.com",
        "viewport": {"width": 1280, "height": 800},
        "fullPage": true,
        "format": "png",
        "blockCookieBanners": true,
        "webhookUrl": "https://hooks.example.com/pgshot"
    });
    for path in ["/v1/screenshots/async", "/v1/screenshots"] {
        let media = &mut spec["paths"][path]["post"]["requestBody"]["content"]["application/json"];
        media["schema"] = json!({"$ref": format!("{SCHEMAS}ScreenshotRequest")});
    }
    // Only the async operation has an example: schemathesis (tests/tests/fuzz.rs) derives many
    // valid requests from an example, and each valid sync capture waits for a render.
    spec["paths"]["/v1/screenshots/async"]["post"]["requestBody"]["content"]["application/json"]["example"] = example;
    spec["paths"]["/v1/screenshots/bulk"]["post"]["requestBody"]["content"]["application/json"]["example"] = json!({
        "urls": [{"url": "https://example.com"}, {"url": "https://example.org", "options": {"format": "jpeg"}}],
        "defaults": {"viewport": {"width": 1280, "height": 800}},
        "webhookUrl": "https://hooks.example.com/pgshot-bulk"
    });
}

/// The webhook a job (or bulk) with `webhookUrl` POSTs when it finishes.
fn callbacks(spec: &mut Value) {
    let callback = |name: &str, schema: &str, what: &str| {
        json!({
            name: {
                "{$request.body#/webhookUrl}": {
                    "post": {
                        "summary": format!("The {what} finished"),
                        "description": format!(
                            "Sent once the {what} is finished, and again (same body, same webhook-id) until \
                             the receiver answers 2xx or the attempts run out. Verify webhook-signature: \
                             `v1,` and the base64 HMAC-SHA256 of `webhook-id.webhook-timestamp.body` under \
                             the webhook secret (Standard Webhooks)."
                        ),
                        "operationId": format!("{}Webhook", name),
                        // The receiver authenticates the body by its signature, not by a key.
                        "security": [],
                        "parameters": [
                            {"name": "webhook-id", "in": "header", "required": true,
                             "description": "The delivery's id, the same on every retry: de-duplicate on it.",
                             "schema": {"type": "string"}},
                            {"name": "webhook-timestamp", "in": "header", "required": true,
                             "description": "Unix seconds when this attempt was signed.",
                             "schema": {"type": "string"}},
                            {"name": "webhook-signature", "in": "header", "required": true,
                             "description": "`v1,` and the base64 signature (Standard Webhooks).",
                             "schema": {"type": "string"}}
                        ],
                        "requestBody": {
                            "required": true,
                            "content": {"application/json": {"schema": {"$ref": format!("{SCHEMAS}{schema}")}}}
                        },
                        "responses": {
                            "200": {"description": "Received; any 2xx status ends the deliveries."},
                            "4XX": {"description": "Refused: retried as any failure is, until the attempts run out."},
                            "default": {"description": "Anything else, or no answer in time: the delivery is retried."}
                        }
                    }
                }
            }
        })
    };
    spec["paths"]["/v1/screenshots/async"]["post"]["callbacks"] = callback("jobFinished", "JobWebhook", "job");
    spec["paths"]["/v1/screenshots/bulk"]["post"]["callbacks"] = callback("bulkFinished", "BulkWebhook", "bulk");
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgshot_job::{JobRequest, NetworkPolicy};

    const POLICY: NetworkPolicy = NetworkPolicy { allow_private_networks: false };

    fn spec() -> Value {
        serde_json::from_str(&crate::spec()).unwrap()
    }

    fn parse(body: &Value) -> Result<(), pgshot_job::InvalidOption> {
        let mut options = body.clone();
        let url = options.as_object_mut().unwrap().remove("url").unwrap();
        JobRequest::parse(url.as_str().unwrap(), &options, POLICY).map(|_| ())
    }

    /// `{"url": ..., <path>: value}`, with `path` dotted (`viewport.width`), and what the field
    /// needs beside it (a webhookSecret needs a webhookUrl).
    fn body_with(path: &str, value: Value) -> Value {
        let mut body = json!({"url": "https://example.com"});
        if path == "webhookSecret" {
            body["webhookUrl"] = json!("https://hooks.example.com/pgshot");
        }
        let mut at = &mut body;
        let parts: Vec<&str> = path.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            at = at.as_object_mut().unwrap().entry(*part).or_insert(json!({}));
        }
        at[parts[parts.len() - 1]] = value;
        body
    }

    /// The spec's ranges are written beside the fields (`oai(validator(...))` in pgshot-job) and
    /// enforced by `ScreenshotOptions::validate`: each bound the spec states is accepted, and one
    /// past it refused with the field named, so the two cannot drift apart.
    #[test]
    fn every_range_the_spec_states_is_the_one_validation_enforces() {
        let spec = spec();
        let schemas = &spec["components"]["schemas"];
        let mut checked = 0;
        for (prefix, schema) in [("", "ScreenshotRequest"), ("viewport.", "Viewport")] {
            for (name, property) in schemas[schema]["properties"].as_object().unwrap() {
                let path = format!("{prefix}{name}");
                let bounds = [("minimum", -1.0), ("maximum", 1.0)];
                for (key, step) in bounds {
                    let Some(bound) = property[key].as_f64() else { continue };
                    let integer = property["type"] == "integer";
                    let at = |v: f64| if integer { json!(v as i64) } else { json!(v) };
                    let past = if integer { bound + step } else { bound + step * 0.5 };
                    assert!(parse(&body_with(&path, at(bound))).is_ok(), "{path} = {bound} is in the spec's range");
                    let e = parse(&body_with(&path, at(past))).expect_err(&format!("{path} = {past}"));
                    assert_eq!(e.field, path, "{path} = {past}: {e:?}");
                    checked += 1;
                }
                if let (Some(min), Some("string")) = (property["minLength"].as_u64(), property["type"].as_str()) {
                    if min > 1 {
                        let text = |n: u64| json!("a".repeat(n as usize));
                        assert!(parse(&body_with(&path, text(min))).is_ok(), "{path}: {min} characters");
                        let e = parse(&body_with(&path, text(min - 1))).expect_err(&path);
                        assert_eq!(e.field, path, "{e:?}");
                        checked += 1;
                    }
                }
                if let (Some(max), Some("string")) = (property["maxLength"].as_u64(), property["type"].as_str()) {
                    if property.get("pattern").is_some_and(|p| p != r"\S") {
                        continue;
                    }
                    let text = |n: u64| json!("a".repeat(n as usize));
                    assert!(parse(&body_with(&path, text(max))).is_ok(), "{path}: {max} characters");
                    let e = parse(&body_with(&path, text(max + 1))).expect_err(&path);
                    assert_eq!(e.field, path, "{e:?}");
                    checked += 1;
                }
            }
        }
        assert!(checked >= 20, "only {checked} bounds checked");
    }

    #[test]
    fn every_operation_parameter_and_field_is_described() {
        let spec = spec();
        let schemas = spec["components"]["schemas"].as_object().unwrap();
        let described = |v: &Value| v["description"].as_str().is_some_and(|d| !d.trim().is_empty());
        let target = |v: &Value| {
            let reference = v["$ref"].as_str().or_else(|| v["allOf"][0]["$ref"].as_str())?;
            schemas.get(reference.strip_prefix(SCHEMAS)?)
        };
        let mut missing = Vec::new();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if !described(op) || op["summary"].as_str().is_none() {
                    missing.push(format!("{method} {path}"));
                }
                for p in op["parameters"].as_array().into_iter().flatten() {
                    if !described(p) {
                        missing.push(format!("{method} {path} parameter {}", p["name"]));
                    }
                }
                for (status, response) in op["responses"].as_object().unwrap() {
                    if !described(response) {
                        missing.push(format!("{method} {path} {status}"));
                    }
                }
            }
        }
        for (name, schema) in schemas {
            if !described(schema) {
                missing.push(format!("schema {name}"));
            }
            for (field, property) in schema["properties"].as_object().into_iter().flatten() {
                if !described(property) && !target(property).is_some_and(described) {
                    missing.push(format!("{name}.{field}"));
                }
            }
        }
        assert!(missing.is_empty(), "not described:\n{}", missing.join("\n"));
    }

    #[test]
    fn the_examples_are_requests_the_api_accepts() {
        let spec = spec();
        let example =
            &spec["paths"]["/v1/screenshots/async"]["post"]["requestBody"]["content"]["application/json"]["example"];
        parse(example).unwrap();
        let bulk =
            &spec["paths"]["/v1/screenshots/bulk"]["post"]["requestBody"]["content"]["application/json"]["example"];
        let defaults = bulk["defaults"].as_object().unwrap();
        for item in bulk["urls"].as_array().unwrap() {
            let mut body = Value::Object(defaults.clone());
            body.as_object_mut().unwrap().extend(item["options"].as_object().cloned().unwrap_or_default());
            body["url"] = item["url"].clone();
            parse(&body).unwrap();
        }
    }

    #[test]
    fn errors_are_only_those_each_operation_can_answer() {
        let spec = spec();
        let statuses = |path: &str, method: &str| -> Vec<String> {
            spec["paths"][path][method]["responses"].as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(statuses("/v1/screenshots/async", "post"), ["202", "400", "401", "409", "413", "429", "500", "503"]);
        assert_eq!(statuses("/v1/usage", "get"), ["200", "401", "500", "503"]);
        assert_eq!(statuses("/v1/screenshots/jobs/{jobId}", "get"), ["200", "400", "401", "404", "500", "503"]);
        assert!(!statuses("/v1/screenshots/jobs", "get").contains(&"404".to_string()));
        let result = &spec["paths"]["/v1/screenshots/jobs/{jobId}/result"]["get"]["responses"]["200"]["content"];
        assert_eq!(result.as_object().unwrap().keys().collect::<Vec<_>>(), ["application/octet-stream"]);
    }
}
