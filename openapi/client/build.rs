//! Generates the client from the committed spec at build time, so that `cargo build -p
//! pgshot-client` is the one command that regenerates it.
//!
//! progenitor parses any response that offers `application/json` as JSON. The result operations
//! answer raw bytes (with the output's own content type) unless the job asked for base64 JSON,
//! so for the client their JSON alternative is dropped: it returns the bytes, and a caller that
//! asked for BASE64 parses them.

use std::path::Path;

const RESULT_OPERATIONS: &[&str] = &["getJobResult", "getJobOutput", "captureScreenshot"];

fn main() {
    let spec_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi.json");
    println!("cargo:rerun-if-changed={}", spec_path.display());
    let text = std::fs::read_to_string(&spec_path).expect("read openapi/openapi.json");
    let mut spec: openapiv3::OpenAPI = serde_json::from_str(&text).expect("openapi/openapi.json is OpenAPI 3.0");
    for (_, item) in spec.paths.paths.iter_mut() {
        let openapiv3::ReferenceOr::Item(item) = item else { continue };
        let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for op in ops.into_iter().flatten() {
            if !op.operation_id.as_deref().is_some_and(|id| RESULT_OPERATIONS.contains(&id)) {
                continue;
            }
            for (_, response) in op.responses.responses.iter_mut() {
                if let openapiv3::ReferenceOr::Item(response) = response {
                    let is_error = response.content.get("application/json").is_some_and(|m| {
                        matches!(&m.schema, Some(openapiv3::ReferenceOr::Reference { reference }) if reference.ends_with("/ErrorBody"))
                    });
                    if !is_error {
                        response.content.shift_remove("application/json");
                    }
                }
            }
        }
    }
    let mut settings = progenitor::GenerationSettings::default();
    settings.with_interface(progenitor::InterfaceStyle::Builder).with_tag(progenitor::TagStyle::Separate);
    let mut generator = progenitor::Generator::new(&settings);
    let tokens = generator.generate_tokens(&spec).expect("progenitor generates the client");
    let file = syn::parse2(tokens).expect("generated code parses");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("client.rs");
    std::fs::write(out, prettyplease::unparse(&file)).expect("write the generated client");
}
