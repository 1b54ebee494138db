//! The document converter as the worker runs it: this crate's binary, as
//! `pgshot-worker convert-document KIND URL`, HTML on standard input.

use std::io::Write;
use std::process::{Command, Stdio};

fn convert(kind: &str, html: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgshot-worker"))
        .args(["convert-document", kind, "https://example.com/post"])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(html.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn nested(depth: usize) -> String {
    format!("{}deep{}", "<div>".repeat(depth), "</div>".repeat(depth))
}

#[test]
fn converts_on_standard_output() {
    let (code, out, err) = convert("markdown", "<h1>Title</h1><p>Some <b>bold</b> text.</p>");
    assert_eq!((code, out.as_str()), (Some(0), "# Title\n\nSome **bold** text."), "{err}");
    let (code, out, _) = convert("markdown", &nested(512));
    assert_eq!((code, out.trim()), (Some(0), "deep"));
}

#[test]
fn refuses_a_document_nested_too_deep_with_its_own_exit_code() {
    // 100,000 levels: converted, they overflow even the converter's 64 MiB stack.
    for kind in ["markdown", "main-markdown", "main-text", "main-content"] {
        let (code, out, err) = convert(kind, &nested(100_000));
        assert_eq!(code, Some(10), "{kind}: {err}");
        assert!(out.is_empty() && err.contains("512"), "{kind}: {err}");
    }
}

#[test]
fn a_conversion_that_fails_says_why_with_its_own_exit_code() {
    let (code, _, err) = convert("main-text", "<html><body></body></html>");
    assert_eq!(code, Some(11), "{err}");
    assert!(!err.is_empty());
    let (code, _, err) = convert("no-such-kind", "<p>x</p>");
    assert_eq!(code, Some(2), "{err}");
}
