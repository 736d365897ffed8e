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
    start_origin_with(data, &[])
}

fn start_origin_with(data: &std::path::Path, sets: &[&str]) -> OriginProcess {
    let mut child = Command::new(bin())
        .args(["origin", "--set", &format!("data_dir={}", data.display()), "--set", &format!("storefront_token={TOKEN}")])
        .args(["--set", "cluster_token=cli-cluster-token-0123456789", "--set", "listen.https=127.0.0.1:0"])
        .args(["--set", "member_key=cli-member-key-0123456789-0123456789"])
        .args(sets.iter().flat_map(|s| ["--set", s]))
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
    let (dir, input) = dir_with_input("movie.bin", 700_000, "upload");
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
    signal(&o.child, "-TERM");
    let status = o.child.wait().unwrap();
    assert!(status.success(), "origin exited with {status}");
}

/// The origin's money decisions are durable once answered: SIGKILL (no
/// drain, no flush) right after a granted play, a revocation and an order,
/// then a restart on the same data directory.
#[test]
fn a_play_a_revocation_and_an_order_survive_sigkill() {
    use std::os::unix::process::ExitStatusExt;
    let (dir, input) = dir_with_input("movie.bin", 300_000, "kill");
    let data = dir.path().join("origin");
    let mut o = start_origin(&data);
    let url = format!("https://localhost:{}", o.port);
    let (i, ca) = (input.to_str().unwrap(), o.ca.to_str().unwrap());
    ok(&["ingest", i, "--origin", &url, "--token", TOKEN, "--ca", ca, "--title", "kept", "--segment-size", "262144"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = tranzcast_net::client::https(&std::fs::read(&o.ca).unwrap()).unwrap();
    let post = |base: String, p: &'static str, b: serde_json::Value, key: Option<&'static str>| {
        let mut r = http.post(format!("{base}{p}")).bearer_auth(TOKEN).json(&b);
        if let Some(k) = key {
            r = r.header("idempotency-key", k);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (spent, revoked, order, customer) = rt.block_on(async {
        let (_, c) = post(url.clone(), "/v1/customers", serde_json::json!({"name": "Kim"}), None).await;
        let rent = |plays: u32| serde_json::json!({"customer": c["customer"], "title": "kept", "kind": "rent", "plays": plays, "hours": 1});
        let (_, a) = post(url.clone(), "/v1/orders", rent(1), None).await;
        let (s, p) = post(url.clone(), "/v1/play", serde_json::json!({"ticket": a["ticket"]}), None).await;
        assert_eq!(s, 200, "{p}");
        let (_, b) = post(url.clone(), "/v1/orders", rent(2), None).await;
        let (s, v) = post(url.clone(), "/v1/revoke", serde_json::json!({"ticket": b["ticket"]}), None).await;
        assert_eq!(s, 200, "{v}");
        let buy = serde_json::json!({"customer": c["customer"], "title": "kept", "kind": "buy"});
        let (s, order) = post(url.clone(), "/v1/orders", buy, Some("kill-order-1")).await;
        assert_eq!(s, 201, "{order}");
        (a["ticket"].as_str().unwrap().to_string(), b, order, c["customer"].clone())
    });
    // Killed the moment the last answer is in: nothing drains, nothing flushes.
    o.child.kill().unwrap();
    let status = o.child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status}");

    let o2 = start_origin(&data);
    let url = format!("https://localhost:{}", o2.port);
    rt.block_on(async {
        let (s, v) = post(url.clone(), "/v1/play", serde_json::json!({"ticket": spent}), None).await;
        assert_eq!((s, v["error"]["code"].as_str()), (403, Some("spent")), "{v}");
        let (s, v) = post(url.clone(), "/v1/play", serde_json::json!({"ticket": revoked["ticket"]}), None).await;
        assert_eq!((s, v["error"]["code"].as_str()), (403, Some("revoked")), "{v}");
        let list: serde_json::Value = http.get(format!("{url}/v1/revocations")).send().await.unwrap().json().await.unwrap();
        assert!(list["revoked"].as_array().unwrap().iter().any(|e| e["serial"] == revoked["serial"]), "{list}");
        // The order exists: its key gives it back, and its ticket plays.
        let buy = serde_json::json!({"customer": customer, "title": "kept", "kind": "buy"});
        let (s, again) = post(url.clone(), "/v1/orders", buy, Some("kill-order-1")).await;
        assert_eq!((s, &again["order"], &again["ticket"]), (201, &order["order"], &order["ticket"]), "{again}");
        let (s, p) = post(url.clone(), "/v1/play", serde_json::json!({"ticket": order["ticket"]}), None).await;
        assert_eq!(s, 200, "{p}");
    });
    let mut child = o2.child;
    child.kill().unwrap();
    let _ = child.wait();
}

/// Plays answered are durable (the group commit answers only after its WAL
/// sync): an origin SIGKILLed among hundreds of concurrent plays, restarted,
/// refuses every ticket it granted before as spent, and never forgets one.
#[test]
fn a_play_answered_before_a_sigkill_stays_spent_after_the_restart() {
    let (dir, input) = dir_with_input("film.bin", 300_000, "kill");
    let data = dir.path().join("origin");
    ok(&["ingest", input.to_str().unwrap(), "--data", data.to_str().unwrap(), "--title", "film"]);
    let rates = [
        "rate.play_per_s=100000",
        "rate.play_burst=100000",
        "rate.storefront_per_s=100000",
        "rate.storefront_burst=100000",
        "limits.max_connections_per_ip=16384",
        "limits.connection_rate_per_ip=100000",
    ];
    let mut o = start_origin_with(&data, &rates);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = tranzcast_net::client::https(&std::fs::read(&o.ca).unwrap()).unwrap();
    let url = format!("https://localhost:{}", o.port);
    let client = tranzcast_testkit::OriginClient::new(&http, &url).with_storefront(TOKEN);
    const N: usize = 400;
    let tickets: Vec<String> = rt.block_on(async {
        let c = client.customer().await;
        let mut t = Vec::new();
        for _ in 0..N {
            t.push(client.order(&tranzcast_proto::api::OrderBody::rent(c, "film", 1, 1)).await.0);
        }
        t
    });
    // Every play at once; the kill lands once a fifth were answered.
    let granted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let outcomes: Vec<(usize, bool)> = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, t) in tickets.iter().cloned().enumerate() {
            let (client, granted) = (client.clone(), granted.clone());
            tasks.spawn(async move {
                let r = tokio::time::timeout(std::time::Duration::from_secs(20), client.play_or_cut(&t)).await;
                let ok = matches!(r, Ok(Ok(200)));
                if ok {
                    granted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                (i, ok)
            });
        }
        while granted.load(std::sync::atomic::Ordering::Relaxed) < N / 5 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        o.child.kill().unwrap();
        let mut out = Vec::new();
        while let Some(r) = tasks.join_next().await {
            out.push(r.unwrap());
        }
        out
    });
    let _ = o.child.wait();
    let answered: Vec<usize> = outcomes.iter().filter(|(_, ok)| *ok).map(|(i, _)| *i).collect();
    eprintln!("{} of {N} plays answered before the SIGKILL", answered.len());
    assert!(answered.len() >= N / 5 && answered.len() < N, "the kill landed mid-run: {} answered", answered.len());
    // Restarted on the same data: every answered play's ticket is spent.
    let o = start_origin_with(&data, &rates);
    let url = format!("https://localhost:{}", o.port);
    let client = tranzcast_testkit::OriginClient::new(&http, &url).with_storefront(TOKEN);
    rt.block_on(async {
        for &i in &answered {
            assert_eq!(client.play(&tickets[i]).await.unwrap_err(), (403, "spent".to_string()), "ticket {i} was granted before the kill");
        }
        // The others: granted now (their play never committed) or spent (it committed, its answer was cut).
        for (i, _) in outcomes.iter().filter(|(_, ok)| !*ok) {
            match client.play(&tickets[*i]).await {
                Ok(_) => {}
                Err((403, code)) => assert_eq!(code, "spent", "ticket {i}"),
                Err(other) => panic!("ticket {i}: {other:?}"),
            }
        }
    });
    let mut o = o;
    let _ = o.child.kill();
    let _ = o.child.wait();
}

/// Two `tranzcast origin` processes on one PostgreSQL (started by the
/// test): a thousand concurrent plays of one single-play ticket, spread over
/// both processes, give exactly one certificate.
#[test]
fn two_origin_processes_on_one_postgres_grant_a_single_play_ticket_once() {
    let pg = tranzcast_testkit::Postgres::start();
    let url = pg.database("processes");
    let (dir, input) = dir_with_input("film.bin", 300_000, "two");
    let (a_data, b_data) = (dir.path().join("a"), dir.path().join("b"));
    ok(&["ingest", input.to_str().unwrap(), "--data", a_data.to_str().unwrap(), "--title", "film"]);
    let kek = dir.path().join("kek.hex");
    std::fs::write(&kek, "5e".repeat(32)).unwrap();
    let (state_url, kek_file) = (format!("state.url={url}"), format!("keys.kek_file={}", kek.display()));
    // One test address asking a thousand times at once.
    let sets = [
        "state.backend=postgres",
        &state_url,
        &kek_file,
        "rate.play_per_s=100000",
        "rate.play_burst=100000",
        "limits.max_connections_per_ip=16384",
        "limits.connection_rate_per_ip=100000",
    ];
    let mut a = start_origin_with(&a_data, &sets);
    // B: an empty store with A's CA (one cluster, one CA).
    drop(tranzcast_store::BlobStore::open(&b_data, tranzcast_store::StoreOptions { create: true, ..Default::default() }).unwrap());
    std::fs::create_dir_all(b_data.join("tls")).unwrap();
    for f in ["ca.pem", "ca.key"] {
        std::fs::copy(a_data.join("tls").join(f), b_data.join("tls").join(f)).unwrap();
    }
    let mut b = start_origin_with(&b_data, &sets);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = tranzcast_net::client::https(&std::fs::read(&a.ca).unwrap()).unwrap();
    let clients =
        [a.port, b.port].map(|p| tranzcast_testkit::OriginClient::new(&http, &format!("https://localhost:{p}")).with_storefront(TOKEN));
    let (granted, spent) = rt.block_on(async {
        let (ticket, _) = clients[1].rent("film", 1).await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..1000 {
            let (c, t) = (clients[i % 2].clone(), ticket.clone());
            tasks.spawn(async move { c.play(&t).await });
        }
        let (mut granted, mut spent) = (0, 0);
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Ok(_) => granted += 1,
                Err((403, code)) if code == "spent" => spent += 1,
                Err(other) => panic!("neither granted nor spent: {other:?}"),
            }
        }
        (granted, spent)
    });
    assert_eq!((granted, spent), (1, 999));
    for o in [&mut a, &mut b] {
        let _ = o.child.kill();
        let _ = o.child.wait();
    }
}

/// `tranzcast rekey`: the key-encryption key rotated with the origin
/// stopped. Every key (the origin's own store, the shared database's
/// signing key and title keys) is re-sealed under the new one: an origin
/// given the old KEK refuses to start, one given the new plays on, and a
/// second origin with an empty store opens the title key from the database.
/// A second run changes nothing; the same KEK as new is refused.
#[test]
fn rekey_reseals_every_key_under_the_new_kek_and_the_old_one_opens_nothing() {
    fn strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let pg = tranzcast_testkit::Postgres::start();
    let url = pg.database("rekey");
    let (dir, input) = dir_with_input("film.bin", 300_000, "rekey");
    let (a_data, b_data) = (dir.path().join("a"), dir.path().join("b"));
    ok(&["ingest", input.to_str().unwrap(), "--data", a_data.to_str().unwrap(), "--title", "film"]);
    let (old, new) = (dir.path().join("old.hex"), dir.path().join("new.hex"));
    std::fs::write(&old, "5e".repeat(32)).unwrap();
    std::fs::write(&new, "a7".repeat(32)).unwrap();
    let state_url = format!("state.url={url}");
    let with =
        |kek: &std::path::Path| vec!["state.backend=postgres".to_string(), state_url.clone(), format!("keys.kek_file={}", kek.display())];
    let mut a = start_origin_with(&a_data, &strs(&with(&old)));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = tranzcast_net::client::https(&std::fs::read(&a.ca).unwrap()).unwrap();
    let client = |port: u16| tranzcast_testkit::OriginClient::new(&http, &format!("https://localhost:{port}")).with_storefront(TOKEN);
    let ticket = rt.block_on(async {
        let (t, _) = client(a.port).rent("film", 3).await;
        client(a.port).play(&t).await.unwrap().ticket.expect("a replacement with plays left")
    });
    a.child.kill().unwrap();
    a.child.wait().unwrap();

    let rekey = |new_kek: &std::path::Path| {
        let mut args = vec!["rekey".to_string(), "--new-kek-file".into(), new_kek.display().to_string()];
        for s in [
            format!("data_dir={}", a_data.display()),
            format!("storefront_token={TOKEN}"),
            "cluster_token=cli-cluster-token-0123456789".into(),
            "member_key=cli-member-key-0123456789-0123456789".into(),
        ]
        .into_iter()
        .chain(with(&old))
        {
            args.extend(["--set".into(), s]);
        }
        args
    };
    let same = rekey(&old);
    assert!(fails(&strs(&same)).contains("is the current one"));
    let out = ok(&strs(&rekey(&new)));
    assert!(out.contains("re-sealed 2 key(s)") && out.contains("and 3 value(s) in the shared database"), "{out}");
    // Run again (as after a run that stopped half-way): everything is
    // already under the new key, nothing changes.
    let again = ok(&strs(&rekey(&new)));
    assert!(again.contains("re-sealed 0 key(s)") && again.contains("and 0 value(s)"), "{again}");

    // The old KEK opens nothing any more: the origin refuses to start.
    let mut refused = Command::new(bin())
        .args(["origin", "--set", &format!("data_dir={}", a_data.display()), "--set", &format!("storefront_token={TOKEN}")])
        .args(["--set", "cluster_token=cli-cluster-token-0123456789", "--set", "listen.https=127.0.0.1:0"])
        .args(["--set", "member_key=cli-member-key-0123456789-0123456789"])
        .args(with(&old).iter().flat_map(|s| ["--set".to_string(), s.clone()]))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = refused.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = refused.kill();
            panic!("an origin given the old KEK after the rekey did not refuse to start");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut refused.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success() && err.contains("key-encryption key"), "{status}: {err}");

    // The new one: A plays on; B (an empty store) opens the title key from the database.
    let mut a = start_origin_with(&a_data, &strs(&with(&new)));
    drop(tranzcast_store::BlobStore::open(&b_data, tranzcast_store::StoreOptions { create: true, ..Default::default() }).unwrap());
    std::fs::create_dir_all(b_data.join("tls")).unwrap();
    for f in ["ca.pem", "ca.key"] {
        std::fs::copy(a_data.join("tls").join(f), b_data.join("tls").join(f)).unwrap();
    }
    let mut b = start_origin_with(&b_data, &strs(&with(&new)));
    rt.block_on(async {
        let next = client(a.port).play(&ticket).await.unwrap().ticket.expect("one play left");
        client(b.port).play(&next).await.unwrap();
        assert_eq!(client(a.port).play(&next).await.unwrap_err(), (403, "spent".to_string()));
    });
    for o in [&mut a, &mut b] {
        let _ = o.child.kill();
        let _ = o.child.wait();
    }
}
