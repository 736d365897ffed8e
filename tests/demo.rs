//! `tranzcast demo --serve --json`, the README's main command, as a user runs
//! it: a whole cluster on loopback plays the test clip through the smart
//! client byte-identical from several sources; `cluster.json` describes a
//! cluster that answers; Ctrl-C stops it cleanly with the JSON summary.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;

#[test]
fn demo_plays_through_the_cluster_and_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let child = common::spawn(&["demo", "--serve", "--json", "--data", data.to_str().unwrap()], Stdio::piped());
    let c = common::cluster_json(&data);
    for k in ["ca", "storefront_token", "origin", "nodes", "edges", "peers", "title", "input", "ticket", "certificate", "blob"] {
        assert!(!c[k].is_null(), "cluster.json lacks {k}: {c}");
    }
    assert_eq!(
        (c["nodes"].as_array().unwrap().len(), c["edges"].as_array().unwrap().len(), c["peers"].as_array().unwrap().len()),
        (2, 3, 2)
    );
    // The described cluster answers: a range of the sample blob from an edge, with the certificate.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, len) = rt.block_on(async {
        let http = tranzcast_net::client::https(&std::fs::read(c["ca"].as_str().unwrap()).unwrap()).unwrap();
        let r = http
            .get(format!("{}/v1/blobs/{}", c["edges"][2]["https"].as_str().unwrap(), c["blob"].as_str().unwrap()))
            .header("authorization", format!("Tranzcast {}", c["certificate"].as_str().unwrap()))
            .header("range", "bytes=0-99")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap().len())
    });
    assert_eq!((status, len), (206, 100));
    // `tranzcast play` with the described ticket: identical, from several sources; the ticket's
    // replacement plays once more; then the spent ticket is refused with a clear message.
    let input = std::fs::read(c["input"].as_str().unwrap()).unwrap();
    let out = dir.path().join("played-by-cli");
    let played = common::json(&common::ok(&play(&c, c["ticket"].as_str().unwrap(), &["--out", out.to_str().unwrap(), "--json"])));
    assert!(std::fs::read(&out).unwrap() == input);
    // How many sources an unthrottled loopback cluster's play draws on is up
    // to the scheduler (one fast node may carry it all); spreading over at
    // least three is shown where the sources are rate-limited, in
    // client-lib/tests/play.rs. Here: every byte is accounted to a source.
    let by_source = played["sources"].as_object().unwrap();
    assert!(!by_source.is_empty(), "{played}");
    assert_eq!(by_source.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), input.len() as u64, "{played}");
    let next = played["ticket"].as_str().unwrap().to_string();
    common::ok(&play(&c, &next, &["--out", out.to_str().unwrap()]));
    let err = common::fails(&play(&c, &next, &["--out", out.to_str().unwrap()]));
    assert!(err.contains("refused the ticket") && err.contains("spent"), "{err}");
    peer_serves_what_it_played(&c, &rt, dir.path(), &input);
    common::signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "demo failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["verified"], true, "{r}");
    assert_eq!(r["plaintext_at_rest"], serde_json::Value::Null);
    let input_len = std::fs::metadata(c["input"].as_str().unwrap()).unwrap().len();
    assert_eq!(r["bytes"].as_u64(), Some(input_len));
    let sources = r["sources"].as_object().unwrap();
    // As above: spreading is shown in client-lib/tests/play.rs.
    assert!(!sources.is_empty(), "no sources: {r}");
    assert_eq!(sources.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), input_len);
    assert!(r["startup_ms"].as_f64().unwrap() > 0.0);
    assert!(std::fs::read(data.join("played")).unwrap() == std::fs::read(c["input"].as_str().unwrap()).unwrap());
}

/// The arguments of `tranzcast play` against the described cluster with
/// `ticket`, then `more`.
fn play<'a>(c: &'a serde_json::Value, ticket: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["play", "--origin", c["origin"]["https"].as_str().unwrap(), "--ca", c["ca"].as_str().unwrap(), "--ticket", ticket];
    args.extend_from_slice(more);
    args
}

/// A bought ticket for the described cluster's title, from its storefront.
fn buy(c: &serde_json::Value, rt: &tokio::runtime::Runtime) -> String {
    let origin = c["origin"]["https"].as_str().unwrap();
    rt.block_on(async {
        let http = tranzcast_net::client::https(&std::fs::read(c["ca"].as_str().unwrap()).unwrap()).unwrap();
        let storefront = tranzcast_testkit::OriginClient::new(&http, origin).with_storefront(c["storefront_token"].as_str().unwrap());
        storefront.buy(c["title"].as_str().unwrap()).await
    })
}

/// `tranzcast play --peer`: the client serves what it played to other viewers
/// (it joins the cluster with its certificate), and a second viewer plays the
/// title from that peer alone, byte-identical; Ctrl-C stops the peer cleanly.
fn peer_serves_what_it_played(c: &serde_json::Value, rt: &tokio::runtime::Runtime, dir: &std::path::Path, input: &[u8]) {
    use std::io::BufRead;
    let out = dir.join("played-by-peer");
    let (ticket, cache) = (buy(c, rt), dir.join("peer-cache"));
    let more =
        ["--json", "--peer", "127.0.0.1:0", "--peer-name", "peer-cli", "--cache", cache.to_str().unwrap(), "--out", out.to_str().unwrap()];
    let mut peer = common::spawn(&play(c, &ticket, &more), Stdio::null());
    let mut line = String::new();
    std::io::BufReader::new(peer.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let played: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert!(std::fs::read(&out).unwrap() == input);
    assert_eq!(played["peer"]["name"], "peer-cli", "{played}");
    // The origin lists the new peer to the next viewer, who plays from it alone.
    let second = dir.join("played-from-peer");
    let ticket = buy(c, rt);
    let from_peer = common::json(&common::ok(&play(c, &ticket, &["--source", "peer-cli", "--json", "--out", second.to_str().unwrap()])));
    assert!(std::fs::read(&second).unwrap() == input);
    assert_eq!(from_peer["sources"]["peer-cli"].as_u64(), Some(input.len() as u64), "{from_peer}");
    common::signal(&peer, "-INT");
    assert!(peer.wait().unwrap().success());
}
