//! The smart client against a real cluster on 127.0.0.1 (origin, nodes, an
//! edge, a lying node): byte-identical playback drawing on several sources,
//! the liar caught at its first lie, and a 2-play rental that plays twice
//! and is then refused with a clear message.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use tranzcast_client::{ClientError, OpenOptions, Session};
use tranzcast_edge::{EdgeServer, EdgeTls};
use tranzcast_origin::Origin;

use tranzcast_testkit::*;

/// A 1-customer rental of `film` with `plays` plays: the ticket.
async fn rent_film(http: &reqwest::Client, origin: &str, plays: u32) -> String {
    rent(http, origin, "film", plays).await.0
}

/// `film` of `mib` MiB staged on one node, and a session on a 1-play
/// rental of it fetching `parallel` segments at once.
async fn one_node(mib: u32, parallel: usize) -> (TestCluster, EdgeServer, Arc<Session>) {
    let c = TestCluster::start(mib).await;
    let node = c.server(&c.spec("node", "node-1")).await;
    wait_staged(&c.origin, &["node-1"]).await;
    let ticket = rent_film(&c.http, &c.origin_url, 1).await;
    let opts = OpenOptions { origin: c.origin_url.clone(), ticket, ca_pem: c.tls.ca_pem.clone(), parallel, local: None };
    let session = Arc::new(Session::open(opts).await.unwrap());
    (c, node, session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plays_byte_identical_from_many_sources_twice_then_refused() {
    let dir = tempfile::tempdir().unwrap();
    // 12 segments: with 6, a play decided by which racer won left one of the
    // three honest sources without a segment of its own in 3 runs of 10.
    let _ = setup_sized(dir.path(), 12);
    let input = std::fs::read(dir.path().join("film.bin")).unwrap();
    let origin = Origin::start(origin_config(&dir.path().join("origin"), 0)).await.unwrap();
    let oport = origin.https_addr().port();
    let origin_url = format!("https://localhost:{oport}");
    let tls = EdgeTls::from_config(&EdgeSpec::new("node", "x", dir.path(), oport).config(), &origin.ca_dir()).unwrap();
    // Honest servers send at most 2 MiB/s each, as busy servers would: one
    // source cannot carry the playback alone, and the client must spread it.
    let slow = |role: &str, name: &str, data: &str, parents: &[String], corrupt: bool| {
        EdgeSpec::new(role, name, &dir.path().join(data), oport)
            .parents(parents)
            .corrupt(corrupt)
            .mirroring()
            .sets(&["rate_limit=2MiB"])
            .config()
    };
    let n1 = EdgeServer::start(slow("node", "node-1", "n1", &[], false), tls.clone()).await.unwrap();
    let n2 = EdgeServer::start(slow("node", "node-2", "n2", &[], false), tls.clone()).await.unwrap();
    let liar = EdgeServer::start(EdgeSpec::new("node", "liar", &dir.path().join("liar"), oport).corrupt(true).config(), tls.clone())
        .await
        .unwrap();
    wait_staged(&origin, &["node-1", "node-2", "liar"]).await;
    let n1_url = format!("https://localhost:{}", n1.https_addr().port());
    let edge = EdgeServer::start(slow("edge", "edge-1", "e1", &[n1_url], false), tls.clone()).await.unwrap();
    let http = tranzcast_net::client::https(tls.ca_pem.as_bytes()).unwrap();
    let ticket = rent_film(&http, &origin_url, 2).await;
    let open = |ticket: String| {
        Session::open(OpenOptions { origin: origin_url.clone(), ticket, ca_pem: tls.ca_pem.clone(), parallel: 4, local: None })
    };

    // First play: byte-identical, from at least three sources, the liar caught.
    let s = Arc::new(open(ticket.clone()).await.unwrap());
    let names: Vec<&str> = s.sources().iter().map(|s| s.name.as_str()).collect();
    for n in ["node-1", "node-2", "liar", "edge-1"] {
        assert!(names.contains(&n), "{n} not among the sources: {names:?}");
    }
    let mut events = s.events();
    let mut out = Vec::new();
    let report = s.play_to(&mut out).await.unwrap();
    assert!(out == input, "playback differs from the input");
    // The first segment was asked of two sources at once.
    let mut raced = None;
    while let Ok(e) = events.try_recv() {
        if let tranzcast_client::Event::Race { index, between } = e {
            raced = Some((index, between));
        }
    }
    let (index, between) = raced.expect("no race for the first segment");
    assert_eq!(index, 0);
    assert!(between.len() >= 2 && between[0] != between[1], "{between:?}");
    assert_eq!(report.bytes, input.len() as u64);
    assert_eq!(report.by_source.values().sum::<u64>(), input.len() as u64);
    // The liar is caught at its first lie; verified groups it sent before
    // that (a stripe of the first segment's race, say) are as good as any.
    assert!(report.demoted.contains(&"liar".to_string()), "the liar was not caught: {report:?}");
    assert!(report.by_source.len() >= 3, "one source did all the work: {report:?}");
    let next = s.replacement_ticket().expect("a 2-play rental is replaced after its first play").to_string();

    // Second play with the replacement: identical again, and no further replacement.
    let s2 = Arc::new(open(next.clone()).await.unwrap());
    assert!(s2.replacement_ticket().is_none(), "the last play has no replacement");
    let mut out2 = Vec::new();
    s2.play_to(&mut out2).await.unwrap();
    assert!(out2 == input);

    // Then both tickets are refused, each with its reason.
    for (t, code) in [(next, "spent"), (ticket, "replaced")] {
        match open(t).await {
            Err(ClientError::Refused { code: c, reason }) => {
                assert_eq!(c, code, "{reason}");
                assert!(!reason.is_empty());
            }
            other => panic!("expected a refusal ({code}), got {other:?}"),
        }
    }
    edge.shutdown().await;
    for n in [n1, n2, liar] {
        n.shutdown().await;
    }
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_segment_from_three_sources_a_liar_caught_within_a_group_a_slow_one_left() {
    use tranzcast_client::Event;
    // Unpulsed sources tie, so names set the order: the liar is asked
    // first, then the slow one, then the fast one.
    let cluster = limited_cluster(3, &[("a-liar", LIAR), ("a-slow", "512KiB"), ("b-fast", UNLIMITED)], 1).await;
    let (session, input) = (&cluster.session, &cluster.input);
    let mut events = session.events();
    let (plain, source) = session.segment(2).await.unwrap();
    assert!(plain[..] == input[2 << 20..3 << 20], "segment 2 differs");
    assert_eq!(source, "b-fast", "the fast source finished it");
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    // The liar flips a byte in the middle of the blob: caught at the group
    // holding it, with the groups before it kept.
    let lie = seen
        .iter()
        .find_map(|e| match e {
            Event::Demoted { source, reason } if source == "a-liar" => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the liar was not demoted: {seen:?}"));
    assert!(lie.contains("bad bytes after byte 524288"), "{lie}");
    let resumed: Vec<(String, u64)> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Resumed { index: 2, source, at } => Some((source.clone(), *at)),
            _ => None,
        })
        .collect();
    assert_eq!(resumed.first(), Some(&("a-slow".to_string(), 524_288)), "{seen:?}");
    // The slow source is left mid-segment, not demoted; the fast one takes
    // the rest by range from where it stopped.
    let switched = seen
        .iter()
        .find_map(|e| match e {
            Event::Switched { index: 2, source, at, .. } if source == "a-slow" => Some(*at),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the slow source was not left: {seen:?}"));
    assert!(switched > 524_288 && switched < 1 << 20, "left at {switched}");
    assert_eq!(resumed.get(1), Some(&("b-fast".to_string(), switched)), "{seen:?}");
    assert!(!seen.iter().any(|e| matches!(e, Event::Demoted { source, .. } if source != "a-liar")), "{seen:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_gateway_answers_ranges_byte_exact() {
    let (TestCluster { dir, origin, input, tls, .. }, node, session) = one_node(4, 2).await;
    // Ready once the first two segments are in hand.
    session.ready(0, 2).await.unwrap();
    let g = tranzcast_client::Gateway::start(session.clone(), "127.0.0.1:0".parse().unwrap(), &dir.path().join("gw")).await.unwrap();
    let url = format!("http://{}/film.bin", g.addr);
    let plain = tranzcast_net::client::https(tls.ca_pem.as_bytes()).unwrap(); // speaks plain http too
    let len = input.len();
    for (range, want) in [
        (None, &input[..]),
        (Some("bytes=1048570-1048600".to_string()), &input[1048570..1048601]), // across a segment boundary
        (Some("bytes=-1000".to_string()), &input[len - 1000..]),
        (Some(format!("bytes={}-", len / 2)), &input[len / 2..]),
    ] {
        let mut r = plain.get(&url);
        if let Some(h) = &range {
            r = r.header("range", h);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), if range.is_some() { 206 } else { 200 }, "{range:?}");
        assert!(resp.bytes().await.unwrap()[..] == *want, "{range:?}");
    }
    let r = plain.get(&url).header("range", format!("bytes={len}-")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 416);
    assert_eq!(plain.get(format!("http://{}/other", g.addr)).send().await.unwrap().status().as_u16(), 404);
    g.shutdown().await;
    node.shutdown().await;
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_an_edge_and_a_node_killed_mid_playback_and_a_lying_peer() {
    let TestCluster { dir, origin, oport, origin_url, tls, input, .. } = TestCluster::start_with(12, &precast_now(2)).await;
    // Every server sends at most 4 MiB/s, so the playback lasts long enough to kill things in the middle.
    let slow = ["rate_limit=4MiB"];
    let server = |role: &'static str, name: &'static str, parents: Vec<String>, extra: Vec<String>| {
        let mut sets: Vec<&str> = slow.to_vec();
        sets.extend(extra.iter().map(String::as_str));
        EdgeSpec::new(role, name, &dir.path().join(name), oport).parents(&parents).mirroring().sets(&sets).config()
    };
    let n1 = EdgeServer::start(server("node", "node-1", vec![], vec![]), tls.clone()).await.unwrap();
    let n2 = EdgeServer::start(server("node", "node-2", vec![], vec![]), tls.clone()).await.unwrap();
    wait_staged(&origin, &["node-1", "node-2"]).await;
    let url = |s: &EdgeServer| format!("https://localhost:{}", s.https_addr().port());
    let e1 = EdgeServer::start(server("edge", "edge-1", vec![url(&n1)], vec![]), tls.clone()).await.unwrap();
    let e2 = EdgeServer::start(server("edge", "edge-2", vec![url(&n2)], vec![]), tls.clone()).await.unwrap();
    // A peer that bought the title, got the first two segments pre-cast, and lies about them.
    let http = tranzcast_net::client::https(tls.ca_pem.as_bytes()).unwrap();
    let bought = {
        let t = rent_film(&http, &origin_url, 1).await;
        let v: serde_json::Value =
            http.post(format!("{origin_url}/v1/play")).json(&serde_json::json!({"ticket": t})).send().await.unwrap().json().await.unwrap();
        v["certificate"].as_str().unwrap().to_string()
    };
    let peer = EdgeServer::start(
        EdgeSpec::new("peer", "bad-peer", &dir.path().join("peer"), oport)
            .corrupt(true)
            .mirroring()
            .sets(&[&format!("certificate={bought}")])
            .config(),
        tls.clone(),
    )
    .await
    .unwrap();
    eventually(30, "pre-cast to the peer", || async {
        origin.precast_status().get("bad-peer").and_then(|t| t.get("film")).is_some_and(|p| p.complete)
    })
    .await;

    let ticket = rent_film(&http, &origin_url, 1).await;
    let s = Arc::new(
        Session::open(OpenOptions { origin: origin_url.clone(), ticket, ca_pem: tls.ca_pem.clone(), parallel: 3, local: None })
            .await
            .unwrap(),
    );
    let mut events = s.events();
    let player = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            let r = s.play_to(&mut out).await;
            (out, r)
        })
    };
    // Once segments are flowing, an edge and a node go away.
    let mut delivered_before = 0;
    while let Ok(e) = events.recv().await {
        if matches!(e, tranzcast_client::Event::Segment { .. }) {
            delivered_before += 1;
            if delivered_before == 2 {
                break;
            }
        }
    }
    // Killed as a crash would (connections cut, nothing drained), while
    // edge-1 has a response in hand for this client.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while e1.in_flight() == 0 {
        assert!(std::time::Instant::now() < deadline, "edge-1 never had a request in hand");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let in_hand = e1.in_flight();
    e1.kill().await;
    n1.kill().await;
    let (out, report) = player.await.unwrap();
    let report = report.unwrap();
    assert!(out == input, "playback differs from the input");
    assert!(delivered_before < 12 && in_hand > 0, "the kill was not mid-playback");
    let mut seen = Vec::new();
    loop {
        match events.try_recv() {
            Ok(e) => seen.push(e),
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => break,
        }
    }
    // The client saw the cut: edge-1 failed mid-segment and was demoted or left.
    assert!(
        seen.iter().any(|e| matches!(e, tranzcast_client::Event::Demoted { source, .. } | tranzcast_client::Event::Switched { source, .. } if source == "edge-1")),
        "the kill did not cut a transfer from edge-1: {seen:?} {report:?}"
    );
    assert!(report.demoted.contains(&"bad-peer".to_string()), "the lying peer was not caught: {report:?}");
    // (It may be credited with a segment: groups it sent before its lie
    // were verified like any other, and the playback is byte-identical.)
    assert!(report.by_source.keys().any(|k| k == "node-2" || k == "edge-2"), "{report:?}");
    for srv in [e2, n2, peer] {
        srv.shutdown().await;
    }
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seek_fetches_the_middle_first_and_reads_byte_exact() {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let (TestCluster { origin, input, .. }, node, s) = one_node(16, 2).await;
    s.pulse().await;
    let mut events = s.events();
    let mut reader = s.stream(2);
    let mut head = vec![0u8; 1000];
    reader.read_exact(&mut head).await.unwrap();
    assert_eq!(head[..], input[..1000]);
    // Segment 0 and the window (1, 2) arrive.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        if let tranzcast_client::Event::Segment { index, .. } = events.recv().await.unwrap() {
            seen.push(index);
        }
    }
    seen.sort();
    assert_eq!(seen, vec![0, 1, 2]);
    // Seek to the middle (segment 8, 1 MiB segments) and read on: segment 8
    // comes first, then its window; nothing between 3 and 7 is fetched.
    let mid = (8u64 << 20) + 12_345;
    assert_eq!(reader.seek(std::io::SeekFrom::Start(mid)).await.unwrap(), mid);
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).await.unwrap();
    assert!(rest[..] == input[mid as usize..], "bytes after the seek differ");
    let mut order = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let tranzcast_client::Event::Segment { index, .. } = e {
            order.push(index);
        }
    }
    assert_eq!(order.first(), Some(&8), "the middle was not fetched first: {order:?}");
    assert!(order.iter().all(|i| *i >= 8), "segments before the seek target were fetched: {order:?}");
    let mut sorted = order.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, (8..16).collect::<Vec<_>>(), "{order:?}");
    // Back to the start: held in memory, byte-exact.
    reader.seek(std::io::SeekFrom::Start(10)).await.unwrap();
    let mut again = vec![0u8; 100];
    reader.read_exact(&mut again).await.unwrap();
    assert_eq!(again[..], input[10..110]);
    assert!(reader.seek(std::io::SeekFrom::Current(-1000)).await.is_err(), "seeking before the start is an error");
    node.shutdown().await;
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precast_segments_are_used_first_and_a_client_serves_what_it_played() {
    let TestCluster { dir, origin, oport, origin_url, tls, input, .. } = TestCluster::start_with(6, &precast_now(2)).await;
    // A busy node: 1 MiB/s.
    let node_cfg = EdgeSpec::new("node", "node-1", &dir.path().join("n1"), oport).mirroring().sets(&["rate_limit=1MiB"]).config();
    let node = EdgeServer::start(node_cfg, tls.clone()).await.unwrap();
    wait_staged(&origin, &["node-1"]).await;
    let http = tranzcast_net::client::https(tls.ca_pem.as_bytes()).unwrap();

    // Viewer A's client runs a peer service; the origin pre-casts it the first two segments.
    let ticket_a = rent_film(&http, &origin_url, 2).await;
    let cert_a = {
        let grant = OriginClient::new(&http, &origin_url).play(&ticket_a).await.unwrap();
        (grant.certificate, grant.ticket.unwrap_or_default())
    };
    let peer_cfg = EdgeSpec::new("peer", "viewer-a", &dir.path().join("viewer-a"), oport)
        .mirroring()
        .sets(&[&format!("certificate={}", cert_a.0)])
        .config();
    let peer_a = Arc::new(EdgeServer::start(peer_cfg, tls.clone()).await.unwrap());
    eventually(30, "pre-cast to viewer A", || async {
        origin.precast_status().get("viewer-a").and_then(|t| t.get("film")).is_some_and(|p| p.complete)
    })
    .await;
    let open = |ticket: String, local: Option<Arc<EdgeServer>>| {
        let local = local.map(|l| l as Arc<dyn tranzcast_client::PeerService>);
        Session::open(OpenOptions { origin: origin_url.clone(), ticket, ca_pem: tls.ca_pem.clone(), parallel: 2, local })
    };
    let sa = Arc::new(open(cert_a.1.clone(), Some(peer_a.clone())).await.unwrap());
    assert!(sa.sources().iter().all(|s| s.name != "viewer-a"), "a client does not fetch from itself over the network");
    let mut out = Vec::new();
    let ra = sa.play_to(&mut out).await.unwrap();
    assert!(out == input);
    assert_eq!(ra.by_source.get("local"), Some(&(2 << 20)), "the pre-cast segments were not used first: {ra:?}");
    // A kept what it played (ciphertext) and says so in its pulse.
    let peer_url = format!("https://localhost:{}", peer_a.https_addr().port());
    eventually(10, "viewer A to hold the whole title", || async {
        let p: serde_json::Value = http.get(format!("{peer_url}/v1/pulse?title=film")).send().await.unwrap().json().await.unwrap();
        p["segments"]["held"] == 6
    })
    .await;

    // Viewer B, no peer service of its own: A serves it, faster than the busy node.
    let sb = Arc::new(open(rent_film(&http, &origin_url, 1).await, None).await.unwrap());
    assert!(sb.sources().iter().any(|s| s.name == "viewer-a" && s.role == tranzcast_client::EdgeRole::Peer));
    let mut out = Vec::new();
    let rb = sb.play_to(&mut out).await.unwrap();
    assert!(out == input);
    assert!(rb.by_source.get("viewer-a").copied().unwrap_or(0) >= 3 << 20, "viewer A served little: {rb:?}");
    drop(sa);
    let peer_a = Arc::try_unwrap(peer_a).unwrap();
    peer_a.shutdown().await;
    node.shutdown().await;
    origin.shutdown().await;
}

/// An origin holding `film` (`mib` MiB) and nodes holding its complete
/// set, each with its own outgoing rate limit, and a session on a 1-play
/// rental of it.
struct LimitedCluster {
    _dir: tempfile::TempDir,
    input: Vec<u8>,
    origin: Origin,
    nodes: Vec<EdgeServer>,
    session: Arc<Session>,
}

/// A node's rate in [`limited_cluster`]: no limit.
const UNLIMITED: &str = "";
/// A node's rate in [`limited_cluster`]: no limit, and it flips a byte in
/// the middle of every blob it serves.
const LIAR: &str = "liar";

/// An origin, nodes holding the staged title (`mib` MiB, 1 MiB segments),
/// each sending at most its rate (or [`UNLIMITED`], or a [`LIAR`]), and a
/// session on a 1-play ticket that fetches `parallel` segments at once.
async fn limited_cluster(mib: u32, nodes: &[(&str, &str)], parallel: usize) -> LimitedCluster {
    let TestCluster { dir, origin, oport, tls, input, origin_url, .. } = TestCluster::start(mib).await;
    let mut servers = Vec::new();
    for &(name, rate) in nodes {
        let limit = format!("rate_limit={rate}");
        let extra: &[&str] = if rate == UNLIMITED || rate == LIAR { &[] } else { &[&limit] };
        let config = EdgeSpec::new("node", name, &dir.path().join(name), oport).corrupt(rate == LIAR).mirroring().sets(extra).config();
        servers.push(EdgeServer::start(config, tls.clone()).await.unwrap());
    }
    wait_staged(&origin, &nodes.iter().map(|n| n.0).collect::<Vec<_>>()).await;
    let http = tranzcast_net::client::https(tls.ca_pem.as_bytes()).unwrap();
    let ticket = rent_film(&http, &origin_url, 1).await;
    let session =
        Session::open(OpenOptions { origin: origin_url, ticket, ca_pem: tls.ca_pem.clone(), parallel, local: None }).await.unwrap();
    LimitedCluster { _dir: dir, input, origin, nodes: servers, session: Arc::new(session) }
}

impl LimitedCluster {
    /// Plays the title through the session: checked byte-identical, with
    /// every event of the playback.
    async fn play(&self) -> (tranzcast_client::PlayReport, Vec<tranzcast_client::Event>) {
        let mut events = self.session.events();
        let mut out = Vec::new();
        let report = self.session.play_to(&mut out).await.unwrap();
        assert!(out == self.input, "playback differs from the input");
        let mut all = Vec::new();
        while let Ok(e) = events.try_recv() {
            all.push(e);
        }
        (report, all)
    }

    async fn shutdown(self) {
        drop(self.session);
        for n in self.nodes {
            n.shutdown().await;
        }
        self.origin.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_liar_that_wins_the_race_is_caught_and_its_good_groups_are_kept() {
    use tranzcast_client::Event;
    // The liar is unlimited: it wins the first segment's striped race long
    // before the honest nodes (its stripe, the first quarter, holds no lie:
    // its lie is in the middle of each blob), and is the best source from
    // then on, until the first middle it serves.
    let cluster = limited_cluster(2, &[("a-liar", LIAR), ("b-node", "2MiB"), ("c-node", "2MiB")], 4).await;
    let (report, all) = cluster.play().await;
    assert!(all.iter().any(|e| matches!(e, Event::Race { index: 0, between } if between.iter().any(|b| b == "a-liar"))), "{all:?}");
    assert!(all.iter().any(|e| matches!(e, Event::Demoted { source, .. } if source == "a-liar")), "the liar was not caught: {all:?}");
    // The segment it lied in went on from its last good group (the one the
    // lie is in: 32 of 16 KiB) at an honest node: its good groups were kept.
    let resumed = all.iter().any(|e| matches!(e, Event::Resumed { source, at, .. } if source != "a-liar" && *at == 1 << 19));
    assert!(resumed, "no segment went on from the liar's last good group: {all:?} {report:?}");
    cluster.shutdown().await;
}
