//! Several origins on one PostgreSQL (`state.backend = "postgres"`), each
//! a real origin on 127.0.0.1 over TLS, the database a private instance
//! started by the test: plays of one ticket spread over two origins are
//! granted exactly once; a rental's plays alternate between them and stop
//! at its count; a revocation made at one origin reaches an edge that
//! heartbeats to the other within a heartbeat; a title published through
//! one is played through the other; the keys rest sealed in the database.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use tranzcast_origin::Origin;
use tranzcast_testkit::*;

const KEK: &str = "8f1c2a7d4e9b3f60a5d7c8e1b2f3a4d5c6e7f8091a2b3c4d5e6f708192a3b4c5";

fn shared(dir: &Path, url: &str) -> Vec<String> {
    let kek = dir.join("kek.hex");
    std::fs::write(&kek, format!("{KEK}\n")).unwrap();
    vec![
        "state.backend=postgres".into(),
        format!("state.url={url}"),
        format!("keys.kek_file={}", kek.display()),
        // One test address plays as fast as it can.
        "rate.play_per_s=1000000".into(),
        "rate.play_burst=1000000".into(),
    ]
}

/// Origin A serves the ingested titles; origin B starts on an empty data
/// directory with A's CA (the cluster's servers trust one CA), and learns
/// the signing key and the titles from the database.
async fn two_origins(pg: &Postgres, db: &str) -> (TestCluster, Origin, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = pg.database(db);
    let sets = shared(dir.path(), &url);
    let a = TestCluster::start_with(1, &sets).await;
    let (b, b_url) = a.another_origin("origin-b", &shared(a.dir.path(), &url)).await;
    assert_eq!(b.public_key(), a.origin.public_key(), "both origins sign with the cluster's key");
    (a, b, b_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_plays_of_one_ticket_over_two_origins_grant_exactly_one() {
    let pg = Postgres::start();
    let (a, b, b_url) = two_origins(&pg, "once").await;
    let (ticket, serial) = a.client().rent("film", 1).await;
    let clients = [a.client(), OriginClient::new(&a.http, &b_url)];
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let (c, t) = (clients[i % 2].clone(), ticket.clone());
        tasks.spawn(async move { (i % 2, c.play(&t).await) });
    }
    let (mut granted, mut by_origin, mut spent) = (0, [0, 0], 0);
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            (o, Ok(_)) => {
                granted += 1;
                by_origin[o] += 1;
            }
            (_, Err((403, code))) if code == "spent" => spent += 1,
            (_, Err(other)) => panic!("a play ended otherwise than granted or spent: {other:?}"),
        }
    }
    eprintln!("1000 plays over two origins in {:?}: granted {granted} {by_origin:?}, spent {spent}", started.elapsed());
    assert_eq!(granted, 1, "exactly one certificate");
    assert_eq!(spent, 999);
    // One line in the shared log, the same seen from either origin.
    for o in [&a.origin, &b] {
        let log = o.validation_log().unwrap();
        assert_eq!(log.iter().filter(|e| e.serial == serial && e.result == "granted").count(), 1);
    }
    // The spends of the others are evidence, counted once per ticket and result.
    let refused = b.refused_plays().unwrap();
    assert!(refused.iter().any(|(s, r, n)| s == &serial && r == "spent" && *n >= 1), "{refused:?}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rental_played_alternately_through_two_origins_gives_its_plays_then_spent() {
    let pg = Postgres::start();
    let (a, b, b_url) = two_origins(&pg, "rental").await;
    let clients = [a.client(), OriginClient::new(&a.http, &b_url)];
    let (mut ticket, serial) = clients[0].rent("film", 3).await;
    let mut certificates = std::collections::HashSet::new();
    for play in 0..3 {
        let g = clients[play % 2].play(&ticket).await.unwrap_or_else(|e| panic!("play {play}: {e:?}"));
        certificates.insert(g.certificate.clone());
        if play < 2 {
            // The ticket just used is replaced, on either origin.
            assert_eq!(clients[(play + 1) % 2].play(&ticket).await.unwrap_err(), (403, "replaced".to_string()));
            ticket = g.ticket.expect("a replacement while plays are left");
        } else {
            assert!(g.ticket.is_none(), "the last play issues no replacement");
        }
    }
    assert_eq!(certificates.len(), 3);
    for c in &clients {
        assert_eq!(c.play(&ticket).await.unwrap_err(), (403, "spent".to_string()));
    }
    let log = b.validation_log().unwrap();
    assert_eq!(log.iter().filter(|e| e.result == "granted" && e.customer != 0).count(), 3, "{log:?}");
    let _ = serial;
    // B holds none of A's blobs, yet its catalog is the cluster's: it lists
    // A's title and serves the very manifest A signed (an edge failing over
    // to B finds the title there).
    let get = |base: &str, path: &str| a.http.get(format!("{base}{path}")).send();
    let a_url = a.origin_url.clone();
    let from_a = get(&a_url, "/v1/titles/film/manifest").await.unwrap().bytes().await.unwrap();
    let r = get(&b_url, "/v1/titles/film/manifest").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), from_a, "the same signed manifest from either origin");
    let listed: serde_json::Value = get(&b_url, "/v1/titles").await.unwrap().json().await.unwrap();
    let film = listed["titles"].as_array().unwrap().iter().find(|t| t["title"] == "film").cloned();
    let film = film.unwrap_or_else(|| panic!("B lists A's title: {listed}"));
    assert!(film["segments"].as_u64().is_some_and(|n| n > 0), "{film}");
    assert_eq!(get(&b_url, "/v1/titles/nothing").await.unwrap().status(), 404);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_through_one_origin_reaches_an_edge_of_the_other_within_a_heartbeat() {
    let pg = Postgres::start();
    let (a, b, b_url) = two_origins(&pg, "revoke").await;
    let bport = b.https_addr().port();
    // Staged by A (it holds the blobs); the edge heartbeats to B.
    let node = a.server(&a.spec("node", "node-1")).await;
    wait_staged(&a.origin, &["node-1"]).await;
    let heartbeat = Duration::from_millis(1000);
    let edge_spec = EdgeSpec::new("edge", "edge-b", &a.dir.path().join("edge-b"), bport)
        .parents(&[url_of(&node)])
        .sets(&["heartbeat=1s", "revocation_max_age=5s"]);
    let edge = tranzcast_edge::EdgeServer::start(edge_spec.config(), a.tls.clone()).await.unwrap();
    let blob = format!("{}/v1/blobs/{}", url_of(&edge), a.segments[0]);
    // A certificate granted by B, read at the edge.
    let (cert, serial) = OriginClient::new(&a.http, &b_url).certificate("film").await;
    eventually(10, "the edge serves the certificate", || {
        let (http, blob, cert) = (a.http.clone(), blob.clone(), cert.clone());
        async move { http.get(&blob).header("authorization", &cert).send().await.unwrap().status() == 200 }
    })
    .await;
    // Revoked through A.
    assert_eq!(a.client().revoke_serial(&serial).await, 200);
    let revoked_at = Instant::now();
    loop {
        let r = a.http.get(&blob).header("authorization", &cert).send().await.unwrap();
        if r.status() == 403 {
            assert!(r.text().await.unwrap().contains("revoked"));
            break;
        }
        // The edge's next pull (every heartbeat) brings it; two heartbeats
        // leave room for a loaded machine (the figure itself is printed).
        assert!(revoked_at.elapsed() < 2 * heartbeat, "still served {:?} after the revocation", revoked_at.elapsed());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    eprintln!("refused at the edge of origin B {:?} after the revocation at origin A", revoked_at.elapsed());
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rest_sealed_and_another_kek_or_another_clusters_data_dir_is_refused() {
    let pg = Postgres::start();
    let (a, b, b_url) = two_origins(&pg, "keys").await;
    // Orders of a title B never stored locally: its key comes from the database.
    let (ticket, _) = OriginClient::new(&a.http, &b_url).rent("other", 1).await;
    assert!(a.client().play(&ticket).await.is_ok());
    b.shutdown().await;

    // No key in clear in the database: each sealed value opens under the
    // KEK to the key the origins use (the signing key to their public
    // key), and no key's bytes appear anywhere in a dump of the database.
    let kek = tranzcast_proto::envelope::Kek::from_hex(KEK).unwrap();
    let (client, conn) =
        tokio_postgres::connect(&format!("host=127.0.0.1 port={} user=postgres dbname=keys", pg.port()), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut keys = Vec::new();
    for row in client.query("SELECT name, sealed FROM secrets WHERE name LIKE 'secret/%'", &[]).await.unwrap() {
        let (name, sealed): (String, Vec<u8>) = (row.get(0), row.get(1));
        let key = kek.open32(&name, &sealed).unwrap();
        assert_eq!(ed25519_dalek::SigningKey::from_bytes(&key).verifying_key(), a.origin.public_key());
        keys.push(key);
    }
    for row in client.query("SELECT title, sealed_key FROM titles", &[]).await.unwrap() {
        let (title, sealed): (String, Vec<u8>) = (row.get(0), row.get(1));
        keys.push(kek.open32(&format!("title/{title}"), &sealed).unwrap());
    }
    assert_eq!(keys.len(), 3, "the signing key and two title keys");
    let dump = pg.dump("keys");
    assert!(dump.contains("secret/origin-ed25519"), "the dump holds the secrets");
    for k in &keys {
        assert!(!dump.contains(&hex::encode(k)), "a key in clear in the database");
    }

    // Another KEK does not open the database: the origin refuses to start.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/keys", pg.port());
    let mut sets = shared(dir.path(), &url);
    std::fs::write(dir.path().join("kek.hex"), "00".repeat(32)).unwrap();
    sets.push("listen.https=127.0.0.1:0".into());
    let e = Origin::start(origin_config_with(&dir.path().join("c"), 0, &sets)).await.unwrap_err().to_string();
    assert!(e.contains("key-encryption key"), "{e}");

    // A data directory that signed for another cluster is refused too.
    let other = tempfile::tempdir().unwrap();
    setup_sized(other.path(), 1);
    let e = Origin::start(origin_config_with(&other.path().join("origin"), 0, &shared(other.path(), &url))).await.unwrap_err().to_string();
    assert!(e.contains("another cluster"), "{e}");
}

/// Two origins' handles on a fresh database `db`, as their processes open it.
fn two_states(pg: &Postgres, db: &str) -> [tranzcast_origin::ledger::postgres::PgState; 2] {
    let url = pg.database(db);
    let open =
        || tranzcast_origin::ledger::postgres::PgState::open(&url, 8, tranzcast_proto::envelope::Kek::from_hex(KEK).unwrap()).unwrap();
    [open(), open()]
}

#[test]
fn a_push_lease_has_one_holder_at_a_time_until_it_runs_out() {
    let pg = Postgres::start();
    // Two origins' state handles, many callers each, all at once.
    let states = two_states(&pg, "leases");
    let now = 1_000_000u64;
    let won = std::sync::atomic::AtomicU32::new(0);
    let winners = std::sync::Mutex::new(std::collections::HashSet::new());
    std::thread::scope(|s| {
        for i in 0..32u8 {
            let (state, won, winners) = (&states[usize::from(i % 2)], &won, &winners);
            s.spawn(move || {
                let me = [i; 16];
                if state.lease("staging/node-1/film", &me, now, 3000).unwrap() {
                    won.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    winners.lock().unwrap().insert(i);
                }
            });
        }
    });
    assert_eq!(won.load(std::sync::atomic::Ordering::Relaxed), 1, "one holder");
    let holder = [*winners.lock().unwrap().iter().next().unwrap(); 16];
    let other = [holder[0] ^ 1; 16];
    // The holder renews; another is refused until the lease runs out, then takes it.
    assert!(states[0].lease("staging/node-1/film", &holder, now + 1000, 3000).unwrap());
    assert!(!states[1].lease("staging/node-1/film", &other, now + 3500, 3000).unwrap());
    assert!(states[1].lease("staging/node-1/film", &other, now + 4001, 3000).unwrap());
    assert!(!states[0].lease("staging/node-1/film", &holder, now + 4002, 3000).unwrap());
    // Leases are per member and title.
    assert!(states[0].lease("staging/node-2/film", &holder, now + 4002, 3000).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_state_ca_every_connection_to_the_database_is_tls_and_checked() {
    let (pg, ca_pem) = Postgres::start_tls();
    let url = pg.database("tls").replace("127.0.0.1", "localhost") + "?sslmode=require";
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("db-ca.pem");
    std::fs::write(&ca, &ca_pem).unwrap();
    let mut sets = shared(dir.path(), &url);
    sets.push(format!("state.ca={}", ca.display()));
    let a = TestCluster::start_with(1, &sets).await;
    let (ticket, _) = a.client().rent("film", 1).await;
    assert!(a.client().play(&ticket).await.is_ok());
    // Every connection of the origin's pool is TLS (the server's own view).
    let (client, conn) =
        tokio_postgres::connect(&format!("host=127.0.0.1 port={} user=postgres dbname=tls", pg.port()), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(conn);
    let rows = client
        .query("SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'tranzcast-origin'", &[])
        .await
        .unwrap();
    assert!(!rows.is_empty(), "the origin holds connections");
    assert!(rows.iter().all(|r| r.get::<_, bool>(0)), "a connection without TLS");
    // Roots that did not sign the database's certificate: refused at start.
    let other = tranzcast_net::LocalCa::load_or_create(&dir.path().join("other-ca")).unwrap();
    std::fs::write(&ca, other.cert_pem()).unwrap();
    let e = Origin::start(origin_config_with(&dir.path().join("c"), 0, &sets)).await.unwrap_err().to_string();
    assert!(e.contains("postgres"), "{e}");
    // sslmode=require without roots is a configuration error, not a silent plain connection.
    let plain = shared(dir.path(), &url);
    let e = Origin::start(origin_config_with(&dir.path().join("d"), 0, &plain)).await.unwrap_err().to_string();
    assert!(e.contains("state.ca"), "{e}");
}

#[test]
fn a_member_record_is_written_only_over_the_one_that_was_read() {
    use tranzcast_origin::state::Member;
    let pg = Postgres::start();
    let [a, b] = two_states(&pg, "members");
    let peer = |token: &str| Member {
        name: "peer-1".into(),
        role: "peer".into(),
        https: "https://localhost:1".into(),
        h3: "127.0.0.1:1".into(),
        last_seen_ms: 1,
        load: 0.25,
        push_token: Some(token.into()),
        playback_key: None,
        health: None,
        serial: Some("00".repeat(16)),
        expires: Some(2),
    };
    // Two origins each saw no record: only the first write lands.
    assert!(a.put_member_if(&peer("a"), None).unwrap());
    assert!(!b.put_member_if(&peer("b"), None).unwrap(), "b's join lost the race: it reads again");
    let (m, raw) = b.member_as_stored("peer-1").unwrap().unwrap();
    assert_eq!(m.push_token.as_deref(), Some("a"));
    // A heartbeat over what it read lands; one over a stale read does not.
    let mut next = peer("a");
    next.last_seen_ms = 2;
    assert!(b.put_member_if(&next, Some(&raw)).unwrap());
    assert!(!a.put_member_if(&peer("a"), Some(&raw)).unwrap(), "stale read");
    // Retired through one origin: a heartbeat read before it writes nothing back.
    let (_, raw) = a.member_as_stored("peer-1").unwrap().unwrap();
    b.retire_member("peer-1", 10).unwrap();
    assert!(!a.put_member_if(&next, Some(&raw)).unwrap());
    assert!(a.member("peer-1").unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_engine_seals_its_keys_when_given_a_kek() {
    let kek_dir = tempfile::tempdir().unwrap();
    std::fs::write(kek_dir.path().join("kek"), KEK).unwrap();
    let a = TestCluster::start_with(1, &[format!("keys.kek_file={}", kek_dir.path().join("kek").display())]).await;
    let (ticket, _) = a.client().rent("film", 1).await;
    assert!(a.client().play(&ticket).await.is_ok(), "plays read the sealed title key");
    let data = a.dir.path().join("origin");
    let TestCluster { origin, dir, .. } = a;
    origin.shutdown().await;
    // At rest: the store's keys open only under the KEK.
    let store = tranzcast_store::BlobStore::open(&data, Default::default()).unwrap();
    let film = tranzcast_proto::TitleId::new("film").unwrap();
    assert!(store.title_secret(&film).unwrap_err().to_string().contains("sealed"));
    store.seal_keys_with(tranzcast_proto::envelope::Kek::from_hex(KEK).unwrap()).unwrap();
    assert!(store.title_secret(&film).unwrap().is_some());
    drop(dir);
}

/// A KEK rotation of the database: a second run after an origin that was
/// still running published a title under the old KEK re-seals that title
/// too (the run looks at every row, not at the check value alone), and
/// leaves what is already under the new one; afterwards every key opens
/// under the new KEK and none under the old.
#[test]
fn rekey_reseals_what_a_lingering_origin_wrote_under_the_old_kek_on_a_second_run() {
    use tranzcast_origin::ledger::postgres::PgState;
    use tranzcast_proto::envelope::Kek;
    let pg = Postgres::start();
    let url = pg.database("rekey");
    let (old, new) = (Kek::from_hex(KEK).unwrap(), Kek::from_hex(&"c3".repeat(32)).unwrap());
    let lingering = PgState::open(&url, 4, old.clone()).unwrap();
    lingering.share_secret("origin-ed25519", &[1; 32]).unwrap();
    assert!(lingering.publish_title("first", b"manifest one", &[2; 32]).unwrap());
    let fresh = PgState::open(&url, 4, old.clone()).unwrap();
    assert_eq!(fresh.rekey(&old, &new).unwrap(), 3, "the check value, the signing key, one title key");
    // An origin that was not stopped publishes under the old KEK.
    assert!(lingering.publish_title("second", b"manifest two", &[3; 32]).unwrap());
    assert!(PgState::open(&url, 4, old.clone()).is_err(), "the old KEK no longer opens the database");
    let after = PgState::open(&url, 4, new.clone()).unwrap();
    assert!(after.title("second").is_err(), "sealed under the old KEK until the second run");
    assert_eq!(after.rekey(&old, &new).unwrap(), 1, "only the title written under the old KEK");
    assert_eq!(after.title("first").unwrap().unwrap().key, [2; 32]);
    assert_eq!(after.title("second").unwrap().unwrap().key, [3; 32]);
    assert_eq!(after.secret("origin-ed25519").unwrap(), Some([1; 32]));
    assert_eq!(after.rekey(&old, &new).unwrap(), 0);
}
