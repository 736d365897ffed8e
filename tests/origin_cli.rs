//! The real `tranzcast origin` process: upload with `ingest --origin`, play
//! the uploaded title, `ticket inspect`, and a graceful stop on SIGTERM.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;

const TOKEN: &str = "cli-storefront-token-0123456789";

struct OriginProcess {
    child: Child,
    port: u16,
    ca: std::path::PathBuf,
}

fn start_origin(data: &std::path::Path) -> OriginProcess {
    let mut child = Command::new(bin())
        .args(["origin", "--set", &format!("data_dir={}", data.display()), "--set", &format!("storefront_token={TOKEN}")])
        .args(["--set", "cluster_token=cli-cluster-token-0123456789", "--set", "listen.https=127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    let port = line
        .split("https://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    std::thread::spawn(move || for _ in lines {});
    OriginProcess { child, port, ca: data.join("tls/ca.pem") }
}

#[test]
fn upload_play_inspect_and_graceful_stop() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("movie.bin");
    random_file(&input, 700_000, "upload");
    let mut o = start_origin(&dir.path().join("origin"));
    let url = format!("https://localhost:{}", o.port);
    let (i, ca) = (input.to_str().unwrap(), o.ca.to_str().unwrap());

    let r = json(&ok(&[
        "ingest",
        i,
        "--origin",
        &url,
        "--token",
        TOKEN,
        "--ca",
        ca,
        "--title",
        "uploaded",
        "--segment-size",
        "262144",
        "--json",
    ]));
    assert_eq!(r["segments"], 3);
    let err = fails(&["ingest", i, "--origin", &url, "--token", TOKEN, "--ca", ca, "--title", "uploaded"]);
    assert!(err.contains("already exists"), "{err}");
    let err = fails(&["ingest", i, "--origin", &url, "--token", "wrong-token-wrong-token-000", "--ca", ca, "--title", "other"]);
    assert!(err.contains("refused the storefront token"), "{err}");

    // Order and play the uploaded title; the certificate's K1 and the ticket's K2 decrypt it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ticket, play) = rt.block_on(async {
        let http = tranzcast_net::client::https(&std::fs::read(&o.ca).unwrap()).unwrap();
        let post = |p: &str, b: serde_json::Value| http.post(format!("{url}{p}")).bearer_auth(TOKEN).json(&b).send();
        let c: serde_json::Value = post("/v1/customers", serde_json::json!({"name": "Grace"})).await.unwrap().json().await.unwrap();
        let t: serde_json::Value =
            post("/v1/orders", serde_json::json!({"customer": c["customer"], "title": "uploaded", "kind": "rent", "plays": 2, "hours": 2}))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        let ticket = t["ticket"].as_str().unwrap().to_string();
        let p: serde_json::Value =
            http.post(format!("{url}/v1/play")).json(&serde_json::json!({"ticket": ticket})).send().await.unwrap().json().await.unwrap();
        (ticket, p)
    });
    assert!(play["certificate"].is_string(), "{play}");
    assert!(play["ticket"].is_string(), "a 2-play rental gets a replacement");

    // Offline inspection with the origin's key: valid; altered: refused with a non-zero exit.
    let key = rt.block_on(async {
        let http = tranzcast_net::client::https(&std::fs::read(&o.ca).unwrap()).unwrap();
        let v: serde_json::Value = http.get(format!("{url}/v1/origin-key")).send().await.unwrap().json().await.unwrap();
        v["ed25519"].as_str().unwrap().to_string()
    });
    let out = ok(&["ticket", "inspect", &ticket, "--origin-key", &key]);
    assert!(out.contains("\"play ticket\"") && out.contains("\"valid\"") && out.contains("\"uploaded\""), "{out}");
    let out = ok(&["ticket", "inspect", play["certificate"].as_str().unwrap(), "--origin-key", &key]);
    assert!(out.contains("validation certificate") && out.contains("\"valid\""), "{out}");
    // One character of the serial changed: decodes, but the signature fails.
    let mut altered = ticket.clone().into_bytes();
    altered[20] = if altered[20] == b'A' { b'B' } else { b'A' };
    let err = fails(&["ticket", "inspect", &String::from_utf8(altered).unwrap(), "--origin-key", &key]);
    assert!(err.contains("signature does not verify"), "{err}");
    // One character of the title changed to garbage: refused as malformed.
    let mut altered = ticket.clone().into_bytes();
    altered[100] = if altered[100] == b'_' { b'-' } else { b'_' };
    let err = fails(&["ticket", "inspect", &String::from_utf8(altered).unwrap(), "--origin-key", &key]);
    assert!(err.contains("not a ticket or certificate") || err.contains("signature does not verify"), "{err}");
    let err = fails(&["ticket", "inspect", "not-a-ticket"]);
    assert!(err.contains("not a ticket or certificate"), "{err}");

    // SIGTERM: drains and exits 0.
    let pid = o.child.id() as i32;
    let rc = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(rc.success());
    let status = o.child.wait().unwrap();
    assert!(status.success(), "origin exited with {status}");
}
