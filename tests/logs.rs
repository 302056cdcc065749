//! `tierdex serve`'s log as a log shipper gets it: stderr into a file. Text mode writes no ANSI
//! colour code there; `log_format = "json"` (from the settings file, as from the flag or
//! TIERDEX_LOG_FORMAT) writes one JSON object per line; a bad format stops the node, named.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `tierdex serve <args>` serving CACM from `store` with stderr into `log`, stopped with SIGTERM
/// once its cold tier serves; returns the log.
fn serve_until_ready(store: &Path, log: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let data = tempfile::tempdir().unwrap();
    let mut child: Child = tierdex_bin()
        .args(["serve", "--index", "cacm", "--listen", "127.0.0.1:0"])
        .arg("--store")
        .arg(store)
        .arg("--data-dir")
        .arg(data.path())
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("cold tier serving") {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("tierdex serve exited ({status}): {text}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tierdex serve never served the cold tier: {text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: a plain signal to the child process started above.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    assert!(child.wait().unwrap().success());
    std::fs::read_to_string(log).unwrap()
}

#[test]
fn the_log_in_a_file_has_no_colour_codes_and_json_is_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    tokio::runtime::Runtime::new().unwrap().block_on(build_cacm(
        local_store(&store),
        "hot = [\"citations >= 1\"]",
        "cacm",
    ));

    let text = serve_until_ready(&store, &dir.path().join("text.log"), &[], &[]);
    assert!(!text.contains('\u{1b}'), "ANSI codes in a file:\n{text}");
    assert!(text.contains("serving gRPC"), "{text}");
    assert!(text.contains("shutting down"), "{text}");

    // From the settings file: the node reads it before logging starts.
    let settings = dir.path().join("node.toml");
    std::fs::write(&settings, "log_format = \"json\"\n").unwrap();
    let json = serve_until_ready(
        &store,
        &dir.path().join("json.log"),
        &["--config", settings.to_str().unwrap()],
        &[],
    );
    assert!(!json.contains('\u{1b}'), "ANSI codes in JSON:\n{json}");
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
        })
        .collect();
    for line in &lines {
        assert!(
            line["timestamp"].is_string()
                && line["level"].is_string()
                && line["message"].is_string(),
            "{line}"
        );
    }
    let serving = lines
        .iter()
        .find(|line| line["message"] == "serving gRPC")
        .expect("the listener's line");
    // Fields are their own keys, not text inside the message.
    assert_eq!(serving["tls"], false, "{serving}");
    assert!(
        lines.iter().any(|line| line["message"] == "shutting down"),
        "{json}"
    );

    // A format that does not exist stops the node at once, named.
    let output = tierdex_bin()
        .args(["serve", "--index", "cacm", "--data-dir", "/nonexistent"])
        .arg("--store")
        .arg(&store)
        .env("TIERDEX_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("log_format") && stderr.contains("`xml`"),
        "{stderr}"
    );
}
